//! A run's figures: the JSON document (`--json`), its one-screen text form, and the
//! host description both carry. Keys are part of the bench's interface (scripts and
//! `compare` read them): `throughput.records_per_s`, `throughput.mb_per_s` (MB = 10^6
//! bytes), `latency_us.{produce,e2e}.{p50,p90,p99,p999,p9999,max}`,
//! `records.{sent,acked,consumed,errors}`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::{Mode, RunConfig};
use crate::cpu::CpuUse;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub config: RunConfig,
    pub host: Host,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// Length of the measured window (after warm-up), seconds.
    pub elapsed_s: f64,
    pub throughput: Throughput,
    pub latency_us: Latency,
    pub records: Records,
    /// CPU use of the bench and the broker over the measured window; absent in
    /// reports written before it was measured, or when the window was never reached.
    #[serde(default)]
    pub cpu: Option<CpuUse>,
    /// Records per second in each second of the run (warm-up included).
    pub timeline: Vec<Sample>,
    /// What verification found wrong; empty when everything consumed checked out.
    pub verification: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cores: usize,
    pub kernel: String,
    pub hostname: String,
}

impl Host {
    /// This machine; fields it cannot read say "unknown".
    pub fn this() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease")),
            hostname: read("/proc/sys/kernel/hostname"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub records_per_s: f64,
    /// 10^6 bytes of record values per second.
    pub mb_per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Intended send time to acknowledgement.
    pub produce: Option<Percentiles>,
    /// Intended send time to consumption.
    pub e2e: Option<Percentiles>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    /// (percentile, microseconds) points of the distribution, for plots and `compare`.
    pub distribution: Vec<(f64, u64)>,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let distribution = h
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
            .collect();
        Some(Self {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            distribution,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub sent: u64,
    pub acked: u64,
    /// Summed over consumer groups.
    pub consumed: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t_s: f64,
    pub records_per_s: f64,
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary always serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The one-screen text report.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let name = c.workload.as_deref().unwrap_or("custom");
        let mode = match c.mode {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
        };
        let protocol = match c.protocol {
            crate::config::Protocol::Native => "native",
            crate::config::Protocol::Kafka => "kafka",
        };
        let _ = writeln!(
            s,
            "ringlog-bench  workload {name}  mode {mode}  protocol {protocol}  topic {}",
            c.topic
        );
        let rate = c.rate.map_or("max".to_string(), |r| format!("{r} msg/s"));
        let keys = c.keys.map_or("none".to_string(), |k| k.to_string());
        let acks = if c.acks == -1 {
            "all".to_string()
        } else {
            c.acks.to_string()
        };
        let amount = c
            .messages
            .map_or(format!("{} s", c.duration_s), |m| format!("{m} messages"));
        let _ = writeln!(
            s,
            "  config   producers {}, consumers {} x {} group(s), partitions {}, rf {}, message {} B ({:?}), \
             batch {} B, linger {} ms, in flight {}, acks {acks}, rate {rate}, {amount}, warm-up {} s, keys {keys}",
            c.producers, c.consumers, c.consumer_groups, c.partitions, c.replication_factor,
            c.message_size, c.payload, c.batch_size, c.linger_ms, c.max_in_flight, c.warmup_s
        );
        let _ = writeln!(
            s,
            "  host     {} cores, {}, {}",
            self.host.cores, self.host.kernel, self.host.hostname
        );
        let _ = writeln!(
            s,
            "  rate     {:.0} records/s, {:.1} MB/s ({:.1} MiB/s) over {:.1} s measured",
            self.throughput.records_per_s,
            self.throughput.mb_per_s,
            self.throughput.mb_per_s * 1e6 / (1 << 20) as f64,
            self.elapsed_s
        );
        if let Some(cpu) = &self.cpu {
            let broker = match (cpu.broker_cores, cpu.broker_pid) {
                (Some(b), Some(pid)) => format!("{b:.2} cores (pid {pid})"),
                _ => "unknown (not on this host: --broker-pid)".to_string(),
            };
            let _ = writeln!(
                s,
                "  cpu      bench {:.2} cores, broker {broker}",
                cpu.bench_cores
            );
        }
        let r = &self.records;
        let _ = writeln!(
            s,
            "  records  sent {}, acked {}, consumed {}, errors {}",
            r.sent, r.acked, r.consumed, r.errors
        );
        let _ = writeln!(
            s,
            "  latency ms      p50      p90      p99    p99.9   p99.99      max"
        );
        for (label, p) in [
            ("produce", &self.latency_us.produce),
            ("e2e", &self.latency_us.e2e),
        ] {
            if let Some(p) = p {
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = writeln!(
                    s,
                    "    {label:<9} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                    ms(p.p50),
                    ms(p.p90),
                    ms(p.p99),
                    ms(p.p999),
                    ms(p.p9999),
                    ms(p.max)
                );
            }
        }
        if c.mode != Mode::Produce {
            if self.verification.is_empty() {
                let _ = writeln!(
                    s,
                    "  verified every consumed record: checksums, per-partition order, no duplicates, counts"
                );
            } else {
                let _ = writeln!(s, "  VERIFICATION FAILED:");
                for p in &self.verification {
                    let _ = writeln!(s, "    {p}");
                }
            }
        }
        s
    }
}

#[cfg(test)]
pub(crate) fn sample_summary() -> Summary {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for v in 1..=10_000u64 {
        h.record(v * 10).unwrap();
    }
    Summary {
        config: crate::config::sample(),
        host: Host {
            cores: 2,
            kernel: "Linux test".into(),
            hostname: "h".into(),
        },
        started_unix_s: 1,
        elapsed_s: 9.0,
        throughput: Throughput {
            records_per_s: 1000.0,
            mb_per_s: 1.024,
        },
        latency_us: Latency {
            produce: Percentiles::of(&h),
            e2e: None,
        },
        records: Records {
            sent: 10_000,
            acked: 10_000,
            consumed: 0,
            errors: 0,
        },
        cpu: Some(CpuUse {
            bench_cores: 0.95,
            broker_cores: Some(0.4),
            broker_pid: Some(42),
        }),
        timeline: vec![
            Sample {
                t_s: 1.0,
                records_per_s: 990.0,
            },
            Sample {
                t_s: 2.0,
                records_per_s: 1010.0,
            },
        ],
        verification: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_keys_and_round_trips() {
        let s = sample_summary();
        let text = s.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["throughput"]["records_per_s"], 1000.0);
        assert_eq!(v["throughput"]["mb_per_s"], 1.024);
        for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(v["latency_us"]["produce"][k].is_u64(), "{k}");
        }
        assert!(v["latency_us"]["e2e"].is_null());
        for k in ["sent", "acked", "consumed", "errors"] {
            assert!(v["records"][k].is_u64(), "{k}");
        }
        assert_eq!(v["host"]["cores"], 2);
        assert_eq!(v["config"]["acks"], -1);
        assert_eq!(Summary::from_json(&text).unwrap(), s);
        assert_eq!(v["cpu"]["bench_cores"], 0.95);
    }

    #[test]
    fn reports_from_before_cpu_and_in_flight_were_recorded_still_load() {
        let mut v: serde_json::Value = serde_json::from_str(&sample_summary().to_json()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("cpu");
        let c = o["config"].as_object_mut().unwrap();
        c.remove("max_in_flight");
        c.remove("broker_pid");
        let old = Summary::from_json(&v.to_string()).unwrap();
        assert_eq!(old.cpu, None);
        assert_eq!(old.config.max_in_flight, 64);
        assert_eq!(old.config.broker_pid, None);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let p = sample_summary().latency_us.produce.unwrap();
        assert_eq!(p.count, 10_000);
        // Values 10..=100_000 µs, uniformly: p50 ≈ 50 ms, p99 ≈ 99 ms (3 digits).
        assert!((49_900..=50_100).contains(&p.p50), "{}", p.p50);
        assert!((98_900..=99_100).contains(&p.p99), "{}", p.p99);
        assert!((99_900..=100_100).contains(&p.max), "{}", p.max);
        assert!(p.distribution.len() > 20);
        assert!(p
            .distribution
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(Percentiles::of(&Histogram::<u64>::new(3).unwrap()), None);
    }

    #[test]
    fn text_shows_rates_latencies_and_verification() {
        let mut s = sample_summary();
        let t = s.to_text();
        assert!(t.contains("1000 records/s"), "{t}");
        assert!(t.contains("produce"), "{t}");
        assert!(t.contains("50.0"), "{t}");
        assert!(
            t.contains("cpu      bench 0.95 cores, broker 0.40 cores (pid 42)"),
            "{t}"
        );
        s.config.mode = Mode::E2e;
        s.verification = vec!["group 0: consumed 1 records, expected 2 (records missing)".into()];
        assert!(s.to_text().contains("VERIFICATION FAILED"));
    }
}
