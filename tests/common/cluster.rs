//! A cluster of real `ringlog serve` processes on 127.0.0.1, each broker a voter of
//! the controller quorum with its own inter-broker port, data dir and logs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::broker::Broker;

/// Brokers `1..=n` of one cluster; a stopped broker's slot is `None`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub brokers: Vec<Option<Broker>>,
    ports: Vec<u16>,
    extra: Vec<String>,
    starts: usize,
}

/// `n` distinct ports free now on 127.0.0.1. All are held until every one is chosen,
/// so the kernel cannot hand out the same port twice (which once gave two brokers of
/// one cluster the same inter-broker port). Another process may still take one before
/// its broker binds it; that broker then fails to start with "address in use".
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Cluster {
    /// Starts `n` brokers with `extra` serve arguments each and waits until all are
    /// ready (registered and unfenced).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let ports = free_ports(n);
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            brokers: (0..n).map(|_| None).collect(),
            ports,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        for id in 1..=n {
            c.spawn(id);
        }
        for id in 1..=n {
            c.broker_mut(id).wait_ready();
        }
        c
    }

    pub fn voters(&self) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("data-{id}"))
    }

    /// Starts broker `id` (not waiting for it to be ready).
    pub fn spawn(&mut self, id: usize) {
        self.spawn_with(id, &[]);
    }

    /// Starts broker `id` with `more` serve arguments after the cluster's own (a
    /// later `--set` wins), not waiting for it to be ready.
    pub fn spawn_with(&mut self, id: usize, more: &[&str]) {
        self.starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("broker-{id}-{}.log", self.starts));
        let voters = self.voters();
        let cluster_addr = format!("127.0.0.1:{}", self.ports[id - 1]);
        let mut args: Vec<String> = vec![
            "--broker-id".into(),
            id.to_string(),
            "--controller-voters".into(),
            voters,
            "--cluster-addr".into(),
            cluster_addr,
        ];
        args.extend(self.extra.iter().cloned());
        args.extend(more.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let b = Broker::spawn(&self.data_dir(id), &log, 1, &args);
        self.brokers[id - 1] = Some(b);
    }

    /// Starts broker `id` and waits until it is ready.
    pub fn restart(&mut self, id: usize) {
        self.spawn(id);
        self.broker_mut(id).wait_ready();
    }

    pub fn broker(&self, id: usize) -> &Broker {
        self.brokers[id - 1].as_ref().expect("broker is running")
    }

    pub fn broker_mut(&mut self, id: usize) -> &mut Broker {
        self.brokers[id - 1].as_mut().expect("broker is running")
    }

    /// `kill -9` of broker `id`.
    pub fn kill9(&mut self, id: usize) {
        if let Some(mut b) = self.brokers[id - 1].take() {
            b.kill9();
        }
    }

    /// Running brokers' ids.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.brokers.len())
            .filter(|id| self.brokers[id - 1].is_some())
            .collect()
    }

    /// Runs `ringlog cluster describe` against broker `id`, parsed as JSON.
    pub fn describe(&self, id: usize) -> serde_json::Value {
        let out = super::ok(&self.broker(id).cli(&["cluster", "describe", "--json"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Polls `f` every 50 ms until it returns `Some`, at most `limit`.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> (T, Duration) {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return (v, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "not within {limit:?}: {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every broker log of this cluster, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("==== {} (last 40 lines)\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    /// A failed test keeps its data dirs and broker logs for the post-mortem.
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(spare) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, spare).keep();
                eprintln!("test failed: data dirs and logs kept in {}", kept.display());
            }
        }
    }
}
