//! CPU use of the bench and of the broker over the measured window, read from
//! /proc, so a report says which side bound a run: a side near 1.0 core per
//! pinned core was saturated, a side well below it was waiting on the other.
//!
//! The broker is found by its listening port: the socket inode that
//! /proc/net/tcp{,6} lists in LISTEN state on the port of `-b`, then the process
//! that holds that inode among its file descriptors. A broker on another host
//! (or in another PID namespace) is not found and its share is reported as
//! unknown; `--broker-pid` names it explicitly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `st` of a listening socket in /proc/net/tcp.
const TCP_LISTEN: &str = "0A";

/// CPU seconds per wall second over the measured window (1.0 = one core busy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub bench_cores: f64,
    /// `None` when the broker's process could not be read.
    pub broker_cores: Option<f64>,
    pub broker_pid: Option<u32>,
}

/// A reading of both processes' CPU time at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    at: Instant,
    bench: Duration,
    broker: Option<Duration>,
}

/// Reads the bench's and the broker's CPU time.
pub struct CpuMeter {
    broker_pid: Option<u32>,
    ticks_per_s: u64,
}

impl CpuMeter {
    /// `broker_pid` as given, else the local process listening on `bootstrap`.
    pub fn new(bootstrap: &str, broker_pid: Option<u32>) -> Self {
        let broker_pid = broker_pid.or_else(|| {
            let addr: SocketAddr = bootstrap.parse().ok()?;
            listener_pid(addr.port())
        });
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            broker_pid,
            ticks_per_s: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
        }
    }

    pub fn sample(&self) -> CpuSample {
        let read = |pid: &str| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ticks = stat_cpu_ticks(&text)?;
            Some(Duration::from_secs_f64(
                ticks as f64 / self.ticks_per_s as f64,
            ))
        };
        CpuSample {
            at: Instant::now(),
            bench: read("self").unwrap_or_default(),
            broker: self.broker_pid.and_then(|p| read(&p.to_string())),
        }
    }

    /// The use between two samples.
    pub fn between(&self, from: &CpuSample, to: &CpuSample) -> CpuUse {
        let wall = (to.at - from.at).as_secs_f64().max(1e-9);
        let cores = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() / wall;
        CpuUse {
            bench_cores: cores(from.bench, to.bench),
            broker_cores: match (from.broker, to.broker) {
                (Some(a), Some(b)) => Some(cores(a, b)),
                _ => None,
            },
            broker_pid: self.broker_pid,
        }
    }
}

/// utime + stime, in clock ticks, from the text of /proc/<pid>/stat. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so
/// fields are counted after its last ')'.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The inode of a socket listening on `port`, from the text of /proc/net/tcp{,6}.
fn listening_inode(table: &str, port: u16) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let local = f.get(1)?;
        let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        (local_port == port && *f.get(3)? == TCP_LISTEN)
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

/// The process holding the socket that listens on `port` on this host.
fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|p| {
        let table = std::fs::read_to_string(p).ok()?;
        listening_inode(&table, port)
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name_even_with_parentheses_in_it() {
        let stat = "4242 (ring (log) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    731 269 0 0 20 0 3 0 12345 1000 100";
        assert_eq!(stat_cpu_ticks(stat), Some(1000));
        assert_eq!(stat_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn the_listening_socket_of_a_port_is_found_and_connected_ones_are_not() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:238A 0100007F:A0B2 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0 20 4 30 10 -1\n\
   1: 0100007F:238A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inode(table, 0x238A), Some(222));
        assert_eq!(listening_inode(table, 9092), None);
    }

    #[test]
    fn this_process_is_found_by_the_port_it_listens_on_and_its_cpu_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let meter = CpuMeter::new(&addr.to_string(), None);
        assert_eq!(meter.broker_pid, Some(std::process::id()));
        let from = meter.sample();
        // Burn a little CPU so the reading can move (the assertion below does
        // not depend on how much: only that both sides were read).
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = meter.between(&from, &meter.sample());
        assert!(used.broker_cores.is_some());
        assert!(used.bench_cores >= 0.0);
    }
}
