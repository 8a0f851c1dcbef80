//! The layering ARCHITECTURE.md describes, checked on the source: protocol types
//! stay in their adapters, and the arrows among the broker's folders run one way
//! (daemon → adapters → core → storage). A change that breaks either fails here.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("source directory readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Files under `src/` that are not under any of `allowed` (folders or files,
/// relative to `src/`) and contain one of `needles` (comments included: a doc that
/// names a protocol type below its adapter is as misleading as code).
fn offenders(allowed: &[&str], needles: &[&str]) -> Vec<String> {
    let root = src();
    sources(&root)
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&root).ok()?.to_string_lossy().to_string();
            if allowed
                .iter()
                .any(|a| rel == *a || rel.starts_with(&format!("{a}/")))
            {
                return None;
            }
            needles_in(&path, needles).map(|hits| format!("{rel}: {hits}"))
        })
        .collect()
}

/// The `needles` the file at `path` contains, comma-separated; `None` if none.
fn needles_in(path: &Path, needles: &[&str]) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let hits: Vec<&str> = needles
        .iter()
        .copied()
        .filter(|n| text.contains(n))
        .collect();
    (!hits.is_empty()).then(|| hits.join(", "))
}

#[test]
fn native_protocol_types_are_named_only_by_the_native_adapter_and_its_client() {
    // The generated flatbuffer types live in `ringlog_schema::wire`.
    let found = offenders(
        &["native", "client", "cli", "bin"],
        &["schema::wire", "wire::{", "wire::Body", "wire::ErrorCode"],
    );
    assert!(
        found.is_empty(),
        "native protocol types below the native adapter:\n{}",
        found.join("\n")
    );
}

#[test]
fn inter_broker_protocol_types_are_named_only_by_the_peer_adapter() {
    let found = offenders(&["peer"], &["schema::peer", "peer_frame"]);
    assert!(
        found.is_empty(),
        "inter-broker protocol types outside src/peer:\n{}",
        found.join("\n")
    );
}

#[test]
fn kafka_protocol_types_are_named_only_by_the_kafka_adapter() {
    let found = offenders(&["kafka"], &["kafka_protocol"]);
    assert!(
        found.is_empty(),
        "Kafka protocol types outside src/kafka:\n{}",
        found.join("\n")
    );
}

/// Files under `src/<dir>` (or the file `src/<dir>`) that contain any of `needles`.
fn files_using(dir: &str, needles: &[&str]) -> Vec<String> {
    sources(&src().join(dir))
        .into_iter()
        .filter_map(|path| {
            needles_in(&path, needles).map(|hits| format!("{}: {hits}", path.display()))
        })
        .collect()
}

#[test]
fn the_core_depends_on_no_adapter_and_the_adapters_not_on_each_other() {
    let core_up = files_using(
        "core",
        &[
            "crate::native",
            "crate::kafka",
            "crate::peer",
            "crate::broker",
            "crate::client",
            "crate::cli",
        ],
    );
    assert!(
        core_up.is_empty(),
        "the core reaches up:\n{}",
        core_up.join("\n")
    );
    let native_to_kafka = files_using("native", &["crate::kafka", "crate::broker"]);
    assert!(
        native_to_kafka.is_empty(),
        "the native adapter reaches sideways or up:\n{}",
        native_to_kafka.join("\n")
    );
    let peer_up = files_using(
        "peer",
        &[
            "crate::native",
            "crate::kafka",
            "crate::broker",
            "crate::client",
        ],
    );
    assert!(
        peer_up.is_empty(),
        "the inter-broker adapter reaches sideways or up:\n{}",
        peer_up.join("\n")
    );
    let kafka_to_native = files_using("kafka", &["crate::native", "crate::broker"]);
    assert!(
        kafka_to_native.is_empty(),
        "the Kafka adapter reaches sideways or up:\n{}",
        kafka_to_native.join("\n")
    );
}

#[test]
fn the_layers_below_the_core_reach_nothing_above_them() {
    // Partition-level state (groups, metadata), the controller quorum's state
    // machines (cluster), replication's rules, metrics, config, the async
    // primitives, socket I/O and the clock are used by the core, the adapters and
    // the client; they must not use them back.
    let above = [
        "crate::core",
        "crate::native",
        "crate::kafka",
        "crate::broker",
        "crate::client",
        "crate::cli",
    ];
    let mut offenders = Vec::new();
    for below in [
        "cluster",
        "groups",
        "metadata",
        "metrics",
        "replication",
        "sync",
        "config.rs",
        "net.rs",
        "time.rs",
    ] {
        offenders.extend(files_using(below, &above));
    }
    assert!(
        offenders.is_empty(),
        "a layer below the core reaches up:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_mesh_has_no_catch_all_answer() {
    // Requests carry their own answer type: there is no "unexpected message" to
    // answer with, in the broker's messages or in the mesh.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "src/core/messages.rs",
        "src/core/shard.rs",
        "src/core/coordinator.rs",
        "shards/src/mesh.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect("file exists");
        assert!(
            !text.contains("Unexpected"),
            "{file} has an Unexpected message"
        );
    }
}
