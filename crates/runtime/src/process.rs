//! The last steps before execve, one path for the container's init and for
//! `exec`: both hand over to the container's program the same way, so a
//! defence added here holds for both.
//!
//! Order, and why:
//!  1. resolve the program and build argv/env, mark every fd but stdio and
//!     the preserved ones close-on-exec, check the cwd: these need syscalls
//!     (faccessat2, close_range, getcwd) a container's filter may forbid, so
//!     they happen before a filter can be loaded;
//!  2. without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
//!     now, before capabilities go (runc's order);
//!  3. user, groups and capabilities;
//!  4. chdir again as the container user, so a cwd it may not enter fails
//!     as it would for runc (CVE-2024-21626: the cwd must be inside the root);
//!  5. no_new_privs, umask;
//!  6. the caller's last step (the init: report Ready, wait for `start`,
//!     startContainer hooks);
//!  7. default signal dispositions and the caller's signal mask;
//!  8. with no_new_privs the filter loads last, so nothing of ours runs
//!     under it but the exec;
//!  9. execve through the sealed helper (crate::dmz, CVE-2019-5736).

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{Context, Error, Result};
use crate::init::{enter_cwd, find_executable};
use crate::plan::ProcessPlan;
use crate::sys;

/// What the final steps need besides the process.
pub(crate) struct Handover<'a> {
    pub process: &'a ProcessPlan,
    /// In a user namespace (ours or the container's).
    pub userns: bool,
    pub preserve_fds: u32,
    /// Signal mask to restore before execve.
    pub sigmask: libc::sigset_t,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Connected socket to linux.seccomp.listenerPath, for SCMP_ACT_NOTIFY.
    pub seccomp_listener: Option<BorrowedFd<'a>>,
    pub dmz: &'a OwnedFd,
}

fn to_cstrings(v: &[String], field: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::Other(format!("{field}: {s:?} contains a NUL byte")))
        })
        .collect()
}

/// Steps 1–9 above; `last_step` is step 6 and `process_state` the state
/// sent with a seccomp notify fd. Returns only on failure.
pub(crate) fn hand_over(
    h: &Handover<'_>,
    process_state: &dyn Fn() -> Vec<u8>,
    last_step: impl FnOnce() -> Result<()>,
) -> Result<Infallible> {
    let p = h.process;
    let exe = find_executable(&p.args[0], &p.env)?;
    let argv = to_cstrings(&p.args, "process.args")?;
    let envp = to_cstrings(&p.env, "process.env")?;
    for fd in 3..3 + h.preserve_fds {
        let _ = sys::set_cloexec(fd as i32, false);
    }
    sys::close_range_cloexec(3 + h.preserve_fds).ctx(|| "mark fds close-on-exec".into())?;
    enter_cwd(&p.cwd)?;

    let mut seccomp_pending = h.seccomp;
    let mut filtered = false;
    if !p.no_new_privs {
        if let Some(f) = seccomp_pending.take() {
            crate::seccomp::load(f, h.seccomp_listener, process_state)?;
            filtered = true;
        }
    }

    crate::caps::apply_user_and_caps(p, h.userns)?;

    // A filter that forbids chdir/getcwd leaves us in the directory
    // checked above.
    match enter_cwd(&p.cwd) {
        Ok(()) => {}
        Err(Error::Io { cause, .. })
            if filtered
                && matches!(cause.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOSYS)) => {}
        Err(Error::Other(_)) if filtered => {}
        Err(e) => return Err(e),
    }
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "set no_new_privs".into())?;
    }
    sys::umask(p.umask.unwrap_or(0o022));

    last_step()?;

    sys::reset_signal_dispositions();
    sys::set_sigmask(&h.sigmask).ctx(|| "restore the signal mask".into())?;
    if let Some(f) = seccomp_pending {
        crate::seccomp::load(f, h.seccomp_listener, process_state)?;
    }
    let err = crate::dmz::exec(h.dmz, &exe, &argv, &envp);
    Err(Error::Other(format!("exec {:?}: {err}", p.args[0])))
}
