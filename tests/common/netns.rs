//! Private network namespaces for tests that change network settings (socket buffer
//! sizes, later packet drops) without touching the machine's own.

use std::process::Command;

/// Runs `f` on a thread of its own inside a new network namespace whose loopback is
/// up, after writing each `(sysctl path under /proc/sys, value)` there. Processes
/// and threads started by `f` inherit the namespace. `None` (with a message saying
/// the test was skipped) where namespaces cannot be made, e.g. without privileges.
pub fn in_private_netns<T, F>(sysctls: &[(&str, &str)], f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let sysctls: Vec<(String, String)> = sysctls
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "SKIPPED: cannot make a network namespace: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !matches!(up, Ok(s) if s.success()) {
            eprintln!("SKIPPED: `ip link set lo up` failed in the namespace: {up:?}");
            return None;
        }
        for (key, value) in &sysctls {
            // /proc/sys/net resolves to the opening thread's namespace.
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
            let read = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                read.split_whitespace().collect::<Vec<_>>(),
                value.split_whitespace().collect::<Vec<_>>(),
                "{path}"
            );
        }
        Some(f())
    })
    .join()
    .unwrap()
}
