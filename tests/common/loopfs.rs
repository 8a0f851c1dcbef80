//! A small real file system for tests that fill a disk: an ext4 image of a few MiB,
//! loop-mounted on a temporary directory and unmounted on drop. Where loop devices
//! or mounting are unavailable (no root, no /dev/loop-control, a container), the
//! test says it SKIPPED instead of passing silently.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// Formats and mounts an ext4 image of `mib` MiB; `None` (with a SKIPPED line on
    /// stderr) where that cannot be done here.
    pub fn mount(test: &str, mib: u64) -> Option<LoopFs> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let steps: [&[&str]; 2] = [
            &["mkfs.ext4", "-q", "-F", "-m", "0", path(&image)],
            &["mount", "-o", "loop", path(&image), path(&mount_point)],
        ];
        for step in steps {
            let out = Command::new(step[0]).args(&step[1..]).output();
            let failed = match &out {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                eprintln!(
                    "SKIPPED {test}: cannot {} a loop file system: {why}",
                    step[0]
                );
                return None;
            }
        }
        Some(LoopFs {
            mount_point,
            _dir: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Bytes still free for root.
    pub fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(path(&self.mount_point)).unwrap();
        // SAFETY: statvfs writes one struct into `st`.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bfree as u64 * st.f_frsize as u64
    }

    /// Allocates a file of real blocks (not a sparse one) that leaves `left` bytes
    /// free; deleting it frees the space again.
    pub fn fill_leaving(&self, name: &str, left: u64) -> PathBuf {
        let file = self.mount_point.join(name);
        let f = std::fs::File::create(&file).unwrap();
        let len = self.free_bytes().saturating_sub(left);
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate on a file we own.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
        assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
        f.sync_all().unwrap();
        file
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Lazy: a broker that is still being killed must not keep the mount.
        let _ = Command::new("umount")
            .args(["-l", path(&self.mount_point)])
            .status();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
