//! The container's init, from clone until execve. Runs in the child.
//!
//! The order is `steps::init` (unit-tested there); each step here says why
//! it is where it is.
//!  1. wait for the parent (id maps written); enter the v1 cgroup
//!     hierarchies (the cgroup2 one we were cloned into)
//!  2. become root of a new user namespace; join namespaces given by path
//!  3. hostname, sysctl (through the host's /proc, before pivot_root, so the
//!     container cannot redirect the writes)
//!  4. rootfs: mounts, devices, console; then prestart/createRuntime hooks
//!     in the parent and createContainer hooks here, before pivot_root
//!  5. pivot_root; masked/read-only paths and the read-only root last
//!  6. process: rlimits, keyring, user and capabilities, cwd (checked to be
//!     inside the root), no_new_privs; every other fd marked close-on-exec
//!  7. tell the parent we are ready; block on the exec fifo until `start`
//!  8. startContainer hooks, reset signals, seccomp last, execve

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::mounts::{self, MountCtx};
use crate::paths;
use crate::plan::{NsKind, Plan, ProcessPlan};
use crate::steps::Step;
use crate::sync::{Channel, Msg};
use crate::sys;

/// What the init needs besides the plan (all fds inherited through clone).
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub plan: &'a Plan,
    pub process: &'a ProcessPlan,
    pub chan: &'a Channel,
    /// O_PATH fd of the exec fifo.
    pub fifo: BorrowedFd<'a>,
    /// Connected console socket when a terminal is asked for.
    pub console: Option<BorrowedFd<'a>>,
    /// Namespaces the child joins itself (not pid/time: the parent does those).
    pub joins: &'a [(NsKind, OwnedFd)],
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Compiled seccomp filter (see crate::seccomp for when it is loaded).
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Connected socket to linux.seccomp.listenerPath, for SCMP_ACT_NOTIFY.
    pub seccomp_listener: Option<BorrowedFd<'a>>,
    /// The sealed exec helper the program is started through (crate::dmz).
    pub dmz: &'a OwnedFd,
    /// Rootfs and bind sources opened by the parent (mounts::Handoff).
    pub handoff: Option<&'a mounts::Handoff>,
    /// The v1 cgroup hierarchies to move ourselves into (crate::cgroup).
    pub cgroup: Option<hako_cgroups::Entry>,
}

/// Set once the parent has been told we are ready: from then on errors can
/// only go to stderr. Before, the parent reports them (or is gone, and so
/// are we by the parent-death signal).
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Entry point in the child. Never returns.
pub fn main(mut a: InitArgs<'_>) -> ! {
    let cgroup = a.cgroup.take();
    let code = match run(&a, cgroup) {
        Ok(()) => 0,
        Err(e) => {
            // Before Ready the parent reads the channel and reports the
            // error; a channel it closed means it gave up (its own step
            // failed) and reports that itself: one line, none from here.
            // After Ready nobody may be reading (`create` returned, `run`
            // waits for the process): say it on stderr, which is the
            // container's and so the caller's.
            if READY_SENT.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sys::write_all_fd(
                    // SAFETY: fd 2 is open for the life of the process or the
                    // write simply fails.
                    unsafe { BorrowedFd::borrow_raw(2) },
                    format!("hako-runc: {e}\n").as_bytes(),
                );
            } else {
                let _ = a.chan.send(&Msg::Failed(e.to_string()));
            }
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and destructors that belong to the
    // runtime process we were copied from.
    unsafe { libc::_exit(code) }
}

fn run(a: &InitArgs<'_>, cgroup: Option<hako_cgroups::Entry>) -> Result<()> {
    let plan = a.plan;
    let steps = crate::steps::init(
        plan,
        a.process,
        &crate::steps::InitInputs {
            joins: !a.joins.is_empty(),
            enters_cgroup: cgroup.is_some(),
            seccomp: a.seccomp.is_some(),
            no_new_keyring: a.no_new_keyring,
        },
    );
    let mut init = Init {
        a,
        host_pid: 0,
        cgroup,
        // In a user namespace of our own or one we were started in (a
        // rootless engine's monitor): devices are bound, not made.
        userns: plan.ns.has(NsKind::User) || !sys::in_initial_userns(),
        proc_handle: None,
        rootfs: None,
        pty_peer: None,
        start_fifo: None,
        handover: crate::process::Handover {
            process: a.process,
            userns: false,
            preserve_fds: a.preserve_fds,
            seccomp: a.seccomp,
            seccomp_listener: a.seccomp_listener,
            dmz: a.dmz,
            prepared: None,
            filtered: false,
        },
    };
    init.handover.userns = init.userns;
    crate::steps::run(&steps, &mut init)
}

/// The init's executor: each step of `steps::init`, with what one step
/// leaves for a later one.
struct Init<'a, 'b> {
    a: &'b InitArgs<'a>,
    host_pid: i32,
    /// Taken by the EnterCgroup step.
    cgroup: Option<hako_cgroups::Entry>,
    userns: bool,
    /// Our own procfs handle for every write to /proc and for reopening the
    /// exec fifo (PrivateProc).
    proc_handle: Option<OwnedFd>,
    rootfs: Option<mounts::Rootfs>,
    pty_peer: Option<OwnedFd>,
    /// The exec fifo's write end, held (close-on-exec) until the process is
    /// executed: `start` waits for it to close, so poststart hooks run after
    /// the startContainer hooks and the exec, as the spec orders them.
    start_fifo: Option<OwnedFd>,
    handover: crate::process::Handover<'a>,
}

impl crate::steps::Executor for Init<'_, '_> {
    fn run_step(&mut self, step: Step) -> Result<()> {
        let a = self.a;
        let plan = a.plan;
        match step {
            Step::WaitForParent => {
                let Msg::Go(pid) = a.chan.expect("go")? else {
                    unreachable!()
                };
                self.host_pid = pid;
                // Device nodes and files get exactly the modes asked for.
                sys::umask(0);
            }
            // Before anything for the container, and before a fork
            // (LateNamespaces): we are still one thread.
            Step::EnterCgroup => crate::cgroup::enter(&mut self.cgroup)?,
            // The creator has every capability in the new namespace; become
            // its root so files we create are owned by the container's root.
            Step::UserNsRoot => {
                sys::setresgid(0).ctx(|| "setresgid(0) in the user namespace".into())?;
                sys::setresuid(0).ctx(|| "setresuid(0) in the user namespace".into())?;
            }
            // The user namespace first, so that the others are entered (or
            // created) with the capabilities it grants.
            Step::JoinNamespaces => {
                for (kind, fd) in a.joins {
                    sys::setns(fd.as_fd(), kind.flag()).ctx(|| {
                        format!(
                            "join {} namespace {:?}",
                            kind.spec_name(),
                            plan.ns.joined(*kind)
                        )
                    })?;
                    if *kind == NsKind::User {
                        let _ = sys::setresgid(0);
                        let _ = sys::setresuid(0);
                    }
                }
            }
            // Now that we are in our cgroup, it becomes the root of the new
            // cgroup namespace.
            Step::UnshareCgroupNs => {
                sys::unshare(libc::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())?;
            }
            Step::LateNamespaces => self.late_namespaces()?,
            Step::Hostname => {
                if let Some(h) = &plan.hostname {
                    sys::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
                }
                if let Some(d) = &plan.domainname {
                    sys::setdomainname(d).ctx(|| format!("setdomainname {d:?}"))?;
                }
            }
            // A fresh detached procfs nobody else can mount over
            // (CVE-2025-52881). Where a fresh one cannot be made (a user
            // namespace without its own pid namespace), the host's /proc,
            // opened while the host's root is still ours.
            Step::PrivateProc => {
                self.proc_handle = Some(match sys::private_procfs() {
                    Ok(fd) => fd,
                    Err(_) => sys::openat(
                        None,
                        Path::new("/proc"),
                        libc::O_PATH | libc::O_DIRECTORY,
                        0,
                    )
                    .ctx(|| "open /proc".into())?,
                });
            }
            // Through our procfs, before pivot_root, so the container
            // cannot redirect the writes.
            Step::Sysctl => {
                let proc = self.proc()?;
                for (k, v) in &plan.sysctl {
                    let rel = PathBuf::from("sys").join(k.replace('.', "/"));
                    let f = sys::open_in_proc(proc, &rel, libc::O_WRONLY | libc::O_TRUNC, false)
                        .ctx(|| format!("linux.sysctl: open /proc/{}", rel.display()))?;
                    sys::write_all_fd(f.as_fd(), v.as_bytes())
                        .ctx(|| format!("linux.sysctl: write {v:?} to /proc/{}", rel.display()))?;
                }
            }
            Step::Mounts => {
                self.rootfs = Some(mounts::prepare_rootfs(&MountCtx {
                    plan,
                    userns: self.userns,
                    handoff: a.handoff,
                })?);
            }
            Step::Console => self.console()?,
            // prestart and createRuntime hooks run in the parent now that
            // the namespaces and mounts exist.
            Step::ParentHooks => {
                a.chan
                    .send(&Msg::HooksRequest)
                    .ctx(|| "sync with the runtime".into())?;
                a.chan.expect("hooks-done")?;
            }
            Step::CreateContainerHooks => {
                let state = hook_state(a, self.host_pid, "created");
                crate::hooks::run_hooks(
                    "createContainer",
                    &plan.hooks.create_container,
                    &state,
                    true,
                )?;
            }
            Step::PivotRoot => {
                let Some(r) = self.rootfs.take() else {
                    return Err(Error::Other("pivot_root without a rootfs".into()));
                };
                mounts::enter_rootfs(&r, a.no_pivot)?;
            }
            Step::Chroot => {
                sys::chroot(&plan.rootfs).ctx(|| format!("chroot {}", plan.rootfs.display()))?;
                std::env::set_current_dir("/").ctx(|| "chdir /".into())?;
            }
            Step::FinishRootfs => mounts::finish_rootfs(plan)?,
            Step::Setsid => {
                sys::setsid().ctx(|| "setsid".into())?;
                if let Some(peer) = self.pty_peer.take() {
                    for fd in 0..3 {
                        sys::dup2(peer.as_raw_fd(), fd).ctx(|| "attach the console".into())?;
                    }
                    sys::set_controlling_tty(0).ctx(|| "set the controlling terminal".into())?;
                }
            }
            // A fresh session keyring per container, so containers do not
            // share the host's keys. Kernels without keyrings simply skip it.
            Step::Keyring => match sys::keyctl_join_session(&format!("_ses.{}", a.id)) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOSYS) | Some(libc::EACCES) | Some(libc::EDQUOT)
                    ) => {}
                Err(e) => return Err(e).ctx(|| "join a new session keyring".into()),
            },
            Step::ReportReady => {
                a.chan
                    .send(&Msg::Ready)
                    .ctx(|| "tell the runtime we are ready".into())?;
                READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            // Opening the fifo for writing blocks until `start` reads it.
            // Reopen through our procfs handle: the container's /proc may be
            // missing or masked, and the path must not be the container's to
            // choose.
            Step::WaitForStart => {
                let link = PathBuf::from(format!("thread-self/fd/{}", a.fifo.as_raw_fd()));
                let w = sys::open_in_proc(self.proc()?, &link, libc::O_WRONLY, true)
                    .ctx(|| "open the exec fifo".into())?;
                sys::write_all_fd(w.as_fd(), b"0").ctx(|| "write the exec fifo".into())?;
                self.start_fifo = Some(w);
                self.proc_handle = None;
            }
            Step::StartContainerHooks => {
                let state = hook_state(a, self.host_pid, "running");
                crate::hooks::run_hooks(
                    "startContainer",
                    &plan.hooks.start_container,
                    &state,
                    true,
                )?;
            }
            other => {
                let host_pid = self.host_pid;
                let state = || process_state(a, host_pid);
                if !self.handover.run_step(other, &state)? {
                    return Err(Error::Other(format!("{other:?} is not an init step")));
                }
            }
        }
        Ok(())
    }
}

impl Init<'_, '_> {
    fn proc(&self) -> Result<BorrowedFd<'_>> {
        self.proc_handle
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| Error::Other("no procfs handle".into()))
    }

    /// Namespaces that could not be created at clone time because they must
    /// belong to the joined user namespace.
    fn late_namespaces(&mut self) -> Result<()> {
        let plan = self.a.plan;
        let mut flags = 0;
        for k in &plan.ns.new {
            if !matches!(k, NsKind::User | NsKind::Time) {
                flags |= k.flag();
            }
        }
        if flags != 0 {
            sys::unshare(flags).ctx(|| "unshare namespaces in the joined user namespace".into())?;
        }
        if plan.ns.is_new(NsKind::Pid) {
            // A new pid namespace only takes effect for children: fork once
            // more; this process reports the real init's pid and exits.
            match sys::fork().ctx(|| "fork into the new pid namespace".into())? {
                Some(pid) => {
                    let _ = self.a.chan.send(&Msg::InitPid(pid));
                    // SAFETY: see main(): leave without running destructors.
                    unsafe { libc::_exit(0) }
                }
                None => {
                    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
                        .ctx(|| "set parent-death signal".into())?;
                    let Msg::Go(p) = self.a.chan.expect("go")? else {
                        unreachable!()
                    };
                    self.host_pid = p;
                }
            }
        }
        Ok(())
    }

    /// A pty from the container's own devpts, its peer bound to
    /// /dev/console by fd and the master handed to the console socket.
    fn console(&mut self) -> Result<()> {
        let a = self.a;
        let Some(sock) = a.console else {
            return Err(Error::Other(
                "a terminal was asked for but there is no console socket".into(),
            ));
        };
        let master = match &self.rootfs {
            Some(r) => paths::open_in_root_flags(
                r.root.as_fd(),
                Path::new("/dev/pts/ptmx"),
                libc::O_RDWR | libc::O_NOCTTY,
            ),
            None => sys::openat(
                None,
                Path::new("/dev/ptmx"),
                libc::O_RDWR | libc::O_NOCTTY,
                0,
            ),
        }
        .ctx(|| "open /dev/pts/ptmx".into())?;
        let peer = sys::pty_peer(master.as_fd()).ctx(|| "open the pty peer".into())?;
        if let Some((rows, cols)) = a.process.console_size {
            let _ = sys::set_winsize(peer.as_raw_fd(), rows, cols);
        }
        if let Some(r) = &self.rootfs {
            let target = paths::fresh_file_in_root(r.root.as_fd(), Path::new("/dev/console"))
                .ctx(|| "create /dev/console".into())?;
            sys::mount(
                Some(sys::fd_path(peer.as_fd()).as_os_str()),
                &sys::fd_path(target.as_fd()),
                None,
                libc::MS_BIND,
                None,
            )
            .ctx(|| "bind the pty to /dev/console".into())?;
        }
        sys::send_fd(sock, b"/dev/console", master.as_fd())
            .ctx(|| "send the pty master to the console socket".into())?;
        self.pty_peer = Some(peer);
        Ok(())
    }
}

fn hook_state(a: &InitArgs<'_>, pid: i32, status: &str) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": a.plan.oci_version,
        "id": a.id,
        "status": status,
        "pid": pid,
        "bundle": a.plan.bundle,
    });
    if !a.plan.annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&a.plan.annotations).unwrap_or_default();
    }
    v.to_string().into_bytes()
}

/// runtime-spec's container process state, sent with a seccomp listener.
fn process_state(a: &InitArgs<'_>, pid: i32) -> Vec<u8> {
    let state: serde_json::Value =
        serde_json::from_slice(&hook_state(a, pid, "running")).unwrap_or_default();
    let mut v = serde_json::json!({
        "ociVersion": a.plan.oci_version,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = a
        .plan
        .seccomp
        .as_ref()
        .and_then(|s| s.listener_metadata().clone())
    {
        v["metadata"] = m.into();
    }
    v.to_string().into_bytes()
}

/// chdir to the process cwd and check it is inside the root.
pub(crate) fn enter_cwd(cwd: &Path) -> Result<()> {
    std::env::set_current_dir(cwd).ctx(|| format!("chdir to process.cwd {cwd:?}"))?;
    match std::env::current_dir() {
        Ok(c) if c.is_absolute() => Ok(()),
        _ => Err(Error::Other(format!(
            "process.cwd {cwd:?} is outside the container root"
        ))),
    }
}

/// Resolve args[0] as execvp would, with the container's PATH.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<CString> {
    let check = |p: &Path| -> Option<CString> {
        let meta = std::fs::metadata(p).ok()?;
        if meta.is_file() && sys::access_x(p) {
            sys::cstr(p).ok()
        } else {
            None
        }
    };
    if arg0.contains('/') {
        return check(Path::new(arg0)).ok_or_else(|| {
            Error::Other(format!(
                "exec: {arg0:?}: {}",
                if Path::new(arg0).exists() {
                    "permission denied"
                } else {
                    "no such file or directory"
                }
            ))
        });
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        if let Some(c) = check(&Path::new(dir).join(arg0)) {
            return Ok(c);
        }
    }
    Err(Error::Other(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}
