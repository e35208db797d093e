//! CVE-2019-5736: a container must never be able to write the runtime's
//! binary through /proc/PID/exe. Being non-dumpable is not enough: an image
//! whose entrypoint is a `#!/proc/self/exe` script makes the runtime execute
//! itself again inside the container, dumpable, with the container's
//! credentials, and the host binary can then be reopened for writing.
//!
//! So the commands that enter containers (create, run, exec) first re-execute
//! hako-runc from a sealed memfd copy, as runc and crun do: every process of
//! ours that a container can reach maps only that copy, which nobody can
//! write. The cost is one copy and one execve; bench/ measures it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Is this process already running from a sealed copy?
pub fn is_sealed_copy() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS on an fd we own; EINVAL for non-memfd files.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

fn sealed_copy() -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a literal name; returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"hako-runc".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let src = std::fs::File::open("/proc/self/exe")?;
    let len = src.metadata()?.len();
    let mut copied: u64 = 0;
    while copied < len {
        // SAFETY: both fds are valid; null offsets use the file positions.
        let n = unsafe {
            libc::sendfile(
                memfd.as_raw_fd(),
                src.as_raw_fd(),
                std::ptr::null_mut(),
                (len - copied) as usize,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        copied += n as u64;
    }
    if copied != len {
        return Err(io::Error::other("short copy of /proc/self/exe"));
    }
    // F_SEAL_WRITE fails with EBUSY while any page of the memfd is still
    // transiently referenced (the kernel waits only briefly for pins to
    // drop); seen here about once in 1500 runs. Retry for up to ~1 s.
    let mut tries = 0;
    loop {
        // SAFETY: F_ADD_SEALS with a constant on our memfd.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } == 0 {
            return Ok(memfd);
        }
        let e = io::Error::last_os_error();
        tries += 1;
        if e.raw_os_error() != Some(libc::EBUSY) || tries >= 200 {
            return Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Re-execute from a sealed memfd copy unless already running from one.
/// Returns only on failure (or when nothing needed doing).
pub fn ensure() -> io::Result<()> {
    if is_sealed_copy() {
        return Ok(());
    }
    let memfd = sealed_copy()?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argv"))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec();
            kv.push(b'=');
            kv.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
            CString::new(kv).ok()
        })
        .collect();
    let mut argv: Vec<*mut libc::c_char> = args.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    // SAFETY: NULL-terminated arrays of C strings that outlive the call; the
    // memfd is close-on-exec, which is fine for an ELF image (the kernel
    // holds the file once execve has it).
    unsafe {
        libc::execveat(
            memfd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}
