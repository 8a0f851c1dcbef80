//! The admin HTTP listener (`admin.listener`, default 127.0.0.1:9644): `/metrics`
//! (Prometheus text), `/v1/status` (JSON), `/v1/ready` and `/v1/live`.
//!
//! It runs on its own thread with `tiny_http`, away from the shards: a scrape never
//! takes a shard's time except for the snapshot the shard copies when asked (see
//! `crate::metrics`). Every shard is asked at once and given [`SHARD_ANSWER_TIMEOUT`];
//! one that does not answer is reported as down (`ringlog_shard_up 0`, `/v1/live`
//! 503) instead of hanging the scrape.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server};
use tracing::{debug, warn};

use crate::broker::BrokerError;
use crate::metrics::render::{render, BrokerFacts};
use crate::metrics::{ShardQuery, ShardSnapshot};

/// How long a shard has to answer a scrape or a liveness probe.
pub const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries waiting for one shard; beyond this the shard is taken as not answering.
pub const SHARD_QUERIES_MAX: usize = 64;

/// Where the broker listens, for `/v1/status`.
#[derive(Clone, Debug)]
pub struct Listeners {
    pub native: SocketAddr,
    pub kafka: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// What the admin thread knows of the broker.
pub struct AdminState {
    pub broker_id: i32,
    pub data_dir: PathBuf,
    pub started: Instant,
    /// The CPU each shard is pinned to, by shard id.
    pub cores: Vec<usize>,
    pub listeners: Listeners,
    /// Set once the broker serves (metadata loaded, every listener bound).
    pub ready: AtomicBool,
    /// Set when shutdown starts.
    pub stopping: AtomicBool,
    shards: Vec<flume::Sender<ShardQuery>>,
}

impl AdminState {
    /// The state, and the receiving end of each shard's query channel (by shard id).
    pub fn new(
        broker_id: i32,
        data_dir: PathBuf,
        cores: Vec<usize>,
        listeners: Listeners,
    ) -> (Self, Vec<flume::Receiver<ShardQuery>>) {
        let (senders, receivers) = cores
            .iter()
            .map(|_| flume::bounded(SHARD_QUERIES_MAX))
            .unzip();
        let state = Self {
            broker_id,
            data_dir,
            started: Instant::now(),
            cores,
            listeners,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            shards: senders,
        };
        (state, receivers)
    }

    /// Asks every shard at once; `None` for a shard that did not answer in time.
    fn ask<T>(&self, query: impl Fn(flume::Sender<T>) -> ShardQuery) -> Vec<(u16, Option<T>)> {
        let deadline = Instant::now() + SHARD_ANSWER_TIMEOUT;
        let pending: Vec<(u16, Option<flume::Receiver<T>>)> = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                let (reply, answer) = flume::bounded(1);
                let sent = tx.try_send(query(reply)).is_ok();
                (i as u16, sent.then_some(answer))
            })
            .collect();
        pending
            .into_iter()
            .map(|(i, rx)| (i, rx.and_then(|rx| rx.recv_deadline(deadline).ok())))
            .collect()
    }

    /// Gives every shard reloaded broker retention; per shard, the partitions changed
    /// (`None`: the shard did not answer in time).
    pub fn set_retention(&self, ms: Option<u64>, bytes: Option<u64>) -> Vec<(u16, Option<usize>)> {
        self.ask(|reply| ShardQuery::Retention { ms, bytes, reply })
    }

    fn snapshots(&self) -> Vec<(u16, Option<ShardSnapshot>)> {
        self.ask(ShardQuery::Snapshot)
    }

    fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The running listener; [`AdminServer::stop`] ends its thread.
pub struct AdminServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the admin listener (before anything else starts, so a taken port is a clear
/// start-up error); returns it with the address it got (port 0 picks one).
pub fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
    let bind_err = |source| BrokerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    Ok((listener, bound))
}

impl AdminServer {
    pub fn start(listener: TcpListener, state: Arc<AdminState>) -> Result<Self, BrokerError> {
        let server = Server::from_listener(listener, None)
            .map_err(|e| BrokerError::Failed(format!("admin listener: {e}")))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("ringlog-admin".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    answer(&state, request);
                }
            })
            .map_err(|e| BrokerError::Failed(format!("admin thread: {e}")))?;
        Ok(Self {
            server,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(state: &AdminState, request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let (status, content_type, body) = if *request.method() != Method::Get {
        (
            405,
            TEXT,
            format!("{} {path}: only GET is served\n", request.method()),
        )
    } else {
        route(state, &path)
    };
    debug!(path = %path, status, "admin request");
    let mut response = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response = response.with_header(h);
    }
    if status == 405 {
        if let Ok(h) = Header::from_bytes(&b"Allow"[..], &b"GET"[..]) {
            response = response.with_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        warn!(error = %e, "admin response not sent");
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// Prometheus text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Status code, content type and body for a GET of `path`.
fn route(state: &AdminState, path: &str) -> (u16, &'static str, String) {
    match path {
        "/metrics" => {
            let facts = BrokerFacts {
                broker_id: state.broker_id,
                version: env!("CARGO_PKG_VERSION"),
                uptime_seconds: state.uptime(),
                log_lines_dropped: crate::metrics::log_writer::log_lines_dropped(),
                unclean_elections: crate::metrics::unclean_elections(),
            };
            (200, PROMETHEUS, render(&facts, &state.snapshots()))
        }
        "/v1/status" => (200, JSON, status_json(state)),
        "/v1/ready" => {
            let (code, why) = readiness(state);
            let body = serde_json::json!({ "ready": code == 200, "reason": why });
            (code, JSON, format!("{body}\n"))
        }
        "/v1/live" => {
            let answers = state.ask(ShardQuery::Ping);
            let stalled: Vec<u16> = answers
                .iter()
                .filter(|(_, a)| a.is_none())
                .map(|(i, _)| *i)
                .collect();
            let code = if stalled.is_empty() { 200 } else { 503 };
            let body = serde_json::json!({ "live": stalled.is_empty(), "stalled_shards": stalled });
            (code, JSON, format!("{body}\n"))
        }
        _ => (
            404,
            TEXT,
            format!("{path}: not found; try /metrics, /v1/status, /v1/ready or /v1/live\n"),
        ),
    }
}

/// 200 while the broker serves; 503 while it starts or stops.
fn readiness(state: &AdminState) -> (u16, &'static str) {
    if state.stopping.load(Ordering::Acquire) {
        (503, "stopping")
    } else if !state.ready.load(Ordering::Acquire) {
        (503, "starting")
    } else {
        (200, "serving")
    }
}

fn status_json(state: &AdminState) -> String {
    let snaps = state.snapshots();
    let shards: Vec<serde_json::Value> = state
        .cores
        .iter()
        .enumerate()
        .map(|(i, core)| {
            let snap = snaps.get(i).and_then(|(_, s)| s.as_ref());
            serde_json::json!({
                "shard": i,
                "core": core,
                "up": snap.is_some(),
                "partitions": snap.map(|s| s.partitions.len()),
            })
        })
        .collect();
    let l = &state.listeners;
    let body = serde_json::json!({
        "broker_id": state.broker_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.uptime(),
        "pid": std::process::id(),
        "state": readiness(state).1,
        "data_dir": state.data_dir.display().to_string(),
        "shards": shards,
        "listeners": {
            "native": l.native.to_string(),
            "kafka": l.kafka.map(|a| a.to_string()),
            "admin": l.admin.map(|a| a.to_string()),
        },
    });
    format!("{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(shards: usize) -> (AdminState, Vec<flume::Receiver<ShardQuery>>) {
        AdminState::new(
            1,
            PathBuf::from("/data"),
            (0..shards).collect(),
            Listeners {
                native: "127.0.0.1:9290".parse().unwrap(),
                kafka: None,
                admin: Some("127.0.0.1:9644".parse().unwrap()),
            },
        )
    }

    #[test]
    fn ready_only_between_start_and_stop() {
        let (s, _rx) = state(0);
        assert_eq!(route(&s, "/v1/ready").0, 503);
        s.ready.store(true, Ordering::Release);
        let (code, _, body) = route(&s, "/v1/ready");
        assert_eq!((code, body.contains("serving")), (200, true));
        s.stopping.store(true, Ordering::Release);
        let (code, _, body) = route(&s, "/v1/ready");
        assert_eq!((code, body.contains("stopping")), (503, true));
    }

    #[test]
    fn a_shard_that_does_not_answer_is_not_live_and_shows_down() {
        // The receiver is kept but nobody answers: the probe times out.
        let (s, _rx) = state(1);
        let (code, _, body) = route(&s, "/v1/live");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"stalled_shards\":[0]"), "{body}");
        let (code, _, text) = route(&s, "/metrics");
        assert_eq!(code, 200);
        assert!(text.contains("ringlog_shard_up{shard=\"0\"} 0\n"), "{text}");
    }

    #[test]
    fn unknown_paths_name_the_served_ones() {
        let (s, _rx) = state(0);
        let (code, _, body) = route(&s, "/v2/x");
        assert_eq!(code, 404);
        assert!(body.contains("/v1/status"));
    }
}
