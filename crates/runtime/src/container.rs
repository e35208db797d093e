//! The runtime's facade: the lifecycle verbs (create, start, run, state,
//! kill, delete, exec, pause, resume, update, stats/events, ps, list), as
//! runc's command line and the engine use them.
//!
//! The state rules live in one place ([`require`]): start needs `created`,
//! kill needs a live container, delete needs `stopped` unless forced.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use hako_cgroups::Entry;

use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::init::{self, InitArgs};
use crate::log;
use crate::plan::{self, NsKind, Plan, ProcessPlan};
use crate::state::{self, StateDir};
use crate::sync::{Channel, Msg};
use crate::sys;

pub use crate::cgroup::{freeze_process, process_frozen, remove_empty_group};
pub use crate::criu::{checkpoint, restore, restore_with, CheckpointOpts, RestoreOpts};
pub use crate::exec::{default_process, exec, ExecOpts};
pub use crate::state::{State, Status};

/// Options of `create` (and `run`), as runc names them.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The systemd cgroup driver (`--systemd-cgroup`): the cgroup is a
    /// transient systemd unit; else cgroupfs.
    pub systemd_cgroup: bool,
}

/// A container just created by this process.
pub struct Created {
    pub dir: StateDir,
    pub state: State,
    pub pidfd: OwnedFd,
    /// Keeps the foreground `run`'s pty master when it proxies a terminal.
    pub console_master: Option<OwnedFd>,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir().ctx(|| "getcwd".into())?.join(p))
    }
}

/// Undo a half-made container: kill the init (it owns its pidfd, so the fd
/// is valid for as long as the guard is), remove its cgroup and state dir.
struct Cleanup<'a> {
    dir: &'a StateDir,
    child: Option<(libc::pid_t, OwnedFd)>,
    cgroup: Option<Box<dyn hako_cgroups::Manager>>,
    cgroup_parents: Vec<std::path::PathBuf>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((pid, fd)) = &self.child {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            let _ = sys::waitpid(*pid, 0);
        }
        if let Some(m) = &self.cgroup {
            let _ = m.kill_all(libc::SIGKILL);
            let _ = m.destroy();
            for p in &self.cgroup_parents {
                let _ = std::fs::remove_dir(p);
            }
        }
        let _ = self.dir.remove();
    }
}

fn write_file(path: &Path, data: &str) -> std::io::Result<()> {
    std::fs::write(path, data)
}

fn id_map_text(maps: &[plan::IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

/// Write the user namespace's id maps while the init waits.
///
/// Root writes them directly. Without root the kernel only lets us map our
/// own uid and gid (after denying setgroups); anything more goes through the
/// setuid helpers newuidmap/newgidmap (Debian: uidmap), which check
/// /etc/subuid and /etc/subgid.
fn write_id_maps(plan: &Plan, pid: i32) -> Result<()> {
    // SAFETY: getegid cannot fail.
    let (euid, egid) = (sys::geteuid(), unsafe { libc::getegid() });
    let just_self =
        |maps: &[plan::IdMap], id: u32| maps.len() == 1 && maps[0].host == id && maps[0].size == 1;
    if euid == 0 {
        write_file(
            Path::new(&format!("/proc/{pid}/uid_map")),
            &id_map_text(&plan.uid_maps),
        )
        .ctx(|| "write uid_map (linux.uidMappings)".into())?;
        write_file(
            Path::new(&format!("/proc/{pid}/gid_map")),
            &id_map_text(&plan.gid_maps),
        )
        .ctx(|| "write gid_map (linux.gidMappings)".into())?;
        return Ok(());
    }
    if just_self(&plan.uid_maps, euid) {
        write_file(
            Path::new(&format!("/proc/{pid}/uid_map")),
            &id_map_text(&plan.uid_maps),
        )
        .ctx(|| "write uid_map (linux.uidMappings)".into())?;
    } else {
        run_idmap_helper(
            "newuidmap",
            "linux.uidMappings",
            "/etc/subuid",
            pid,
            &plan.uid_maps,
        )?;
    }
    if just_self(&plan.gid_maps, egid) {
        // An unprivileged gid_map needs setgroups denied first.
        write_file(Path::new(&format!("/proc/{pid}/setgroups")), "deny")
            .ctx(|| "write setgroups deny".into())?;
        write_file(
            Path::new(&format!("/proc/{pid}/gid_map")),
            &id_map_text(&plan.gid_maps),
        )
        .ctx(|| "write gid_map (linux.gidMappings)".into())?;
    } else {
        run_idmap_helper(
            "newgidmap",
            "linux.gidMappings",
            "/etc/subgid",
            pid,
            &plan.gid_maps,
        )?;
    }
    Ok(())
}

fn run_idmap_helper(
    helper: &str,
    field: &str,
    subid: &str,
    pid: i32,
    maps: &[plan::IdMap],
) -> Result<()> {
    let mut cmd = std::process::Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container.to_string(),
            m.host.to_string(),
            m.size.to_string(),
        ]);
    }
    let out = cmd.output().map_err(|e| {
        Error::Other(format!(
            "{field}: mapping more than your own id needs {helper} (Debian package uidmap): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{field}: {helper} refused the mapping (is there a range for you in {subid}?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The console socket for a terminal: the caller's (`--console-socket`), or
/// our own pair when the runtime stays attached. Returns (our end, the
/// child's end).
pub(crate) fn console_socket(
    path: Option<&Path>,
    terminal: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    if let Some(p) = path {
        let s = std::os::unix::net::UnixStream::connect(p)
            .ctx(|| format!("connect to console socket {}", p.display()))?;
        return Ok((None, Some(OwnedFd::from(s))));
    }
    if terminal {
        let (a, b) = sys::socketpair_seqpacket().ctx(|| "console socketpair".into())?;
        return Ok((Some(a), Some(b)));
    }
    Ok((None, None))
}

/// pid and time namespaces apply to children only: the parent enters them
/// just for the clone and goes back after (with the returned fds). The
/// other namespaces are returned for the child to join itself.
#[allow(clippy::type_complexity)]
pub(crate) fn enter_for_children(
    joins: Vec<(NsKind, OwnedFd)>,
) -> Result<(Vec<(OwnedFd, i32)>, Vec<(NsKind, OwnedFd)>)> {
    let mut restore = Vec::new();
    let mut child_joins = Vec::new();
    for (kind, fd) in joins {
        if matches!(kind, NsKind::Pid | NsKind::Time) {
            let own = sys::openat(
                None,
                Path::new(&format!("/proc/self/ns/{}", kind.proc_name())),
                libc::O_RDONLY,
                0,
            )
            .ctx(|| "open own namespace".into())?;
            sys::setns(fd.as_fd(), kind.flag())
                .ctx(|| format!("join the {} namespace", kind.spec_name()))?;
            restore.push((own, kind.flag()));
        } else {
            child_joins.push((kind, fd));
        }
    }
    Ok((restore, child_joins))
}

/// Open and type-check every namespace path before anything is created.
fn open_joins(plan: &Plan) -> Result<Vec<(NsKind, OwnedFd)>> {
    let mut out = Vec::new();
    for (kind, path) in &plan.ns.join {
        let fd = sys::openat(None, path, libc::O_RDONLY, 0)
            .ctx(|| format!("open {} namespace {}", kind.spec_name(), path.display()))?;
        let t = sys::ns_type(fd.as_fd())
            .ctx(|| format!("{} is not a namespace file", path.display()))?;
        if t != kind.flag() {
            let actual = NsKind::ALL
                .iter()
                .find(|k| k.flag() == t)
                .map_or("unknown", |k| k.spec_name());
            return Err(Error::Spec {
                field: "linux.namespaces".into(),
                msg: format!(
                    "{} is a {actual} namespace, not a {} namespace",
                    path.display(),
                    kind.spec_name()
                ),
            });
        }
        out.push((*kind, fd));
    }
    // The user namespace is joined first.
    out.sort_by_key(|(k, _)| (*k != NsKind::User, *k == NsKind::Mount));
    Ok(out)
}

/// `create`: set everything up; the user process waits for `start`.
/// A connection to `linux.seccomp.listenerPath` when the filter has a
/// notify action (for the init and for `exec`).
pub(crate) fn connect_seccomp_listener(
    spec: Option<&oci_spec::runtime::LinuxSeccomp>,
    filter: Option<&crate::seccomp::Filter>,
) -> Result<Option<OwnedFd>> {
    match spec
        .and_then(|s| s.listener_path().clone())
        .filter(|_| filter.is_some_and(|f| f.needs_listener()))
    {
        Some(p) => {
            let s = std::os::unix::net::UnixStream::connect(&p)
                .ctx(|| format!("connect to linux.seccomp.listenerPath {}", p.display()))?;
            Ok(Some(OwnedFd::from(s)))
        }
        None => Ok(None),
    }
}

pub fn create(opts: &CreateOpts) -> Result<Created> {
    create_inner(opts, false)
}

/// What `create` checks and opens before anything exists (step 1).
struct Prepared {
    bundle: PathBuf,
    dir: StateDir,
    plan: Plan,
    process: ProcessPlan,
    seccomp: Option<crate::seccomp::Filter>,
    joins: Vec<(NsKind, OwnedFd)>,
    handoff: Option<crate::mounts::Handoff>,
    dmz: OwnedFd,
    seccomp_listener: Option<OwnedFd>,
    /// The systemd driver's manager, resolved (nothing created) before the
    /// clone, so a bad cgroupsPath or annotation or an unreachable systemd
    /// fails with nothing made. The cgroupfs driver's cgroup is made just
    /// before the clone (`precreate_cgroup`).
    cgroup: Option<Box<dyn hako_cgroups::Manager>>,
}

/// The init, cloned and waiting for `Go` (step 3).
struct Cloned {
    pid: i32,
    pidfd: OwnedFd,
    chan: Channel,
    own_console: Option<OwnedFd>,
    /// The parent moves the init into its cgroup by pid (the systemd
    /// driver, or a refused clone into the cgroup2 directory).
    parent_moves: bool,
}

/// `create` as a checklist; each step is a function below. Until the state
/// directory exists nothing needs undoing; after, the `Cleanup` guard
/// removes whatever was made if a later step fails.
fn create_inner(opts: &CreateOpts, foreground: bool) -> Result<Created> {
    let mut p = prepare(opts, foreground)?;
    let joins = std::mem::take(&mut p.joins);
    let cgroup = p.cgroup.take();
    p.dir.create()?;
    let mut cleanup = Cleanup {
        dir: &p.dir,
        child: None,
        cgroup: None,
        cgroup_parents: Vec::new(),
        armed: true,
    };
    let fifo = make_exec_fifo(&p)?;
    let entry = match &cgroup {
        None => precreate_cgroup(&p.plan, &opts.id, &mut cleanup)?,
        Some(_) => None,
    };
    let Cloned {
        pid,
        pidfd,
        chan,
        own_console,
        parent_moves,
    } = clone_init(opts, p.clone_parts(), joins, &fifo, entry, foreground)?;
    cleanup.child = Some((pid, pidfd));
    // The init has its copies; ours would only keep a listener waiting.
    drop(p.seccomp_listener.take());
    drop(p.handoff.take());
    let mut st = initial_state(opts, &p, pid);
    join_cgroup(&p, cgroup, &mut st, &mut cleanup, parent_moves)?;
    set_oom_score_adj(&p.process, pid)?;
    release_init(&p, &chan, &mut st, &mut cleanup)?;
    run_parent_hooks(&p.plan, &st, &chan)?;
    let console_master = match own_console {
        Some(sock) => {
            let (_, master) = sys::recv_fd(sock.as_fd()).ctx(|| "receive the pty master".into())?;
            Some(master)
        }
        None => None,
    };
    chan.expect("ready")?;

    st.status = Status::Created;
    p.dir.save(&st)?;
    if let Some(pf) = &opts.pid_file {
        let pf = absolute(pf)?;
        state::atomic_write(
            &pf,
            st.pid.to_string().as_bytes(),
            0o644,
            state::Durability::Atomic,
        )?;
    }
    cleanup.armed = false;
    let (_, pidfd) = cleanup.child.take().expect("the guard holds the init");
    drop(cleanup);
    log::debug(&format!(
        "created container {} with init pid {}",
        opts.id, st.pid
    ));
    Ok(Created {
        dir: p.dir,
        state: st,
        pidfd,
        console_master,
    })
}

/// Step 1: load and plan the spec, check what only the caller can tell us,
/// compile seccomp and open every fd the init will need. No side effects.
fn prepare(opts: &CreateOpts, foreground: bool) -> Result<Prepared> {
    let bundle = absolute(&opts.bundle)?;
    let dir = StateDir::new(&opts.root, &opts.id)?;
    let spec = plan::load_spec(&bundle)?;
    let plan = Plan::from_spec(&spec, &bundle)?;
    if !plan.ns.is_new(NsKind::Pid) {
        // The init will be visible to processes already in its pid
        // namespace (or the host's) before its final exec.
        crate::protect::reexec_protected()?;
    }
    let process = plan
        .process
        .clone()
        .ok_or_else(|| plan_err("process", "missing: there is nothing to run"))?;
    if process.terminal && opts.console_socket.is_none() && !foreground {
        return Err(plan_err(
            "process.terminal",
            "a terminal needs --console-socket when the runtime does not stay attached",
        ));
    }
    if !process.terminal && opts.console_socket.is_some() {
        return Err(Error::Other(
            "--console-socket is only for containers with process.terminal: true".into(),
        ));
    }
    let seccomp = match &plan.seccomp {
        Some(s) => Some(crate::seccomp::compile(s, &opts.root)?),
        None => None,
    };
    let joins = open_joins(&plan)?;
    let handoff = crate::mounts::open_handoff(&plan)?;
    let dmz = crate::dmz::sealed().ctx(|| "seal the exec helper".into())?;
    let seccomp_listener = connect_seccomp_listener(plan.seccomp.as_ref(), seccomp.as_ref())?;
    if dir.exists() || dir.dir.exists() {
        return Err(Error::Exists(opts.id.clone()));
    }
    let cgroup = if opts.systemd_cgroup {
        crate::cgroup::manager(&plan, &opts.id, true)?
    } else {
        None
    };
    Ok(Prepared {
        bundle,
        dir,
        plan,
        process,
        seccomp,
        joins,
        handoff,
        dmz,
        seccomp_listener,
        cgroup,
    })
}

/// What clone_init borrows from `Prepared` for the init.
struct CloneParts<'a> {
    plan: &'a Plan,
    process: &'a ProcessPlan,
    seccomp: Option<&'a crate::seccomp::Filter>,
    handoff: Option<&'a crate::mounts::Handoff>,
    dmz: &'a OwnedFd,
    seccomp_listener: Option<BorrowedFd<'a>>,
}

impl Prepared {
    fn clone_parts(&self) -> CloneParts<'_> {
        CloneParts {
            plan: &self.plan,
            process: &self.process,
            seccomp: self.seccomp.as_ref(),
            handoff: self.handoff.as_ref(),
            dmz: &self.dmz,
            seccomp_listener: self.seccomp_listener.as_ref().map(|s| s.as_fd()),
        }
    }
}

/// Step 2: the exec fifo `start` opens; the init reopens it for writing
/// and blocks there until then.
fn make_exec_fifo(p: &Prepared) -> Result<OwnedFd> {
    let fifo_path = p.dir.fifo();
    sys::mkfifo(&fifo_path, 0o622).ctx(|| format!("mkfifo {}", fifo_path.display()))?;
    sys::chmod(&fifo_path, 0o622).ctx(|| "chmod exec fifo".into())?;
    if let (Some(u), Some(g)) = (p.plan.host_uid(0), p.plan.host_gid(0)) {
        // SAFETY: geteuid and getegid cannot fail.
        let me = unsafe { (libc::geteuid(), libc::getegid()) };
        if (u, g) != me {
            let _ = std::os::unix::fs::chown(&fifo_path, Some(u), Some(g));
        }
    }
    sys::openat(None, &fifo_path, libc::O_PATH, 0).ctx(|| "open exec fifo".into())
}

/// Step 2b, with the cgroupfs driver: make the init's cgroup now, held by
/// the guard from before it exists, and open its way in, so that the init
/// is cloned into its cgroup2 directory and moves itself into the v1
/// hierarchies, and no pid is moved by the parent (the first such move
/// waits for an RCU grace period, 10-15 ms; docs/benchmarks.md). None when
/// cgroups are skipped (said once, by `manager`). Resources are written
/// after the clone while the init waits: a tight memory limit then cannot
/// fail the clone itself.
fn precreate_cgroup(plan: &Plan, id: &str, cleanup: &mut Cleanup<'_>) -> Result<Option<Entry>> {
    let Some(m) = crate::cgroup::manager(plan, id, false)? else {
        return Ok(None);
    };
    cleanup.cgroup_parents = crate::cgroup::missing_parents(m.as_ref());
    let m = cleanup.cgroup.insert(m);
    crate::cgroup::create_for_clone(m.as_ref()).map(Some)
}

/// Step 3: clone the init into its new namespaces (entering pid and time
/// namespaces just for the clone) and, given `entry`, into its cgroup,
/// with every signal blocked so none is lost between clone and `run`'s
/// signalfd. In the child this never returns.
fn clone_init(
    opts: &CreateOpts,
    parts: CloneParts<'_>,
    joins: Vec<(NsKind, OwnedFd)>,
    fifo: &OwnedFd,
    mut entry: Option<Entry>,
    foreground: bool,
) -> Result<Cloned> {
    let plan = parts.plan;
    // The console socket: the caller's path, or our own pair for `run -t`.
    let (own_console, console) =
        console_socket(opts.console_socket.as_deref(), parts.process.terminal)?;
    let (parent_sock, child_sock) = sys::socketpair_seqpacket().ctx(|| "sync socketpair".into())?;

    // pid and time namespaces apply to children only: the parent enters (or
    // creates) them just for the clone and goes back right after.
    let (mut restore, child_joins) = enter_for_children(joins)?;
    if plan.ns.is_new(NsKind::Time) {
        let own = sys::openat(None, Path::new("/proc/self/ns/time"), libc::O_RDONLY, 0)
            .ctx(|| "open own time namespace".into())?;
        sys::unshare(libc::CLONE_NEWTIME).ctx(|| "unshare time namespace".into())?;
        restore.push((own, libc::CLONE_NEWTIME));
        let t = plan.time_offsets.unwrap_or_default();
        let text = format!(
            "monotonic {} {}\nboottime {} {}\n",
            t.monotonic.0, t.monotonic.1, t.boottime.0, t.boottime.1
        );
        write_file(Path::new("/proc/self/timens_offsets"), &text)
            .ctx(|| "linux.timeOffsets: write /proc/self/timens_offsets".into())?;
    }

    let mut clone_flags: u64 = 0;
    if plan.ns.joined(NsKind::User).is_none() {
        for k in &plan.ns.new {
            // Time: made by the parent above. Cgroup: unshared by the init
            // once it is in its cgroup, so that cgroup is the namespace root.
            if *k != NsKind::Time && *k != NsKind::Cgroup {
                clone_flags |= k.flag() as u64;
            }
        }
    }

    // Block signals before the child exists so none is lost between clone
    // and the signalfd of `run`; the init unblocks them all before exec.
    let old_mask = sys::block_all_signals().ctx(|| "block signals".into())?;

    let (forked, parent_moves) = crate::cgroup::clone_entering(clone_flags, entry.as_mut(), "init");
    let (pid, pidfd) = match forked {
        Err(e) => {
            let _ = sys::set_sigmask(&old_mask);
            return Err(e).ctx(|| "clone the container init".into());
        }
        Ok(sys::Forked::Child) => {
            drop(parent_sock);
            let chan = Channel::new(child_sock);
            init::main(InitArgs {
                id: &opts.id,
                plan,
                process: parts.process,
                chan: &chan,
                fifo: fifo.as_fd(),
                console: console.as_ref().map(|c| c.as_fd()),
                joins: &child_joins,
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                preserve_fds: opts.preserve_fds,
                seccomp: parts.seccomp,
                seccomp_listener: parts.seccomp_listener,
                dmz: parts.dmz,
                handoff: parts.handoff,
                cgroup: entry.filter(Entry::moves_self),
            })
        }
        Ok(sys::Forked::Parent { pid, pidfd }) => (pid, pidfd),
    };
    // The init's copies are its own; ours would only keep files open.
    drop(entry);
    if !foreground {
        // `create` and `run -d` have no signals to forward.
        let _ = sys::set_sigmask(&old_mask);
    }
    for (fd, flag) in restore.into_iter().rev() {
        sys::setns(fd.as_fd(), flag).ctx(|| "return to the runtime's namespaces".into())?;
    }
    Ok(Cloned {
        pid,
        pidfd,
        chan: Channel::new(parent_sock),
        own_console,
        parent_moves,
    })
}

fn initial_state(opts: &CreateOpts, p: &Prepared, pid: i32) -> State {
    State {
        oci_version: p.plan.oci_version.clone(),
        id: opts.id.clone(),
        status: Status::Creating,
        pid,
        bundle: p.bundle.clone(),
        rootfs: p.plan.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: p.plan.annotations.clone(),
        init_start_time: state::proc_stat(pid).map(|s| s.start_time).unwrap_or(0),
        own_pidns: p.plan.ns.is_new(NsKind::Pid),
        poststart: Some(p.plan.hooks.poststart.clone()),
        poststop: p.plan.hooks.poststop.clone(),
        cgroup: None,
        cgroup_parents: Vec::new(),
    }
}

/// Step 4: save the state (the init's pid and its cgroup, so a later
/// `delete` finds both), put the init in its cgroup before it does
/// anything (or forks) when it does not enter by itself (`parent_moves`:
/// the systemd driver makes its unit with the init's pid), then write the
/// resources. The guard holds the cgroup before resources are written: if
/// that fails, the init is killed first and the cgroup can then be
/// removed at once.
fn join_cgroup(
    p: &Prepared,
    systemd: Option<Box<dyn hako_cgroups::Manager>>,
    st: &mut State,
    cleanup: &mut Cleanup<'_>,
    parent_moves: bool,
) -> Result<()> {
    if let Some(m) = systemd {
        // Slices are systemd's: no parents of ours to remove later.
        cleanup.cgroup = Some(m);
    }
    if let Some(m) = &cleanup.cgroup {
        st.cgroup = crate::cgroup::to_state(m.as_ref());
        st.cgroup_parents = cleanup.cgroup_parents.clone();
    }
    p.dir.save(st)?;
    let Some(m) = &cleanup.cgroup else {
        return Ok(());
    };
    if parent_moves {
        crate::cgroup::join(m.as_ref(), st.pid)?;
    }
    crate::cgroup::apply_resources(&p.plan, m.as_ref())
}

fn set_oom_score_adj(process: &ProcessPlan, pid: i32) -> Result<()> {
    if let Some(adj) = process.oom_score_adj {
        write_file(
            Path::new(&format!("/proc/{pid}/oom_score_adj")),
            &adj.to_string(),
        )
        .ctx(|| format!("process.oomScoreAdj: write {adj}"))?;
    }
    Ok(())
}

/// Step 5: write the id maps and let the init go; a joined user namespace
/// with a new pid namespace forks once more, and the grandchild becomes
/// the init.
fn release_init(
    p: &Prepared,
    chan: &Channel,
    st: &mut State,
    cleanup: &mut Cleanup<'_>,
) -> Result<()> {
    let plan = &p.plan;
    if plan.ns.is_new(NsKind::User) && plan.ns.joined(NsKind::User).is_none() {
        write_id_maps(plan, st.pid)?;
    }
    chan.send(&Msg::Go(st.pid))
        .ctx(|| "sync with container init".into())?;
    if plan.ns.joined(NsKind::User).is_some() && plan.ns.is_new(NsKind::Pid) {
        let Msg::InitPid(gc) = chan.expect("init-pid")? else {
            unreachable!()
        };
        let _ = sys::waitpid(st.pid, 0);
        let gfd = sys::pidfd_open(gc).ctx(|| "pidfd_open init".into())?;
        cleanup.child = Some((gc, gfd));
        st.pid = gc;
        st.init_start_time = state::proc_stat(gc).map(|s| s.start_time).unwrap_or(0);
        p.dir.save(st)?;
        chan.send(&Msg::Go(gc))
            .ctx(|| "sync with container init".into())?;
    }
    Ok(())
}

/// Step 6: prestart and createRuntime hooks, when the init has made its
/// namespaces and mounts and asks for them.
fn run_parent_hooks(plan: &Plan, st: &State, chan: &Channel) -> Result<()> {
    chan.expect("hooks-request")?;
    // runtime-tools (hooks_stdin) and crun give these hooks "created".
    let hook_state = st.spec_json(Status::Created).to_string().into_bytes();
    hooks::run_hooks("prestart", &plan.hooks.prestart, &hook_state, true)?;
    hooks::run_hooks(
        "createRuntime",
        &plan.hooks.create_runtime,
        &hook_state,
        true,
    )?;
    chan.send(&Msg::HooksDone)
        .ctx(|| "sync with container init".into())
}

fn plan_err(field: &str, msg: &str) -> Error {
    crate::error::spec_err(field, msg)
}

/// Load a container and its current status.
pub fn load(root: &Path, id: &str) -> Result<(StateDir, State, Status)> {
    let dir = StateDir::new(root, id)?;
    let st = dir.load()?;
    let status = state::derive_status(&dir, &st, crate::cgroup::is_frozen);
    Ok((dir, st, status))
}

/// The state rules, in one place.
fn require(op: &str, id: &str, status: Status) -> Result<()> {
    let ok = match op {
        "start" => status == Status::Created,
        "kill" => matches!(status, Status::Created | Status::Running | Status::Paused),
        "delete" => status == Status::Stopped,
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let msg = match op {
        "start" => "only a created container can be started".to_string(),
        // containerd's shim and go-runc match on these words to treat a
        // kill as "already gone" (runc's wording).
        "kill" => "container not running".to_string(),
        "delete" => "cannot delete a container that is not stopped (use --force)".to_string(),
        _ => format!("cannot {op}"),
    };
    Err(Error::BadState {
        id: id.to_string(),
        status: status.to_string(),
        msg,
    })
}

/// `start`: release the init blocked on the exec fifo.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::new(root, id)?;
    let _lock = dir.lock()?;
    let st = dir.load()?;
    let status = state::derive_status(&dir, &st, crate::cgroup::is_frozen);
    require("start", id, status)?;
    release_fifo(&dir, &st)?;
    // Running now that the fifo is gone: nothing to save (State::status).
    let hs = st.spec_json(Status::Running).to_string().into_bytes();
    let poststart = match &st.poststart {
        Some(h) => h.clone(),
        None => plan::load_spec(&st.bundle)
            .ok()
            .and_then(|s| s.hooks().clone())
            .and_then(|h| h.poststart().clone())
            .unwrap_or_default(),
    };
    hooks::run_hooks("poststart", &poststart, &hs, false)?;
    Ok(())
}

fn release_fifo(dir: &StateDir, st: &State) -> Result<()> {
    let fifo = dir.fifo();
    let pidfd = sys::pidfd_open(st.pid).ctx(|| format!("pidfd_open {}", st.pid))?;
    if !state::init_alive(st) {
        return Err(Error::BadState {
            id: st.id.clone(),
            status: "stopped".into(),
            msg: "the init process is gone".into(),
        });
    }
    let r = sys::openat(None, &fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0)
        .ctx(|| format!("open {}", fifo.display()))?;
    // The init writes one byte, runs the startContainer hooks, and its write
    // end closes when it executes the process (close-on-exec): wait for the
    // byte, then for that close (or the init's end), so that `start` returns
    // and poststart hooks run only after the exec, as runc does.
    let mut released = false;
    loop {
        let rev =
            sys::poll_many(&[r.as_fd(), pidfd.as_fd()], -1).ctx(|| "wait for the init".into())?;
        if rev[0] & (libc::POLLIN | libc::POLLHUP) != 0 {
            let mut b = [0u8; 1];
            match sys::read_fd(r.as_fd(), &mut b).ctx(|| "read exec fifo".into())? {
                1 => released = true,
                0 if released => break,
                _ => {}
            }
        }
        if rev[1] != 0 {
            if released {
                break;
            }
            return Err(Error::Init(format!(
                "container {} init exited before it could start",
                st.id
            )));
        }
    }
    std::fs::remove_file(&fifo).ctx(|| format!("remove {}", fifo.display()))?;
    Ok(())
}

/// Host pids of the processes in `pid`'s pid namespace, `pid` first: empty
/// when it is gone, only `pid` when it shares the caller's namespace. (The
/// one scan of /proc by namespace, for the runtime and the engine.)
pub fn pidns_members(pid: i32) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    let mut out = vec![pid];
    if std::fs::read_link("/proc/self/ns/pid").ok().as_ref() == Some(&ns) {
        return out;
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if p != pid
                && std::fs::read_link(format!("/proc/{p}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            {
                out.push(p);
            }
        }
    }
    out
}

/// `kill`: signal the init (or, with `all`, every process of the container).
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let (_, st, status) = load(root, id)?;
    if all && status == Status::Stopped {
        // runc: `kill --all` of a stopped container signals whatever is
        // left in its cgroup (children the init left behind) and succeeds;
        // containerd's shim sends it after every exit.
        return signal_leftovers(&st, sig);
    }
    require("kill", id, status)?;
    signal_container(&st, sig, all)
}

/// Signals the processes left in a stopped container's cgroup; nothing to
/// do when the cgroup is already gone.
fn signal_leftovers(st: &State, sig: i32) -> Result<()> {
    let Some(m) = crate::cgroup::from_state(st) else {
        return Ok(());
    };
    // No cgroup left, or an empty one: nothing to signal.
    if m.pids().map_or(true, |p| p.is_empty()) {
        return Ok(());
    }
    match m.kill_all(sig) {
        Ok(()) => Ok(()),
        // It emptied or went away while we signalled.
        Err(_) if m.pids().map_or(true, |p| p.is_empty()) => Ok(()),
        Err(e) => Err(Error::Other(format!(
            "signal every process of {}: {e}",
            st.id
        ))),
    }
}

fn signal_container(st: &State, sig: i32, all: bool) -> Result<()> {
    let pidfd = sys::pidfd_open(st.pid).ctx(|| format!("pidfd_open {}", st.pid))?;
    // The pidfd now pins the process: check it is still our init.
    if !state::init_alive(st) {
        if all {
            return signal_leftovers(st, sig);
        }
        return Err(Error::BadState {
            id: st.id.clone(),
            status: "stopped".into(),
            msg: "container not running".into(),
        });
    }
    if all {
        if let Some(m) = crate::cgroup::from_state(st) {
            m.kill_all(sig)
                .map_err(|e| Error::Other(format!("signal every process of {}: {e}", st.id)))?;
            return Ok(());
        }
        if st.own_pidns {
            for pid in pidns_members(st.pid).into_iter().skip(1) {
                let _ = sys::kill(pid, sig);
            }
        }
    }
    sys::pidfd_send_signal(pidfd.as_fd(), sig).ctx(|| format!("send signal {sig} to {}", st.pid))
}

/// `delete`: remove a stopped container; `force` kills a live one first.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = StateDir::new(root, id)?;
    if !dir.dir.exists() {
        // `delete --force` of what is already gone succeeds, as in runc:
        // containerd's shim and podman call it after a normal delete.
        if force {
            return Ok(());
        }
        return Err(Error::NotFound(id.to_string()));
    }
    let _lock = dir.lock()?;
    let st = match dir.load() {
        Ok(s) => s,
        // A state dir without state: a create that died half-way.
        Err(Error::NotFound(_)) if force => return dir.remove(),
        Err(e) => return Err(e),
    };
    let status = state::derive_status(&dir, &st, crate::cgroup::is_frozen);
    if status != Status::Stopped {
        if !force {
            require("delete", id, status)?;
        }
        let pidfd = sys::pidfd_open(st.pid).ok();
        if state::init_alive(&st) {
            let _ = signal_container(&st, libc::SIGKILL, true);
        }
        if let Some(fd) = &pidfd {
            // The init dies promptly after SIGKILL; don't wait forever if
            // it is stuck in an uninterruptible state.
            let _ = sys::poll_in(fd.as_fd(), 10_000);
        }
    }
    finish_delete(&dir, &st)
}

pub(crate) fn finish_delete(dir: &StateDir, st: &State) -> Result<()> {
    // A frozen cgroup would keep its processes from dying. (Read first: a
    // thaw writes and reads back, and most containers were never frozen.)
    if let Some(m) = crate::cgroup::from_state(st) {
        if !matches!(m.state(), Ok(hako_cgroups::FreezerState::Thawed)) {
            let _ = m.thaw();
        }
    }
    crate::cgroup::destroy(st)?;
    let hs = st.spec_json(Status::Stopped).to_string().into_bytes();
    hooks::run_hooks("poststop", &st.poststop, &hs, false)?;
    dir.remove()
}

fn cgroup_of(st: &State) -> Result<Box<dyn hako_cgroups::Manager>> {
    crate::cgroup::from_state(st)
        .ok_or_else(|| Error::Other(format!("container {:?} has no cgroup", st.id)))
}

/// `pause`: freeze every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (_, st, status) = load(root, id)?;
    if status != Status::Running {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            msg: "only a running container can be paused".into(),
        });
    }
    cgroup_of(&st)?
        .freeze()
        .map_err(|e| Error::Other(format!("pause {id}: {e}")))
}

/// `resume`: thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (_, st, status) = load(root, id)?;
    if status != Status::Paused {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            msg: "only a paused container can be resumed".into(),
        });
    }
    cgroup_of(&st)?
        .thaw()
        .map_err(|e| Error::Other(format!("resume {id}: {e}")))
}

/// Resource usage in runc's `events --stats` shape.
pub fn stats(root: &Path, id: &str) -> Result<serde_json::Value> {
    let (_, st, status) = load(root, id)?;
    if status == Status::Stopped {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            msg: "a stopped container has no stats".into(),
        });
    }
    let s = cgroup_of(&st)?
        .stats()
        .map_err(|e| Error::Other(format!("stats of {id}: {e}")))?;
    serde_json::to_value(s).map_err(|e| Error::Other(e.to_string()))
}

/// OOM kills counted by the container's cgroup so far.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64> {
    let (_, st, _) = load(root, id)?;
    cgroup_of(&st)?
        .oom_kill_count()
        .map_err(|e| Error::Other(format!("oom count of {id}: {e}")))
}

/// `update`: apply new resources to a live container.
pub fn update(root: &Path, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let (_, st, status) = load(root, id)?;
    if status == Status::Stopped {
        return Err(Error::BadState {
            id: id.into(),
            status: status.to_string(),
            msg: "cannot update a stopped container".into(),
        });
    }
    crate::cgroup::update(&st, r)
}

/// Host pids of every process in the container.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let (_, st, status) = load(root, id)?;
    match crate::cgroup::from_state(&st) {
        // As runc: what is in the cgroup, also after the init exited
        // (processes it left behind); a removed cgroup holds nothing.
        Some(m) if status == Status::Stopped => Ok(m.pids().unwrap_or_default()),
        None if status == Status::Stopped => Ok(Vec::new()),
        Some(m) => m
            .pids()
            .map_err(|e| Error::Other(format!("pids of {id}: {e}"))),
        None if st.own_pidns => Ok(pidns_members(st.pid)),
        None => Ok(vec![st.pid]),
    }
}

/// `state` output (runc's shape).
pub fn state_json(root: &Path, id: &str) -> Result<serde_json::Value> {
    let (_, st, status) = load(root, id)?;
    Ok(st.runc_json(status))
}

/// `list`: every container under root with its status.
pub fn list(root: &Path) -> Result<Vec<(State, Status)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx(|| format!("read {}", root.display())),
    };
    for e in rd.flatten() {
        let Some(id) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Ok((_, st, status)) = load(root, &id) {
            out.push((st, status));
        }
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    Ok(out)
}

/// `run`: create + start; in the foreground also wait, forward signals,
/// proxy the terminal and delete. Returns the container's exit code.
pub fn run(opts: &CreateOpts, detach: bool) -> Result<i32> {
    if detach {
        let c = create(opts)?;
        if let Err(e) = start(&opts.root, &opts.id) {
            let _ = delete(&opts.root, &opts.id, true);
            return Err(e);
        }
        drop(c);
        return Ok(0);
    }
    // Become the reaper of a double-forked init too.
    let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    let c = match create_inner(opts, true) {
        Ok(c) => c,
        Err(e) => {
            let _ = sys::set_sigmask(&sys::empty_sigmask());
            return Err(e);
        }
    };
    let sfd = sys::signalfd_all().ctx(|| "signalfd".into());
    let result = sfd.and_then(|sfd| {
        start(&opts.root, &opts.id)?;
        crate::console::wait_foreground(
            &crate::console::Foreground {
                pid: c.state.pid,
                pidfd: c.pidfd.as_fd(),
                console_master: c.console_master.as_ref(),
                detach_keys: None,
            },
            sfd.as_fd(),
        )
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let _ = sys::pidfd_send_signal(c.pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::waitpid(c.state.pid, 0);
            let _ = delete(&opts.root, &opts.id, true);
            let _ = sys::set_sigmask(&sys::empty_sigmask());
            return Err(e);
        }
    };
    let st = c.dir.load().unwrap_or(c.state.clone());
    let r = finish_delete(&c.dir, &st);
    let _ = sys::set_sigmask(&sys::empty_sigmask());
    r.map(|_| code)
}
