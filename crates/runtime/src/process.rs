//! The last steps before execve, one path for the container's init and for
//! `exec`: both hand over to the container's program the same way, so a
//! defence added here holds for both.
//!
//! The order is `steps::hand_over`; why each step is where it is:
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
//!  7. default signal dispositions and an empty signal mask;
//!  8. with no_new_privs the filter loads last, so nothing of ours runs
//!     under it but the exec;
//!  9. execve through the sealed helper (crate::dmz, CVE-2019-5736).

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{Context, Error, Result};
use crate::init::{enter_cwd, find_executable};
use crate::plan::ProcessPlan;
use crate::steps::Step;
use crate::sys;

/// The steps the init and exec share (the hand-over and a few first
/// steps): what they need besides the process, and what they pass on.
pub(crate) struct Handover<'a> {
    pub process: &'a ProcessPlan,
    /// In a user namespace (ours or the container's).
    pub userns: bool,
    pub preserve_fds: u32,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Connected socket to linux.seccomp.listenerPath, for SCMP_ACT_NOTIFY.
    pub seccomp_listener: Option<BorrowedFd<'a>>,
    pub dmz: &'a OwnedFd,
    /// The program, argv and env (ResolveProgram).
    pub prepared: Option<(CString, Vec<CString>, Vec<CString>)>,
    /// A filter is loaded (SeccompEarly): chdir/getcwd may be forbidden.
    pub filtered: bool,
}

fn to_cstrings(v: &[String], field: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::Other(format!("{field}: {s:?} contains a NUL byte")))
        })
        .collect()
}

impl Handover<'_> {
    /// Run one hand-over step (see the module's list); `Ok(false)` for a
    /// step that is not one of ours. `process_state` is the state sent
    /// with a seccomp notify fd. Exec returns only on failure.
    pub(crate) fn run_step(
        &mut self,
        step: Step,
        process_state: &dyn Fn() -> Vec<u8>,
    ) -> Result<bool> {
        let p = self.process;
        match step {
            // If the runtime dies before we are set up, so do we.
            Step::ParentDeathSignal => {
                sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
                    .ctx(|| "set parent-death signal".into())?;
            }
            // Until the final exec this is the runtime inside the container:
            // keep container processes from reading or ptracing it (its exe,
            // its fds). For the init only after the parent wrote our id maps:
            // a non-dumpable process's /proc files belong to root.
            Step::NonDumpable => {
                sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "set non-dumpable".into())?;
            }
            Step::Rlimits => {
                for r in &p.rlimits {
                    sys::setrlimit(r.resource, r.soft, r.hard).ctx(|| {
                        format!(
                            "process.rlimits: set resource {} to {}/{}",
                            r.resource, r.soft, r.hard
                        )
                    })?;
                }
            }
            Step::ResolveProgram => {
                let exe = find_executable(&p.args[0], &p.env)?;
                let argv = to_cstrings(&p.args, "process.args")?;
                let envp = to_cstrings(&p.env, "process.env")?;
                self.prepared = Some((exe, argv, envp));
            }
            Step::CloseFds => {
                for fd in 3..3 + self.preserve_fds {
                    let _ = sys::set_cloexec(fd as i32, false);
                }
                sys::close_range_cloexec(3 + self.preserve_fds)
                    .ctx(|| "mark fds close-on-exec".into())?;
            }
            Step::CheckCwd => enter_cwd(&p.cwd)?,
            Step::SeccompEarly | Step::SeccompLast => {
                if let Some(f) = self.seccomp {
                    crate::seccomp::load(f, self.seccomp_listener, process_state)?;
                    self.filtered = true;
                }
            }
            Step::UserAndCaps => crate::caps::apply_user_and_caps(p, self.userns)?,
            // A filter that forbids chdir/getcwd leaves us in the directory
            // checked before.
            Step::CheckCwdAsUser => match enter_cwd(&p.cwd) {
                Ok(()) => {}
                Err(Error::Io { cause, .. })
                    if self.filtered
                        && matches!(
                            cause.raw_os_error(),
                            Some(libc::EPERM) | Some(libc::ENOSYS)
                        ) => {}
                Err(Error::Other(_)) if self.filtered => {}
                Err(e) => return Err(e),
            },
            Step::NoNewPrivs => {
                sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "set no_new_privs".into())?;
            }
            Step::Umask => sys::umask(p.umask.unwrap_or(0o022)),
            Step::ClearParentDeathSignal => {
                sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0)
                    .ctx(|| "clear parent-death signal".into())?;
            }
            Step::ResetSignals => {
                // The program starts with default dispositions and nothing
                // blocked, whatever its runtime's caller had blocked (a
                // monitor reading signals from a signalfd, a shim): as
                // crun does. A blocked SIGTERM would make every stop wait
                // for its timeout.
                sys::reset_signal_dispositions();
                sys::set_sigmask(&sys::empty_sigmask()).ctx(|| "clear the signal mask".into())?;
            }
            Step::Exec => {
                let Some((exe, argv, envp)) = &self.prepared else {
                    return Err(Error::Other("exec before the program was resolved".into()));
                };
                let err = crate::dmz::exec(self.dmz, exe, argv, envp);
                return Err(Error::Other(format!("exec {:?}: {err}", p.args[0])));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
