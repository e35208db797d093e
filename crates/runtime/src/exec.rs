//! `exec`: run another process in a running container.
//!
//! The parent opens the init's namespace files, enters the pid and time
//! namespaces for its children only, and forks once; the child joins the
//! user namespace first, then the rest, the mount namespace last (setns on
//! a mount namespace moves root and cwd to the container's root). The child
//! starts in the container's cgroup when that is one cgroup2 directory;
//! otherwise the parent moves it in before letting it go on.
//! Success is the sync socket closing on execve (it is close-on-exec).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::error::{Context, Error, Result};
use crate::plan::{self, NsKind, ProcessPlan};
use crate::state::{self, Status};
use crate::steps::Step;
use crate::sync::{Channel, Msg};
use crate::sys;

#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// With a terminal proxied here: the keys that detach (the process
    /// runs on and exec returns 0).
    pub detach_keys: Option<crate::console::DetachKeys>,
}

/// The container's `process` from its config.json, as the base for an
/// exec of `args` (what runc does for inline arguments).
pub fn default_process(root: &Path, id: &str) -> Result<Process> {
    let (_, st, _) = crate::container::load(root, id)?;
    let spec = plan::load_spec(&st.bundle)?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_terminal(Some(false));
    p.set_console_size(None);
    Ok(p)
}

fn ns_ino(path: &str) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Run the process; returns its exit code (0 when detached).
pub fn exec(opts: &ExecOpts) -> Result<i32> {
    // The exec process is visible in the container before its final exec.
    crate::protect::reexec_protected()?;
    let (dir, st, status) = crate::container::load(&opts.root, &opts.id)?;
    if status != Status::Running {
        return Err(Error::BadState {
            id: opts.id.clone(),
            status: status.to_string(),
            msg: "can only exec in a running container".into(),
        });
    }
    let process = plan::plan_process(&opts.process)?;
    if process.terminal && opts.detach && opts.console_socket.is_none() {
        return Err(Error::Other(
            "exec -t -d needs --console-socket to hand the terminal to".into(),
        ));
    }
    let spec = plan::load_spec(&st.bundle)?;
    let seccomp_spec = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let seccomp = match &seccomp_spec {
        Some(s) => Some(crate::seccomp::compile(s, &opts.root)?),
        None => None,
    };
    // As for the init: a notify filter's fd goes to the listener with the
    // container's state (the exec process's pid is added in the child).
    let seccomp_listener =
        crate::container::connect_seccomp_listener(seccomp_spec.as_ref(), seccomp.as_ref())?;
    let mut listener_state = serde_json::json!({
        "ociVersion": spec.version(),
        "fds": ["seccompFd"],
        "state": crate::container::state_json(&opts.root, &opts.id).unwrap_or_default(),
    });
    if let Some(m) = seccomp_spec
        .as_ref()
        .and_then(|s| s.listener_metadata().clone())
    {
        listener_state["metadata"] = m.into();
    }

    // The init's namespaces that differ from ours; pinned by fd now, so a
    // dying init cannot make us join something else.
    // Pin the init with a pidfd, then check it is still ours, so a reused
    // pid cannot make us join another process's namespaces.
    let _pin = sys::pidfd_open(st.pid).ctx(|| format!("pidfd_open {}", st.pid))?;
    if !state::init_alive(&st) {
        return Err(Error::Other(format!("container {} stopped", opts.id)));
    }
    let mut joins: Vec<(NsKind, OwnedFd)> = Vec::new();
    for kind in [
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Network,
        NsKind::Pid,
        NsKind::Cgroup,
        NsKind::Time,
        NsKind::Mount,
    ] {
        let theirs = format!("/proc/{}/ns/{}", st.pid, kind.proc_name());
        let ours = format!("/proc/self/ns/{}", kind.proc_name());
        if ns_ino(&theirs) != ns_ino(&ours) {
            let fd = sys::openat(None, Path::new(&theirs), libc::O_RDONLY, 0)
                .ctx(|| format!("open {theirs}"))?;
            joins.push((kind, fd));
        }
    }
    let userns = joins.iter().any(|(k, _)| *k == NsKind::User);
    let dmz = crate::dmz::sealed().ctx(|| "seal the exec helper".into())?;

    let (own_console, console) =
        crate::container::console_socket(opts.console_socket.as_deref(), process.terminal)?;
    let (parent_sock, child_sock) = sys::socketpair_seqpacket().ctx(|| "sync socketpair".into())?;

    // pid and time namespaces take effect for children: enter them for the
    // fork, come back after.
    let (restore, child_joins) = crate::container::enter_for_children(joins)?;

    // The process is cloned into the container's cgroup2 directory and
    // moves itself into v1 hierarchies: no pid for us to move (the first
    // move waits for an RCU grace period).
    let cgroup = crate::cgroup::from_state(&st);
    let mut entry = cgroup.as_deref().and_then(crate::cgroup::open_for_clone);

    let old_mask = sys::block_all_signals().ctx(|| "block signals".into())?;
    let (forked, parent_moves) = crate::cgroup::clone_entering(0, entry.as_mut(), "exec process");
    let (pid, child_pidfd) = match forked {
        Err(e) => {
            let _ = sys::set_sigmask(&old_mask);
            return Err(e).ctx(|| "fork the exec process".into());
        }
        Ok(sys::Forked::Child) => {
            drop(parent_sock);
            let chan = Channel::new(child_sock);
            let r = child(
                &ChildArgs {
                    process: &process,
                    chan: &chan,
                    joins: &child_joins,
                    console: console.as_ref().map(|c| c.as_fd()),
                    preserve_fds: opts.preserve_fds,
                    seccomp: seccomp.as_ref(),
                    seccomp_listener: seccomp_listener.as_ref().map(|s| s.as_fd()),
                    listener_state: &listener_state,
                    userns,
                    dmz: &dmz,
                },
                entry.filter(hako_cgroups::Entry::moves_self),
            );
            if let Err(e) = r {
                let _ = chan.send(&Msg::Failed(e.to_string()));
            }
            // SAFETY: leave the forked copy without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(1) }
        }
        Ok(sys::Forked::Parent { pid, pidfd }) => (pid, pidfd),
    };
    // The child's copies are its own; ours would only keep files open.
    drop(entry);
    if opts.detach {
        let _ = sys::set_sigmask(&old_mask);
    }
    for (fd, flag) in restore.into_iter().rev() {
        match sys::setns(fd.as_fd(), flag) {
            Ok(()) => {}
            // Inside a user namespace there is no way back to a pid (or
            // time) namespace of the initial one: our later children land
            // in the container's. A rootless caller runs us in a child
            // process that ends with the exec (the engine does).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !sys::in_initial_userns() => {}
            Err(e) => return Err(e).ctx(|| "return to the runtime's namespaces".into()),
        }
    }
    drop(child_sock);
    drop(console);
    drop(seccomp_listener);
    let chan = Channel::new(parent_sock);

    let fail = |e: Error| -> Error {
        let _ = sys::pidfd_send_signal(child_pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::waitpid(pid, 0);
        let _ = sys::set_sigmask(&sys::empty_sigmask());
        e
    };
    if let Some(m) = cgroup.filter(|_| parent_moves) {
        match m.enter(pid) {
            Ok(()) => {}
            // Rootless, moving a process into the container's cgroup needs
            // write access up to the common ancestor of both cgroups, which
            // a delegated scope does not give when the caller runs outside
            // the user's systemd tree: the process stays where it is (as
            // runc and crun do for rootless exec), said once.
            Err(hako_cgroups::Error::Write { source, .. })
                if !sys::in_initial_userns()
                    && matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
            {
                crate::log::warn(&format!(
                    "exec: the process stays outside the container's cgroup: {source}"
                ));
            }
            Err(e) => {
                return Err(fail(Error::Other(format!(
                    "join the container's cgroup: {e}"
                ))))
            }
        }
    }
    chan.send(&Msg::Go(pid))
        .ctx(|| "sync with the exec process".into())
        .map_err(fail)?;
    let console_master = match own_console {
        Some(sock) => Some(
            sys::recv_fd(sock.as_fd())
                .ctx(|| "receive the pty master".into())
                .map_err(fail)?
                .1,
        ),
        None => None,
    };
    // EOF: execve succeeded and closed the socket. A message: it failed.
    match chan.recv() {
        Ok(None) => {}
        Ok(Some(Msg::Failed(e))) => return Err(fail(Error::Init(e))),
        Ok(Some(m)) => {
            return Err(fail(Error::Other(format!(
                "sync with the exec process: unexpected {m:?}"
            ))))
        }
        Err(e) => {
            return Err(fail(Error::Io {
                step: "sync with the exec process".into(),
                cause: e,
            }))
        }
    }
    if let Some(pf) = &opts.pid_file {
        state::atomic_write(
            pf,
            pid.to_string().as_bytes(),
            0o644,
            state::Durability::Atomic,
        )?;
    }
    let _ = dir;
    if opts.detach {
        return Ok(0);
    }
    let sfd = sys::signalfd_all().ctx(|| "signalfd".into())?;
    let code = crate::console::wait_foreground(
        &crate::console::Foreground {
            pid,
            pidfd: child_pidfd.as_fd(),
            console_master: console_master.as_ref(),
            detach_keys: opts.detach_keys.as_ref(),
        },
        sfd.as_fd(),
    );
    let _ = sys::set_sigmask(&sys::empty_sigmask());
    code
}

struct ChildArgs<'a> {
    process: &'a ProcessPlan,
    chan: &'a Channel,
    joins: &'a [(NsKind, OwnedFd)],
    console: Option<BorrowedFd<'a>>,
    preserve_fds: u32,
    seccomp: Option<&'a crate::seccomp::Filter>,
    seccomp_listener: Option<BorrowedFd<'a>>,
    /// The listener's message, without the pid.
    listener_state: &'a serde_json::Value,
    userns: bool,
    dmz: &'a OwnedFd,
}

fn child(a: &ChildArgs<'_>, cgroup: Option<hako_cgroups::Entry>) -> Result<()> {
    let steps = crate::steps::exec(a.process, a.seccomp.is_some(), cgroup.is_some());
    let mut e = ExecChild {
        a,
        host_pid: 0,
        cgroup,
        handover: crate::process::Handover {
            process: a.process,
            userns: a.userns,
            preserve_fds: a.preserve_fds,
            seccomp: a.seccomp,
            seccomp_listener: a.seccomp_listener,
            dmz: a.dmz,
            prepared: None,
            filtered: false,
        },
    };
    crate::steps::run(&steps, &mut e)
}

/// The exec process's executor: each step of `steps::exec`.
struct ExecChild<'a, 'b> {
    a: &'b ChildArgs<'a>,
    host_pid: i32,
    /// Taken by the EnterCgroup step.
    cgroup: Option<hako_cgroups::Entry>,
    handover: crate::process::Handover<'a>,
}

impl crate::steps::Executor for ExecChild<'_, '_> {
    fn run_step(&mut self, step: Step) -> Result<()> {
        let a = self.a;
        let p = a.process;
        match step {
            // The parent moved us into the container's cgroup, if we do
            // not enter it ourselves (EnterCgroup).
            Step::WaitForParent => {
                let Msg::Go(pid) = a.chan.expect("go")? else {
                    unreachable!()
                };
                self.host_pid = pid;
            }
            Step::EnterCgroup => crate::cgroup::enter(&mut self.cgroup)?,
            Step::JoinNamespaces => {
                for (kind, fd) in a.joins {
                    sys::setns(fd.as_fd(), kind.flag())
                        .ctx(|| format!("join the container's {} namespace", kind.spec_name()))?;
                }
            }
            Step::Terminal => {
                let sock = a
                    .console
                    .ok_or_else(|| Error::Other("a terminal needs a console socket".into()))?;
                let master = sys::openat(
                    None,
                    Path::new("/dev/ptmx"),
                    libc::O_RDWR | libc::O_NOCTTY,
                    0,
                )
                .ctx(|| "open /dev/ptmx in the container".into())?;
                let peer = sys::pty_peer(master.as_fd()).ctx(|| "open the pty peer".into())?;
                if let Some((r, c)) = p.console_size {
                    let _ = sys::set_winsize(peer.as_raw_fd(), r, c);
                }
                sys::send_fd(sock, b"/dev/pts", master.as_fd())
                    .ctx(|| "send the pty master to the console socket".into())?;
                sys::setsid().ctx(|| "setsid".into())?;
                for fd in 0..3 {
                    sys::dup2(peer.as_raw_fd(), fd).ctx(|| "attach the terminal".into())?;
                }
                sys::set_controlling_tty(0).ctx(|| "set the controlling terminal".into())?;
            }
            other => {
                let (state, pid) = (a.listener_state, self.host_pid);
                let state = || {
                    let mut v = state.clone();
                    v["pid"] = pid.into();
                    v.to_string().into_bytes()
                };
                if !self.handover.run_step(other, &state)? {
                    return Err(Error::Other(format!("{other:?} is not an exec step")));
                }
            }
        }
        Ok(())
    }
}
