//! Segment file descriptors, opened on demand and closed when cold: one shard's
//! logs share an [`OpenFiles`] with a bound on descriptors kept open, so idle
//! partitions cost no file descriptor (10,000 partitions used to hold 10,018).
//!
//! Each segment holds a [`SegmentFile`]: the path and, while open, the `DmaFile`.
//! Users ask for the file (`get`), which reopens it if it was closed, and hold the
//! returned `Rc` only for the I/O at hand. When more than the bound are open, the
//! clock algorithm picks a victim: a file used since the hand last passed gets a
//! second chance; a file someone holds (a write or read in flight: its `Rc` count is
//! above one) is never closed. The bound is soft: when every open file is in use,
//! one more stays open.
//!
//! Closing and reopening is invisible to durability: fdatasync applies to the
//! inode, so a sync through a new descriptor covers writes made through the old.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::io::DmaFile;

use crate::error::Result;
use crate::recovery;

/// One shard's open segment files.
pub struct OpenFiles {
    capacity: usize,
    /// Every slot that may hold an open file, for the clock hand.
    ring: RefCell<Vec<Weak<Slot>>>,
    hand: Cell<usize>,
    open: Cell<usize>,
    reopened: Cell<u64>,
}

impl OpenFiles {
    /// At most `capacity` segment files open at once (soft, see the module doc).
    pub fn new(capacity: usize) -> Rc<Self> {
        Rc::new(Self {
            capacity: capacity.max(1),
            ring: RefCell::new(Vec::new()),
            hand: Cell::new(0),
            open: Cell::new(0),
            reopened: Cell::new(0),
        })
    }

    /// Segment files open now.
    pub fn open_now(&self) -> usize {
        self.open.get()
    }

    /// Files reopened after being closed as cold, since start.
    pub fn reopened(&self) -> u64 {
        self.reopened.get()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts a newly opened file and closes cold ones beyond the bound.
    fn opened(&self, slot: &Rc<Slot>) {
        self.open.set(self.open.get() + 1);
        if !slot.in_ring.replace(true) {
            self.ring.borrow_mut().push(Rc::downgrade(slot));
        }
        self.close_cold();
    }

    fn close_cold(&self) {
        let mut ring = self.ring.borrow_mut();
        // Two turns of the hand: the first clears second chances.
        let mut steps = 2 * ring.len();
        while self.open.get() > self.capacity && steps > 0 && !ring.is_empty() {
            steps -= 1;
            let at = self.hand.get() % ring.len();
            let Some(slot) = ring[at].upgrade() else {
                // The segment is gone (deleted, or its log closed).
                ring.swap_remove(at);
                continue;
            };
            self.hand.set(at + 1);
            let mut file = slot.file.borrow_mut();
            let in_use = file.as_ref().is_none_or(|f| Rc::strong_count(f) > 1);
            if in_use {
                continue;
            }
            if slot.referenced.replace(false) {
                continue;
            }
            // Dropping the last Rc hands the descriptor to the reactor to close.
            *file = None;
            self.open.set(self.open.get() - 1);
        }
    }
}

/// A segment file's descriptor, when open.
pub(crate) struct Slot {
    path: PathBuf,
    file: RefCell<Option<Rc<DmaFile>>>,
    /// Used since the clock hand last passed.
    referenced: Cell<bool>,
    in_ring: Cell<bool>,
    files: Rc<OpenFiles>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.file.get_mut().take().is_some() {
            self.files.open.set(self.files.open.get() - 1);
        }
    }
}

/// A segment's file: the path, and the descriptor while it is open.
#[derive(Clone)]
pub(crate) struct SegmentFile(Rc<Slot>);

impl SegmentFile {
    /// A file just opened (or created) at `path`.
    pub fn opened(path: PathBuf, file: DmaFile, files: &Rc<OpenFiles>) -> Self {
        let slot = Rc::new(Slot {
            path,
            file: RefCell::new(Some(Rc::new(file))),
            referenced: Cell::new(true),
            in_ring: Cell::new(false),
            files: files.clone(),
        });
        files.opened(&slot);
        SegmentFile(slot)
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The open file, reopened if it was closed as cold. Hold it only for the I/O
    /// at hand: while held, it cannot be closed.
    pub async fn get(&self) -> Result<Rc<DmaFile>> {
        self.0.referenced.set(true);
        if let Some(f) = self.0.file.borrow().as_ref() {
            return Ok(f.clone());
        }
        let file = Rc::new(recovery::open_rw(&self.0.path, false).await?);
        // Another task may have reopened it meanwhile: keep theirs.
        if let Some(f) = self.0.file.borrow().as_ref() {
            return Ok(f.clone());
        }
        *self.0.file.borrow_mut() = Some(file.clone());
        self.0.files.reopened.set(self.0.files.reopened.get() + 1);
        self.0.files.opened(&self.0);
        Ok(file)
    }

    /// Closes the descriptor now if nobody holds it (a log closing cleanly).
    pub async fn close(&self) -> Result<()> {
        let file = self.0.file.borrow_mut().take();
        let Some(file) = file else {
            return Ok(());
        };
        self.0.files.open.set(self.0.files.open.get() - 1);
        if let Ok(file) = Rc::try_unwrap(file) {
            file.close()
                .await
                .map_err(|e| crate::error::io_err("close", &self.0.path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("test");
    }

    #[test]
    fn cold_files_close_beyond_the_bound_and_reopen_on_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        run(move || async move {
            // glommio's IOPOLL probe must see a file with data first (GLOMMIO.md 12).
            recovery::probe_device_once(&root).await.unwrap();
            let files = OpenFiles::new(4);
            let mut segs = Vec::new();
            for i in 0..20 {
                let path = root.join(format!("{i}.log"));
                let f = recovery::open_rw(&path, true).await.unwrap();
                segs.push(SegmentFile::opened(path, f, &files));
                assert!(files.open_now() <= 4, "{} open after {i}", files.open_now());
            }
            // A file in use is never closed, even past the bound.
            let held: Vec<_> = {
                let mut held = Vec::new();
                for s in &segs[..6] {
                    held.push(s.get().await.unwrap());
                }
                held
            };
            assert_eq!(files.open_now(), 6);
            drop(held);
            // Reopened files work: write and read back through a fresh descriptor.
            let f = segs[19].get().await.unwrap();
            let mut buf = f.alloc_dma_buffer(4096);
            buf.as_bytes_mut().fill(9);
            f.write_at(buf, 0).await.unwrap();
            drop(f);
            for s in &segs[..10] {
                drop(s.get().await.unwrap());
            }
            let again = segs[19].get().await.unwrap();
            assert_eq!(again.read_at(0, 4096).await.unwrap()[100], 9);
            assert!(files.reopened() > 0);
            drop(again);
            // Segments dropped give their descriptors back.
            drop(segs);
            assert_eq!(files.open_now(), 0);
        });
    }
}
