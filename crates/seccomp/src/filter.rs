//! The compiled filter and the only code that runs in the container child:
//! [`CompiledFilter::load`], one raw `seccomp(2)` call, no allocation, no
//! libseccomp.

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::error::{SeccompError, Warning};

/// Kernel limit on the length of a classic BPF program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// Size of one `struct sock_filter` in bytes.
const INSN_SIZE: usize = std::mem::size_of::<libc::sock_filter>();

// `program_bytes` and `from_bpf_bytes` rely on the kernel ABI layout
// {u16 code, u8 jt, u8 jf, u32 k}: 8 bytes, no padding.
const _: () = assert!(INSN_SIZE == 8);

/// Decode a native-endian `struct sock_filter` array.
pub(crate) fn parse_program(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    if bytes.is_empty() || bytes.len() % INSN_SIZE != 0 {
        return Err(SeccompError::BadProgram { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(INSN_SIZE)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// `SECCOMP_FILTER_FLAG_*` bits, as the kernel defines them.
pub mod flags {
    /// Synchronize all threads of the process to this filter.
    pub const TSYNC: u32 = 1 << 0;
    /// Log all actions except ALLOW.
    pub const LOG: u32 = 1 << 1;
    /// Disable the Speculative Store Bypass mitigation.
    pub const SPEC_ALLOW: u32 = 1 << 2;
    /// Return a user-notification listener fd.
    pub const NEW_LISTENER: u32 = 1 << 3;
    /// With TSYNC: report a sync failure as ESRCH instead of a thread id
    /// (needed together with NEW_LISTENER, whose success value is the fd).
    pub const TSYNC_ESRCH: u32 = 1 << 4;
    /// Notified tasks wait killably once the agent has received the notification.
    pub const WAIT_KILLABLE_RECV: u32 = 1 << 5;
}

/// A seccomp BPF program ready to be installed, plus the `seccomp(2)` flags
/// to install it with.
///
/// Built by [`crate::compile`] in the runtime parent before clone; the child
/// only calls [`CompiledFilter::load`]. Plain data: `Clone`, `Debug`, `Eq`.
#[derive(Clone)]
pub struct CompiledFilter {
    bpf: Vec<libc::sock_filter>,
    /// Exact `flags` argument of `seccomp(SECCOMP_SET_MODE_FILTER, ...)`.
    flags: u32,
    /// True when `flags` contains NEW_LISTENER, i.e. `load` returns an fd.
    notify: bool,
    warnings: Vec<Warning>,
}

impl CompiledFilter {
    pub(crate) fn new(
        bpf: Vec<libc::sock_filter>,
        flags: u32,
        warnings: Vec<Warning>,
    ) -> Result<Self, SeccompError> {
        if bpf.is_empty() {
            return Err(SeccompError::BadProgram { len: 0 });
        }
        if bpf.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLarge {
                len: bpf.len(),
                max: BPF_MAXINSNS,
            });
        }
        Ok(CompiledFilter {
            bpf,
            flags,
            notify: flags & flags::NEW_LISTENER != 0,
            warnings,
        })
    }

    /// Rebuild a filter from [`CompiledFilter::program_bytes`] and
    /// [`CompiledFilter::flags`] (e.g. from a cache keyed by their hash).
    /// The bytes are not verified beyond their length; the kernel verifies
    /// the program at load.
    pub fn from_bpf_bytes(bytes: &[u8], flags: u32) -> Result<Self, SeccompError> {
        Self::new(parse_program(bytes)?, flags, Vec::new())
    }

    /// The BPF program as the kernel reads it (native-endian
    /// `struct sock_filter` array). Stable for a given spec and libseccomp
    /// version, so it can be hashed to cache compiled filters.
    pub fn program_bytes(&self) -> &[u8] {
        // SAFETY: `sock_filter` is a `repr(C)` plain-old-data struct of
        // 8 bytes with no padding (asserted at compile time above), so every
        // byte of the vector's initialised elements is initialised; the slice
        // borrows `self.bpf` and cannot outlive it; u8 has alignment 1.
        unsafe {
            std::slice::from_raw_parts(self.bpf.as_ptr().cast::<u8>(), self.bpf.len() * INSN_SIZE)
        }
    }

    /// The instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.bpf
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.bpf.len()
    }

    /// Always false for a constructed filter (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.bpf.is_empty()
    }

    /// The exact `flags` argument `load` passes to `seccomp(2)`
    /// (see [`flags`]).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether `load` returns a user-notification listener fd
    /// (some rule uses `SCMP_ACT_NOTIFY`).
    pub fn needs_listener(&self) -> bool {
        self.notify
    }

    /// Non-fatal findings from compilation, for the runtime to log.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Install the filter on the calling thread (all threads with TSYNC).
    ///
    /// Meant for the container child right before `execve`: it does not
    /// allocate, take locks or call into libseccomp, so it is safe after
    /// `fork`/`clone` of a multi-threaded parent. The caller must have set
    /// `PR_SET_NO_NEW_PRIVS` or hold `CAP_SYS_ADMIN` in its user namespace,
    /// else the kernel answers `EACCES`.
    ///
    /// Returns the listener fd (close-on-exec) when
    /// [`needs_listener`](Self::needs_listener); the child must pass it to
    /// the runtime (e.g. [`crate::send_fd`] on the sync socket) and close it
    /// before `execve`. Error `ESRCH`: TSYNC could not synchronize a thread.
    pub fn load(&self) -> io::Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog {
            // Cannot truncate: `new` rejects programs longer than BPF_MAXINSNS (4096).
            len: self.bpf.len() as u16,
            filter: self.bpf.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(2) with SECCOMP_SET_MODE_FILTER reads `prog` and the
        // `len` instructions it points to; both live in `self`/this frame for
        // the whole call, and the kernel copies the program before returning.
        // The kernel never writes through `filter`, so the const-to-mut cast
        // is only to satisfy the C struct's type.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        if self.notify {
            let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a non-negative
            // return is a new file descriptor that nobody else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        if ret > 0 {
            // TSYNC without TSYNC_ESRCH: the return is the id of a thread that
            // could not be synchronized; the filter was not installed.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(None)
    }
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.bpf.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl PartialEq for CompiledFilter {
    fn eq(&self, other: &Self) -> bool {
        self.flags == other.flags
            && self.program_bytes() == other.program_bytes()
            && self.warnings == other.warnings
    }
}

impl Eq for CompiledFilter {}
