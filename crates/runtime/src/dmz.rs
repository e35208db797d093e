//! CVE-2019-5736: a container must never be able to write the runtime's
//! binary through /proc/PID/exe. Being non-dumpable is not enough: an image
//! whose entrypoint is a `#!/proc/self/exe` script (or an ELF whose
//! interpreter is /proc/self/exe) makes the runtime's final execve run the
//! runtime itself inside the container, dumpable, with the container's
//! credentials; the host binary could then be reopened for writing.
//!
//! The runtime's last step is therefore not execve(program) but an execve
//! of this helper from a sealed memfd, which then execs the program: at the
//! moment the program's path (and any interpreter) is resolved,
//! /proc/self/exe is the sealed helper, never hako-runc. The helper is 432
//! bytes of assembly (dmz/*.S, built by build.rs), so sealing a fresh copy
//! costs microseconds, where re-executing the whole 4 MB runtime from a
//! sealed copy (runc's and crun's way) cost 3 ms per start here. runc 1.2
//! used the same idea ("runc-dmz").

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

static HELPER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dmz"));

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A sealed memfd holding the helper (made by the parent before clone).
pub fn sealed() -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a literal name; returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"hako-dmz".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::sys::write_all_fd(std::os::fd::AsFd::as_fd(&memfd), HELPER)?;
    // F_SEAL_WRITE fails with EBUSY while a page of the memfd is still
    // transiently referenced; retry briefly.
    for _ in 0..200 {
        // SAFETY: F_ADD_SEALS with a constant on our memfd.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } == 0 {
            return Ok(memfd);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}

/// Exec `exe` with `argv`/`envp` through the sealed helper. Returns only on
/// failure.
pub fn exec(helper: &OwnedFd, exe: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<&CStr> = Vec::with_capacity(argv.len() + 2);
    a.push(c"hako-dmz");
    a.push(exe);
    a.extend(argv.iter().map(CString::as_c_str));
    let e: Vec<&CStr> = envp.iter().map(CString::as_c_str).collect();
    crate::sys::execveat_fd(std::os::fd::AsFd::as_fd(helper), &a, &e)
}
