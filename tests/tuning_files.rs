//! The files in `tuning/` do what they say: the systemd unit passes
//! `systemd-analyze verify` and its `ExecStart` (with the example config) starts a
//! broker; `apply.sh` defaults to a dry run.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const TUNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning");

#[test]
fn the_unit_verifies_and_its_command_with_the_example_config_starts_a_broker() {
    let unit = std::fs::read_to_string(Path::new(TUNING).join("ringlog.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    assert_eq!(
        exec, "/usr/local/bin/ringlog serve --config /etc/ringlog/ringlog.toml",
        "the documented command"
    );
    // systemd-analyze checks that the program exists: point it at the one built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ringlog.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/ringlog", RINGLOG)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The unit's command with the example config (flags keep the test's ports and
    // directory): the config parses and the broker serves.
    let config = Path::new(TUNING).join("ringlog.toml");
    let mut broker = Broker::start(
        &dir.path().join("data"),
        1,
        &["--config", config.to_str().unwrap()],
    );
    ok(&broker.cli(&["topic", "list"]));
    assert!(broker.terminate().success(), "{}", broker.log());
}

#[test]
fn apply_sh_is_a_dry_run_by_default() {
    let out = Command::new("bash")
        .arg(Path::new(TUNING).join("apply.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("\nset "),
        "a dry run changes nothing:\n{text}"
    );
    assert!(
        text.lines()
            .all(|l| ["ok ", "would ", "skip ", "note ", "sysctl", "dry run"]
                .iter()
                .any(|p| l.starts_with(p))),
        "{text}"
    );
}
