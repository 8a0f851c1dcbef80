//! Helpers for end-to-end tests: real `ringlog serve` processes on 127.0.0.1 with
//! ephemeral ports and temporary data directories, the CLI, and the client library
//! on a glommio executor.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const RINGLOG: &str = env!("CARGO_BIN_EXE_ringlog");
/// Longest a broker may take to start before a test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running broker process; killed when dropped.
pub struct Broker {
    pub child: Child,
    pub data_dir: PathBuf,
    pub addr: String,
    pub log_path: PathBuf,
}

impl Broker {
    /// Starts `ringlog serve` on `data_dir` with `shards` shards and waits until it
    /// has written `listeners.json`.
    pub fn start(data_dir: &Path, shards: u16, extra: &[&str]) -> Broker {
        std::fs::create_dir_all(data_dir).unwrap();
        let log_path = next_log_path(data_dir);
        let log = File::create(&log_path).unwrap();
        let listeners = data_dir.join("listeners.json");
        let _ = std::fs::remove_file(&listeners);
        let child = Command::new(RINGLOG)
            .args(["serve", "--native-addr", "127.0.0.1:0", "--shards"])
            .arg(shards.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("BROKER_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut broker = Broker {
            child,
            data_dir: data_dir.to_path_buf(),
            addr: String::new(),
            log_path,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&listeners) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                broker.addr = v["native"].as_str().unwrap().to_string();
                return broker;
            }
            if let Some(status) = broker.child.try_wait().unwrap() {
                panic!(
                    "broker exited during start-up ({status}):\n{}",
                    broker.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start:\n{}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// Runs the CLI against this broker.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_with_input(&self.with_bootstrap(args), None)
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_input(&self, args: &[&str], input: &[u8]) -> Output {
        cli_with_input(&self.with_bootstrap(args), Some(input))
    }

    fn with_bootstrap(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push("-b".into());
        v.push(self.addr.clone());
        v
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_log_path(data_dir: &Path) -> PathBuf {
    let parent = data_dir.parent().unwrap_or(Path::new("/tmp"));
    (0..)
        .map(|i| parent.join(format!("broker-{i}.log")))
        .find(|p| !p.exists())
        .unwrap()
}

/// Runs `ringlog args...`, feeding `input` to stdin.
pub fn cli_with_input(args: &[String], input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(RINGLOG)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    child.wait_with_output().unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): stdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts failure and returns stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command should have failed: stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs a client future on a glommio executor of its own thread.
pub fn client<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// CPU time (user + system) a process has used, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesized command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}
