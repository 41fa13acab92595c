//! Injectable environment: clock, file preallocation and disk-usage probe. Tests replace these
//! to simulate time passing (retention) and a full disk.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Reserves disk blocks for a new segment so later writes through the mapping cannot hit
/// ENOSPC (which would be a SIGBUS through mmap).
pub trait FileAllocator: Send + Sync {
    fn allocate(&self, file: &File, len_bytes: u64) -> std::io::Result<()>;
}

/// `posix_fallocate` (glibc emulates it by writing zeros on filesystems without fallocate).
pub struct FallocateAllocator;

impl FileAllocator for FallocateAllocator {
    fn allocate(&self, file: &File, len_bytes: u64) -> std::io::Result<()> {
        let len = libc::off_t::try_from(len_bytes)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: plain syscall on a valid, owned descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}

pub trait DiskProbe: Send + Sync {
    /// Used space of the filesystem holding `path`, in percent (0..=100), if known.
    fn used_percent(&self, path: &Path) -> Option<f64>;
}

pub struct StatvfsProbe;

impl DiskProbe for StatvfsProbe {
    fn used_percent(&self, path: &Path) -> Option<f64> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes into a zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 || st.f_blocks == 0 {
            return None;
        }
        let total = st.f_blocks as f64;
        // Count the blocks this process can really write: root may use the filesystem's
        // reserved blocks (f_bfree, what Java's File.getFreeSpace reports), anyone else only
        // f_bavail. Using f_bavail for root would call a disk "full" that still has its whole
        // reserve (often several percent, on some machines far more) available to us.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        let free = if is_root { st.f_bfree } else { st.f_bavail } as f64;
        Some(((total - free) / total * 100.0).clamp(0.0, 100.0))
    }
}

#[derive(Clone)]
pub struct StoreEnv {
    pub clock: Arc<dyn Clock>,
    pub allocator: Arc<dyn FileAllocator>,
    pub disk_probe: Arc<dyn DiskProbe>,
}

impl Default for StoreEnv {
    fn default() -> Self {
        StoreEnv {
            clock: Arc::new(SystemClock),
            allocator: Arc::new(FallocateAllocator),
            disk_probe: Arc::new(StatvfsProbe),
        }
    }
}
