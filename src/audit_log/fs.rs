//! The file operations of the writer, behind a trait so tests can inject failures (an error,
//! a partial write, a hung `fdatasync`) without a real broken disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Opens and removes segment files, syncs the directory.
pub trait JournalFs: Send + Sync + 'static {
    /// Opens `path` for appending, creating it if missing.
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creation or removal of files in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One segment open for appending.
pub trait SegmentFile: Send {
    /// Writes all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (later appends go to the new end) and syncs it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdSegment(File);

impl JournalFs for StdFs {
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Box::new(StdSegment(f)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl SegmentFile for StdSegment {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.sync_all()
    }
}

#[derive(Default)]
struct Faults {
    fail_writes: AtomicBool,
    partial_writes: AtomicBool,
    fail_syncs: AtomicBool,
    fail_truncates: AtomicBool,
    sync_delay_ms: AtomicU64,
    syncs: AtomicU64,
}

/// [`StdFs`] with switchable faults, for tests. Clones share the switches.
#[derive(Clone, Default)]
pub struct FaultyFs {
    faults: Arc<Faults>,
}

impl FaultyFs {
    pub fn new() -> Self {
        Self::default()
    }
    /// Every append fails with `EIO` and writes nothing.
    pub fn fail_writes(&self, on: bool) {
        self.faults.fail_writes.store(on, Ordering::SeqCst);
    }
    /// Every append writes the first half of its buffer, then fails (a full disk).
    pub fn partial_writes(&self, on: bool) {
        self.faults.partial_writes.store(on, Ordering::SeqCst);
    }
    /// Every `fdatasync` fails.
    pub fn fail_syncs(&self, on: bool) {
        self.faults.fail_syncs.store(on, Ordering::SeqCst);
    }
    /// Every truncation fails.
    pub fn fail_truncates(&self, on: bool) {
        self.faults.fail_truncates.store(on, Ordering::SeqCst);
    }
    /// Every `fdatasync` first sleeps this long (a hung disk).
    pub fn sync_delay(&self, d: Duration) {
        self.faults
            .sync_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
    /// Number of successful `fdatasync`s so far.
    pub fn syncs(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

struct FaultySegment {
    inner: StdSegment,
    faults: Arc<Faults>,
}

impl JournalFs for FaultyFs {
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("open"));
        }
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Box::new(FaultySegment {
            inner: StdSegment(f),
            faults: self.faults.clone(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

impl SegmentFile for FaultySegment {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        if self.faults.partial_writes.load(Ordering::SeqCst) {
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected partial write",
            ));
        }
        self.inner.append(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("fdatasync"));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.faults.fail_truncates.load(Ordering::SeqCst) {
            return Err(injected("truncate"));
        }
        self.inner.truncate(len)
    }
}
