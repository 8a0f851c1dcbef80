//! A real `ringlog serve` process for end-to-end tests, on 127.0.0.1 with an
//! ephemeral port and the caller's data directory. Shared by the root `tests/` and
//! `bench/tests/` (through `#[path]`); the including module provides
//! `ringlog_bin()` and `cli_with_input()`.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a broker may take to start before a test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running broker process; killed when dropped.
pub struct Broker {
    pub child: Child,
    pub data_dir: PathBuf,
    pub addr: String,
    /// The Kafka-protocol listener.
    pub kafka_addr: String,
    /// The admin HTTP listener (empty when turned off).
    pub admin_addr: String,
    pub log_path: PathBuf,
}

impl Broker {
    /// Starts `ringlog serve` on `data_dir` with `shards` shards and waits until it
    /// has written `listeners.json`.
    pub fn start(data_dir: &Path, shards: u16, extra: &[&str]) -> Broker {
        let log_dir = data_dir.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
        Broker::start_logging_in(data_dir, &log_dir, shards, extra)
    }

    /// As `start`, with the broker's log in `log_dir` (a test that fills the data
    /// dir's file system keeps the log elsewhere, so a panic message is not lost).
    pub fn start_logging_in(
        data_dir: &Path,
        log_dir: &Path,
        shards: u16,
        extra: &[&str],
    ) -> Broker {
        Broker::start_logging_to(data_dir, &next_log_path(log_dir), shards, extra)
    }

    /// As `start`, with the broker's stderr on `log_path` (which may be a device such
    /// as /dev/full; `log()` then must not be called).
    pub fn start_logging_to(
        data_dir: &Path,
        log_path: &Path,
        shards: u16,
        extra: &[&str],
    ) -> Broker {
        let mut broker = Broker::spawn(data_dir, log_path, shards, extra);
        broker.wait_ready();
        broker
    }

    /// Starts `ringlog serve` without waiting for it to be ready (a cluster's
    /// brokers are ready only once enough of them run).
    pub fn spawn(data_dir: &Path, log_path: &Path, shards: u16, extra: &[&str]) -> Broker {
        std::fs::create_dir_all(data_dir).unwrap();
        let log_path = log_path.to_path_buf();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let listeners = data_dir.join("listeners.json");
        let _ = std::fs::remove_file(&listeners);
        let child = Command::new(super::ringlog_bin())
            .args([
                "serve",
                "--native-addr",
                "127.0.0.1:0",
                "--kafka-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--shards")
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
        Broker {
            child,
            data_dir: data_dir.to_path_buf(),
            addr: String::new(),
            kafka_addr: String::new(),
            admin_addr: String::new(),
            log_path,
        }
    }

    /// Runs `ringlog serve --data-dir data_dir args...`, which must exit with an error
    /// before it is ready; returns its stderr. A broker that starts instead is killed
    /// and the test fails (rather than hanging on a server that never exits).
    pub fn serve_must_fail(data_dir: &Path, args: &[&str]) -> String {
        let stderr_path = data_dir.with_extension("stderr");
        let stderr = File::create(&stderr_path).unwrap();
        let mut child = Command::new(super::ringlog_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!status.success(), "serve {args:?} exited successfully");
                return std::fs::read_to_string(&stderr_path).unwrap_or_default();
            }
            let ready = data_dir.join("listeners.json").exists();
            if ready || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve {args:?} {} instead of failing:\n{}",
                    if ready { "started" } else { "kept running" },
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the broker has written `listeners.json` (it is ready).
    pub fn wait_ready(&mut self) {
        let listeners = self.data_dir.join("listeners.json");
        let broker = self;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&listeners) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                broker.addr = v["native"].as_str().unwrap().to_string();
                broker.kafka_addr = v["kafka"].as_str().unwrap_or_default().to_string();
                broker.admin_addr = v["admin"].as_str().unwrap_or_default().to_string();
                return;
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

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn child_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|stat| {
                let state = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .next()?
                    .to_string();
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
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
        super::cli_with_input(&self.with_bootstrap(args), None)
    }

    /// Every value of `topic`, read from the beginning with `ringlog consume`.
    #[allow(dead_code)] // Not every test binary reads topics back.
    pub fn consume_values(&self, topic: &str) -> Vec<String> {
        super::ok(&self.cli(&[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "1000",
        ]))
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_input(&self, args: &[&str], input: &[u8]) -> Output {
        super::cli_with_input(&self.with_bootstrap(args), Some(input))
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

fn next_log_path(log_dir: &Path) -> PathBuf {
    (0..)
        .map(|i| log_dir.join(format!("broker-{i}.log")))
        .find(|p| !p.exists())
        .unwrap()
}
