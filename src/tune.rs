//! `ringlog tune --check`: what an SRE checks before running ringlog on a host, read
//! from `/proc`, `/sys` and the process limits without privileges. Each check says
//! what it found, what is recommended, OK / WARN / FAIL / N/A, and why. Files that
//! do not exist (a VM, a container) give N/A, never an error.
//!
//! The host is read through [`Host`], so tests point it at a fake root.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub current: String,
    pub recommended: String,
    pub status: Status,
    pub why: String,
}

/// Where the checks read the host from.
pub struct Host {
    /// `/` normally; a fake tree in tests.
    pub root: PathBuf,
    /// (soft, hard) RLIMIT_MEMLOCK and RLIMIT_NOFILE in bytes / files; `None` = unlimited.
    pub memlock: Option<(Option<u64>, Option<u64>)>,
    pub nofile: Option<(Option<u64>, Option<u64>)>,
    /// The process may lock memory beyond the limit (CAP_IPC_LOCK, e.g. root).
    pub ipc_lock: bool,
}

impl Host {
    /// This machine, under `root`, with this process's limits.
    pub fn this(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            memlock: rlimit(libc::RLIMIT_MEMLOCK),
            nofile: rlimit(libc::RLIMIT_NOFILE),
            ipc_lock: has_ipc_lock(),
        }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/')))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.join(dir.trim_start_matches('/')))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// CAP_IPC_LOCK (bit 14) in this process's effective capabilities.
fn has_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(Option<u64>, Option<u64>)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return None;
    }
    let v = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
    Some((v(r.rlim_cur), v(r.rlim_max)))
}

fn row(check: &str, current: String, recommended: &str, status: Status, why: &str) -> Check {
    Check {
        check: check.to_string(),
        current,
        recommended: recommended.to_string(),
        status,
        why: why.to_string(),
    }
}

fn na(check: &str, recommended: &str, why: &str) -> Check {
    row(
        check,
        "unreadable".into(),
        recommended,
        Status::NotApplicable,
        why,
    )
}

/// A numeric sysctl-style value against a minimum (or maximum).
fn threshold(host: &Host, path: &str, check: &str, want: u64, at_least: bool, why: &str) -> Check {
    let rec = if at_least {
        format!(">= {want}")
    } else {
        format!("<= {want}")
    };
    match host
        .read(path)
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    {
        None => na(check, &rec, why),
        Some(v) => {
            let good = if at_least { v >= want } else { v <= want };
            row(
                check,
                v.to_string(),
                &rec,
                if good { Status::Ok } else { Status::Warn },
                why,
            )
        }
    }
}

/// The bracketed choice of a sysfs multiple-choice file: `always [madvise] never`.
fn selected(value: &str) -> &str {
    value
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or(value)
}

/// Every check, in report order. `data_dir` adds the checks of its device.
pub fn checks(
    host: &Host,
    data_dir: Option<&Path>,
    shards: u64,
    io_memory_bytes: u64,
) -> Vec<Check> {
    let mut out = Vec::new();

    // CPU frequency governor of every CPU.
    let cpus: Vec<String> = host
        .list("/sys/devices/system/cpu")
        .into_iter()
        .filter(|c| {
            c.strip_prefix("cpu")
                .is_some_and(|n| n.chars().all(|d| d.is_ascii_digit()))
        })
        .collect();
    let governors: Vec<String> = cpus
        .iter()
        .filter_map(|c| {
            host.read(&format!(
                "/sys/devices/system/cpu/{c}/cpufreq/scaling_governor"
            ))
        })
        .collect();
    let why = "shard cores run flat out; frequency scaling adds latency when load changes";
    out.push(if governors.is_empty() {
        na("cpu governor", "performance", why)
    } else {
        let all_perf = governors.iter().all(|g| g == "performance");
        let mut distinct = governors.clone();
        distinct.sort();
        distinct.dedup();
        row(
            "cpu governor",
            distinct.join(","),
            "performance",
            if all_perf { Status::Ok } else { Status::Warn },
            why,
        )
    });

    // Transparent huge pages.
    let why = "THP compaction stalls threads for milliseconds";
    out.push(
        match host.read("/sys/kernel/mm/transparent_hugepage/enabled") {
            None => na("transparent huge pages", "madvise or never", why),
            Some(v) => {
                let s = selected(&v).to_string();
                let status = if s == "always" {
                    Status::Warn
                } else {
                    Status::Ok
                };
                row("transparent huge pages", s, "madvise or never", status, why)
            }
        },
    );

    out.push(threshold(
        host,
        "/proc/sys/vm/swappiness",
        "vm.swappiness",
        1,
        false,
        "a swapped-out shard stalls every partition it owns",
    ));
    out.push(threshold(
        host,
        "/proc/sys/net/core/somaxconn",
        "net.core.somaxconn",
        4096,
        true,
        "connection bursts overflow a short accept backlog",
    ));
    out.push(threshold(
        host,
        "/proc/sys/net/core/rmem_max",
        "net.core.rmem_max",
        16 << 20,
        true,
        "large socket buffers keep fast producers and fetches streaming",
    ));
    out.push(threshold(
        host,
        "/proc/sys/net/core/wmem_max",
        "net.core.wmem_max",
        16 << 20,
        true,
        "large socket buffers keep fast producers and fetches streaming",
    ));
    out.push(threshold(
        host,
        "/proc/sys/fs/aio-max-nr",
        "fs.aio-max-nr",
        1 << 20,
        true,
        "every shard reserves asynchronous I/O contexts",
    ));
    out.push(row(
        "vm.dirty_*",
        "not checked".into(),
        "any",
        Status::Ok,
        "segments are written with O_DIRECT: the page cache's dirty limits do not apply",
    ));

    // Locked memory: io_uring's registered buffers (shard.io.memory.bytes each).
    let need = shards.max(1) * io_memory_bytes;
    let why =
        "each shard locks shard.io.memory.bytes for io_uring; glommio cannot start without it";
    out.push(match host.memlock {
        None => na("memlock limit", &format!(">= {need} bytes"), why),
        Some((None, _)) => row(
            "memlock limit",
            "unlimited".into(),
            "unlimited",
            Status::Ok,
            why,
        ),
        Some((Some(soft), _)) if host.ipc_lock => row(
            "memlock limit",
            format!("{soft} bytes, but CAP_IPC_LOCK"),
            &format!(">= {need} bytes (unlimited)"),
            Status::Ok,
            "this process may lock past the limit (root or CAP_IPC_LOCK); the service should still set LimitMEMLOCK=infinity",
        ),
        Some((Some(soft), _)) => {
            let status = if soft >= need {
                Status::Ok
            } else {
                Status::Fail
            };
            row(
                "memlock limit",
                format!("{soft} bytes"),
                &format!(">= {need} bytes (unlimited)"),
                status,
                why,
            )
        }
    });
    let why = "one descriptor per segment file and per connection";
    out.push(match host.nofile {
        None => na("open files limit", ">= 1048576", why),
        Some((None, _)) => row(
            "open files limit",
            "unlimited".into(),
            ">= 1048576",
            Status::Ok,
            why,
        ),
        Some((Some(soft), _)) => {
            let status = if soft >= 1 << 20 {
                Status::Ok
            } else if soft >= 16_384 {
                Status::Warn
            } else {
                Status::Fail
            };
            row(
                "open files limit",
                soft.to_string(),
                ">= 1048576",
                status,
                why,
            )
        }
    });

    if let Some(dir) = data_dir {
        out.extend(data_dir_checks(host, dir));
    }
    out
}

/// The file system and block device under the data directory.
fn data_dir_checks(host: &Host, dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    // The longest mount point containing the directory.
    let mounts = host.read("/proc/mounts").unwrap_or_default();
    let dir_s = dir.to_string_lossy();
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .filter(|(_, mp, _)| {
            dir_s == *mp
                || dir_s.starts_with(&format!("{}/", mp.trim_end_matches('/')))
                || mp == "/"
        })
        .max_by_key(|(_, mp, _)| mp.len());
    let why = "segments are O_DIRECT files: XFS or ext4 on a local disk";
    let Some((device, mount_point, fs)) = mount else {
        out.push(na("data dir file system", "xfs or ext4", why));
        return out;
    };
    let status = match fs.as_str() {
        "xfs" | "ext4" => Status::Ok,
        "tmpfs" | "overlay" | "nfs" | "nfs4" | "fuse" => Status::Fail,
        _ => Status::Warn,
    };
    out.push(row(
        "data dir file system",
        format!("{fs} on {mount_point}"),
        "xfs or ext4",
        status,
        why,
    ));

    // The block device's queue: /sys/block/<name>/queue, or its parent's for a partition.
    let name = device.trim_start_matches("/dev/").to_string();
    let queue = |file: &str| {
        host.read(&format!("/sys/block/{name}/queue/{file}"))
            .or_else(|| {
                let parent = name
                    .trim_end_matches(|c: char| c.is_ascii_digit())
                    .trim_end_matches('p');
                host.read(&format!("/sys/block/{parent}/queue/{file}"))
            })
    };
    let why = "NVMe queues reorder nothing: a scheduler only adds latency";
    out.push(match queue("scheduler") {
        None => na("io scheduler", "none", why),
        Some(v) => {
            let s = selected(&v).to_string();
            let status = if s == "none" {
                Status::Ok
            } else {
                Status::Warn
            };
            row("io scheduler", s, "none", status, why)
        }
    });
    let why = "merging sequential appends costs CPU the device does not need";
    out.push(match queue("nomerges") {
        None => na("nomerges", "2", why),
        Some(v) => {
            let status = if v == "2" { Status::Ok } else { Status::Warn };
            row("nomerges", v, "2", status, why)
        }
    });
    let why = "a spinning disk cannot keep group-commit latency low";
    out.push(match queue("rotational") {
        None => na("rotational", "0", why),
        Some(v) => {
            let status = if v == "0" { Status::Ok } else { Status::Fail };
            row("rotational", v, "0 (SSD/NVMe)", status, why)
        }
    });
    let why = "fdatasync must reach stable media: a volatile write cache needs flush support";
    out.push(match queue("write_cache") {
        None => na(
            "write cache",
            "write through, or write back with flush",
            why,
        ),
        Some(v) => row(
            "write cache",
            v,
            "write through, or write back with flush",
            Status::Ok,
            why,
        ),
    });
    out
}

/// The report as a table.
pub fn table(checks: &[Check]) -> String {
    let w = |f: fn(&Check) -> &str, title: &str| {
        checks
            .iter()
            .map(|c| f(c).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (wc, wcur, wrec) = (
        w(|c| &c.check, "CHECK"),
        w(|c| &c.current, "CURRENT"),
        w(|c| &c.recommended, "RECOMMENDED"),
    );
    let mut s = format!(
        "{:<wc$}  {:<wcur$}  {:<wrec$}  {:<6}  WHY\n",
        "CHECK", "CURRENT", "RECOMMENDED", "STATUS"
    );
    for c in checks {
        s.push_str(&format!(
            "{:<wc$}  {:<wcur$}  {:<wrec$}  {:<6}  {}\n",
            c.check,
            c.current,
            c.recommended,
            c.status.label(),
            c.why
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, content: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn status_of(checks: &[Check], name: &str) -> Status {
        checks.iter().find(|c| c.check == name).unwrap().status
    }

    #[test]
    fn a_tuned_host_is_ok_and_a_default_one_warns_or_fails() {
        let good = tempfile::tempdir().unwrap();
        let g = good.path();
        put(
            g,
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance\n",
        );
        put(
            g,
            "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "performance\n",
        );
        put(
            g,
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        );
        put(g, "/proc/sys/vm/swappiness", "1\n");
        put(g, "/proc/sys/net/core/somaxconn", "4096\n");
        put(g, "/proc/sys/net/core/rmem_max", "16777216\n");
        put(g, "/proc/sys/net/core/wmem_max", "16777216\n");
        put(g, "/proc/sys/fs/aio-max-nr", "1048576\n");
        put(
            g,
            "/proc/mounts",
            "/dev/nvme0n1p1 /var/lib/ringlog xfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n",
        );
        put(
            g,
            "/sys/block/nvme0n1/queue/scheduler",
            "[none] mq-deadline\n",
        );
        put(g, "/sys/block/nvme0n1/queue/nomerges", "2\n");
        put(g, "/sys/block/nvme0n1/queue/rotational", "0\n");
        put(g, "/sys/block/nvme0n1/queue/write_cache", "write through\n");
        let host = Host {
            root: g.to_path_buf(),
            memlock: Some((None, None)),
            nofile: Some((Some(1 << 20), Some(1 << 20))),
            ipc_lock: false,
        };
        let c = checks(&host, Some(Path::new("/var/lib/ringlog/data")), 2, 10 << 20);
        assert!(c.iter().all(|r| r.status == Status::Ok), "{}", table(&c));
        assert!(c.iter().any(|r| r.current == "xfs on /var/lib/ringlog"));

        let bad = tempfile::tempdir().unwrap();
        let b = bad.path();
        put(
            b,
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave\n",
        );
        put(
            b,
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        put(b, "/proc/sys/vm/swappiness", "60\n");
        put(b, "/proc/mounts", "tmpfs /tmp tmpfs rw 0 0\n");
        let host = Host {
            root: b.to_path_buf(),
            memlock: Some((Some(65_536), Some(65_536))),
            nofile: Some((Some(1024), Some(4096))),
            ipc_lock: false,
        };
        let c = checks(&host, Some(Path::new("/tmp/data")), 2, 10 << 20);
        assert_eq!(status_of(&c, "cpu governor"), Status::Warn);
        assert_eq!(status_of(&c, "transparent huge pages"), Status::Warn);
        assert_eq!(status_of(&c, "vm.swappiness"), Status::Warn);
        assert_eq!(status_of(&c, "memlock limit"), Status::Fail);
        assert_eq!(status_of(&c, "open files limit"), Status::Fail);
        assert_eq!(status_of(&c, "data dir file system"), Status::Fail);
        // Files a container does not have: N/A, not errors.
        assert_eq!(status_of(&c, "net.core.somaxconn"), Status::NotApplicable);
        assert_eq!(status_of(&c, "io scheduler"), Status::NotApplicable);
    }

    #[test]
    fn an_empty_root_is_all_not_applicable_not_an_error() {
        let empty = tempfile::tempdir().unwrap();
        let host = Host {
            root: empty.path().to_path_buf(),
            memlock: None,
            nofile: None,
            ipc_lock: false,
        };
        let c = checks(&host, Some(Path::new("/data")), 1, 10 << 20);
        assert!(
            c.iter()
                .filter(|r| r.check != "vm.dirty_*")
                .all(|r| r.status == Status::NotApplicable),
            "{}",
            table(&c)
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"N/A\""));
    }
}
