//! raft-rs logs through `slog`; this drain hands its records to `tracing`, so the
//! quorum's messages land in the broker's log with everything else (target
//! `ringlog::raft`). Raft's debug chatter (every message) stays at debug and trace.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A `slog` drain writing to `tracing`.
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut text = format!("{}", record.msg());
        let mut kv = KvText(&mut text);
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "ringlog::raft", "{text}"),
            Level::Warning => tracing::warn!(target: "ringlog::raft", "{text}"),
            Level::Info => tracing::info!(target: "ringlog::raft", "{text}"),
            Level::Debug => tracing::debug!(target: "ringlog::raft", "{text}"),
            Level::Trace => tracing::trace!(target: "ringlog::raft", "{text}"),
        }
        Ok(())
    }
}

struct KvText<'a>(&'a mut String);

impl slog::Serializer for KvText<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

/// A logger for a quorum node (raft-rs tags its records with the node's id).
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_values_become_text() {
        let mut text = String::new();
        let mut kv = KvText(&mut text);
        slog::Serializer::emit_arguments(&mut kv, "term", &format_args!("{}", 3)).unwrap();
        assert_eq!(text, " term=3");
        // A logger built on the drain logs without panicking at every level.
        let log = logger();
        slog::info!(log, "became leader"; "term" => 3);
        slog::trace!(log, "message"; "to" => 2);
    }
}
