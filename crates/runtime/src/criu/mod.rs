//! `checkpoint` and `restore` with CRIU, as runc does them: CRIU's RPC
//! service (`criu swrk`) freezes and dumps the container's process tree
//! into an image directory, and later rebuilds it, with its namespaces and
//! mounts, under a fresh state directory and cgroup.
//!
//! What CRIU cannot see for itself is described to it here: bind mounts
//! from the host (`ext_mnt`, by destination), namespaces the container
//! joined rather than made (`external` on dump, an inherited fd on
//! restore), the pipes on the init's stdio (`descriptors.json` in the
//! image, as runc writes it, so a restore reconnects the caller's pipes),
//! and the cgroup the restored tasks belong to (`cg_root`).

mod rpc;
mod swrk;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::container::{self, CreateOpts};
use crate::error::{Context, Error, Result};
use crate::plan::{self, MountKind, NsKind, Plan};
use crate::state::{self, State, StateDir, Status};
use crate::{hooks, sys};
use rpc::{CgMode, CgroupRoot, ExtMountMap, InheritFd, JoinNamespace, Opts, Req, ReqType};

/// runc's name for the stdio list in an image directory.
const DESCRIPTORS: &str = "descriptors.json";
const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";
/// Oldest CRIU with what is used here (cgroup v2 freezer, external net
/// and pid namespaces, time namespaces).
const MIN_VERSION: u32 = 31500;

/// runc's `checkpoint` flags.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOpts {
    pub root: PathBuf,
    pub id: String,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: Option<String>,
    /// runc's `--empty-ns network`: the network namespace is made again
    /// on restore, empty, for the caller to set up (an engine's bridge
    /// network), so CRIU neither dumps nor restores its interfaces.
    pub empty_network: bool,
}

/// runc's `restore` flags (the container's own in `create`).
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub create: CreateOpts,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub detach: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    /// As [`CheckpointOpts::empty_network`].
    pub empty_network: bool,
}

/// Is there a `criu` to run (in PATH)? For `features`; a checkpoint asks
/// CRIU itself for its version.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| sys::access_x(&d.join("criu"))))
}

/// runc's `--manage-cgroups-mode` values.
fn cg_mode(s: Option<&str>) -> Result<CgMode> {
    Ok(match s.unwrap_or("") {
        "" => CgMode::Default,
        "soft" => CgMode::Soft,
        "full" => CgMode::Full,
        "strict" => CgMode::Strict,
        "ignore" => CgMode::Ignore,
        other => {
            return Err(Error::Other(format!(
                "--manage-cgroups-mode {other:?}: use soft, full, strict or ignore"
            )))
        }
    })
}

/// CRIU's key for a namespace it must leave to the caller.
fn ns_key(kind: NsKind) -> &'static str {
    match kind {
        NsKind::Pid => "extRootPidNS",
        _ => "extRootNetNS",
    }
}

/// The namespaces CRIU treats as external: network and pid ones that the
/// container joined by path (a pod's, an engine's).
fn external_kinds(plan: &Plan) -> Vec<(NsKind, &Path)> {
    [NsKind::Network, NsKind::Pid]
        .into_iter()
        .filter_map(|k| plan.ns.joined(k).map(|p| (k, p)))
        .collect()
}

/// Where a cgroup mount without a cgroup namespace binds the host's
/// hierarchies: `dest` itself on a cgroup2-only host, else one directory
/// per hierarchy under it. (With a cgroup namespace the mounts are fresh
/// filesystems, which CRIU restores itself.)
fn cgroup_bind_dests(
    plan: &Plan,
    hosts: &[hako_cgroups::Hierarchy],
) -> Vec<(PathBuf, hako_cgroups::Hierarchy)> {
    if plan.ns.is_new(NsKind::Cgroup) || hosts.is_empty() {
        return Vec::new();
    }
    let unified_only = hosts.iter().all(|h| h.v2);
    let mut out = Vec::new();
    for m in plan.mounts.iter().filter(|m| m.kind == MountKind::Cgroup) {
        if unified_only {
            out.push((m.dest.clone(), hosts[0].clone()));
            continue;
        }
        for h in hosts {
            if let Some(name) = h.mountpoint.file_name() {
                if h.mountpoint.starts_with("/sys/fs/cgroup") {
                    out.push((m.dest.join(name), h.clone()));
                }
            }
        }
    }
    out
}

fn ext(key: &Path, val: &Path) -> ExtMountMap {
    ExtMountMap {
        key: key.display().to_string(),
        val: val.display().to_string(),
    }
}

/// The external mounts of a dump, named by their destination (runc's
/// names, so runc and hako images describe them alike): bind mounts,
/// bound cgroup hierarchies, masked files (named `/dev/null`) and devices.
fn dump_mounts(
    plan: &Plan,
    cgroup_binds: &[PathBuf],
    masked_files: &[PathBuf],
) -> Vec<ExtMountMap> {
    let mut out = Vec::new();
    for m in &plan.mounts {
        if let MountKind::Bind { .. } = m.kind {
            out.push(ext(&m.dest, &m.dest));
        }
    }
    for d in cgroup_binds {
        out.push(ext(d, d));
    }
    for p in masked_files {
        out.push(ext(p, Path::new("/dev/null")));
    }
    for d in &plan.devices {
        out.push(ext(&d.path, &d.path));
    }
    out
}

/// The same mounts on restore: each name mapped to the host path that
/// now provides it.
fn restore_mounts(plan: &Plan, cgroup_binds: &[(PathBuf, PathBuf)]) -> Vec<ExtMountMap> {
    let mut out = Vec::new();
    for m in &plan.mounts {
        if let MountKind::Bind { source } = &m.kind {
            out.push(ext(&m.dest, source));
        }
    }
    for (d, src) in cgroup_binds {
        out.push(ext(d, src));
    }
    if !plan.masked_paths.is_empty() {
        out.push(ext(Path::new("/dev/null"), Path::new("/dev/null")));
    }
    for d in &plan.devices {
        out.push(ext(&d.path, &d.path));
    }
    out
}

/// The init's stdio that came from outside the container, handed to CRIU
/// on restore as the restoring runtime's own fd of that number: pipes
/// (`pipe:[ino]`, as readlink shows them; runc does the same) and files on
/// mounts the container does not see (`file[mnt:ino]`, e.g. the host's
/// /dev/null that conmon and the engine give as stdin).
fn stdio_inherits(descriptors: &[String]) -> Vec<InheritFd> {
    descriptors
        .iter()
        .enumerate()
        .filter(|(_, d)| d.starts_with("pipe:") || d.starts_with("file["))
        .map(|(i, d)| InheritFd {
            key: d.clone(),
            fd: i as i32,
        })
        .collect()
}

/// What `descriptors.json` says of one of the init's stdio fds: what
/// readlink shows, except for a file on a mount outside the container's
/// mount namespace (`visible`: its mount ids), which CRIU cannot dump: it
/// becomes CRIU's external file `file[mnt_id:inode]` (hex), for the
/// restoring process to provide.
fn stdio_entry(link: &str, mnt_id: Option<u64>, ino: u64, visible: &[u64]) -> String {
    let special = ["pipe:", "socket:", "anon_inode:"]
        .iter()
        .any(|p| link.starts_with(p));
    match mnt_id {
        Some(m) if !special && !link.is_empty() && !visible.contains(&m) => {
            format!("file[{m:x}:{ino:x}]")
        }
        _ => link.to_string(),
    }
}

/// The stdio entries of a running init, and the external files among them.
fn stdio_of(pid: i32) -> (Vec<String>, Vec<String>) {
    let visible: Vec<u64> = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let mut entries = Vec::new();
    for i in 0..3 {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{i}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mnt_id = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{i}"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("mnt_id:"))
                    .and_then(|v| v.trim().parse().ok())
            });
        let ino = std::fs::metadata(format!("/proc/{pid}/fd/{i}"))
            .map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m));
        entries.push(stdio_entry(&link, mnt_id, ino, &visible));
    }
    let external = entries
        .iter()
        .filter(|e| e.starts_with("file["))
        .cloned()
        .collect();
    (entries, external)
}

/// `cg_root` entries from a /proc/PID/cgroup: every controller (or the
/// cgroup2 line, controller "") mapped to the path the restored tasks
/// belong to.
fn cgroup_roots(proc_cgroup: &str) -> Vec<CgroupRoot> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        for c in ctrls.split(',') {
            out.push(CgroupRoot {
                ctrl: Some(c.to_string()),
                path: path.to_string(),
            });
        }
    }
    out
}

fn open_dir(p: &Path, what: &str, create: bool) -> Result<OwnedFd> {
    if create {
        match std::fs::create_dir(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("{what}: create {}", p.display())),
        }
    }
    sys::openat(None, p, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .ctx(|| format!("{what} {}", p.display()))
}

/// Checks that CRIU is there and new enough.
fn require_criu() -> Result<u32> {
    let v = swrk::version()?;
    if v < MIN_VERSION {
        return Err(Error::Other(format!(
            "criu {}.{}.{} is too old: hako needs 3.15 or newer",
            v / 10000,
            v / 100 % 100,
            v % 100
        )));
    }
    Ok(v)
}

/// A failed CRIU run as one line: what CRIU's log says went wrong.
fn criu_error(verb: &str, id: &str, e: Error, log: &Path) -> Error {
    let why = swrk::log_errors(log);
    let e = e.to_string();
    // CRIU's own message is usually the log's first error: say it once.
    let head = match e.split_once(": ") {
        Some((h, _)) if h == "criu failed" && !why.is_empty() => h.to_string(),
        _ => e,
    };
    if why.is_empty() {
        return Error::Other(format!("{verb} {id}: {head} (log: {})", log.display()));
    }
    Error::Other(format!(
        "{verb} {id}: {head}: {why} (log: {}; `criu check` tells whether this kernel supports CRIU)",
        log.display()
    ))
}

/// The cgroup hierarchy directories a cgroup mount shows for a process
/// (its own cgroup in each), by `/proc/PID/cgroup`.
fn hierarchies_of(pid: i32) -> Vec<hako_cgroups::Hierarchy> {
    hako_cgroups::layout::hierarchies_from(&hako_cgroups::ProcFiles {
        mountinfo: PathBuf::from("/proc/self/mountinfo"),
        cgroup: PathBuf::from(format!("/proc/{pid}/cgroup")),
    })
    .unwrap_or_default()
}

fn own_dir(h: &hako_cgroups::Hierarchy) -> PathBuf {
    h.mountpoint.join(h.own.strip_prefix("/").unwrap_or(&h.own))
}

/// The cgroup CRIU freezes the container with: the v1 freezer's, else the
/// cgroup2 one.
fn freezer_dir(pid: i32) -> Option<PathBuf> {
    let hs = hierarchies_of(pid);
    hs.iter()
        .find(|h| !h.v2 && h.subsys.split(',').any(|c| c == "freezer"))
        .or_else(|| hs.iter().find(|h| h.v2))
        .map(own_dir)
}

/// `checkpoint`: dump a running (or paused) container into
/// `image_path`; unless `leave_running` or `pre_dump`, the container is
/// gone afterwards, as with runc.
pub fn checkpoint(o: &CheckpointOpts) -> Result<()> {
    let dir = StateDir::new(&o.root, &o.id)?;
    let _lock = dir.lock()?;
    let st = dir.load()?;
    let status = state::derive_status(&dir, &st, crate::cgroup::is_frozen);
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::BadState {
            id: o.id.clone(),
            status: status.to_string(),
            msg: "container not running: only a running or paused container can be checkpointed"
                .into(),
        });
    }
    let mode = cg_mode(o.manage_cgroups_mode.as_deref())?;
    let spec = plan::load_spec(&st.bundle)?;
    let plan = Plan::from_spec(&spec, &st.bundle)?;
    require_criu()?;

    let images = open_dir(&o.image_path, "--image-path", true)?;
    let work = match &o.work_path {
        Some(p) => Some(open_dir(p, "--work-path", true)?),
        None => None,
    };
    let log_dir = o.work_path.as_deref().unwrap_or(&o.image_path);

    let mut externals = Vec::new();
    for (kind, path) in external_kinds(&plan) {
        let md = std::fs::metadata(path).ctx(|| format!("stat {}", path.display()))?;
        externals.push(format!(
            "{}[{}]:{}",
            kind.proc_name(),
            std::os::unix::fs::MetadataExt::ino(&md),
            ns_key(kind)
        ));
    }
    let cgroup_binds: Vec<PathBuf> = cgroup_bind_dests(&plan, &hako_cgroups::hierarchies())
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    // Masked files are binds of the container's /dev/null; masked
    // directories are tmpfs mounts CRIU dumps itself.
    let masked_files: Vec<PathBuf> = plan
        .masked_paths
        .iter()
        .filter(|p| {
            std::fs::metadata(format!("/proc/{}/root{}", st.pid, p.display()))
                .is_ok_and(|m| !m.is_dir())
        })
        .cloned()
        .collect();

    let mut opts = Opts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(st.pid),
        leave_running: Some(o.leave_running),
        ext_unix_sk: Some(o.ext_unix_sk),
        tcp_established: Some(o.tcp_established),
        shell_job: Some(o.shell_job),
        file_locks: Some(o.file_locks),
        log_level: Some(4),
        log_file: Some(DUMP_LOG.into()),
        notify_scripts: Some(true),
        root: Some(st.rootfs.display().to_string()),
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        manage_cgroups: Some(true),
        manage_cgroups_mode: Some(mode as i32),
        external: externals,
        freeze_cgroup: freezer_dir(st.pid).map(|p| p.display().to_string()),
        orphan_pts_master: Some(true),
        empty_ns: o.empty_network.then_some(libc::CLONE_NEWNET as u32),
        ..Default::default()
    };
    if let Some(parent) = &o.parent_path {
        opts.parent_img = Some(parent.display().to_string());
        opts.track_mem = Some(true);
    }
    let kind = if o.pre_dump {
        ReqType::PreDump
    } else {
        opts.ext_mnt = dump_mounts(&plan, &cgroup_binds, &masked_files);
        // runc's descriptors.json: what the init's stdio were.
        let (fds, external) = stdio_of(st.pid);
        opts.external.extend(external);
        let json = serde_json::to_vec(&fds).map_err(|e| Error::Other(e.to_string()))?;
        state::atomic_write(
            &o.image_path.join(DESCRIPTORS),
            &json,
            0o600,
            state::Durability::Atomic,
        )?;
        ReqType::Dump
    };
    let req = Req {
        r#type: kind as i32,
        opts: Some(opts),
        ..Default::default()
    };
    swrk::Session::start(&[])
        .and_then(|s| s.call(&req, |_| Ok(())))
        .map_err(|e| criu_error("checkpoint", &o.id, e, &log_dir.join(DUMP_LOG)))?;
    if o.leave_running || o.pre_dump {
        return Ok(());
    }
    // CRIU killed the tasks after dumping them: the container is gone.
    container::finish_delete(&dir, &st)
}

/// Mount points CRIU needs in the root before it restores the mounts: the
/// destinations of every mount not under a tmpfs (whose content CRIU
/// restores), with bind mounts attached so nested destinations exist too
/// (runc issue 2748). Runs in the restoring runtime's private mount
/// namespace, so nothing of it reaches the host.
fn prepare_mountpoints(plan: &Plan, root: &Path) -> Result<()> {
    let tmpfs: Vec<&Path> = plan
        .mounts
        .iter()
        .filter(|m| matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype == "tmpfs"))
        .map(|m| m.dest.as_path())
        .collect();
    let rootfd = sys::openat(None, root, libc::O_PATH | libc::O_DIRECTORY, 0)
        .ctx(|| format!("open {}", root.display()))?;
    for m in &plan.mounts {
        if tmpfs.iter().any(|t| m.dest != *t && m.dest.starts_with(t)) {
            continue;
        }
        if m.kind == MountKind::Cgroup {
            continue;
        }
        let file_source = matches!(&m.kind, MountKind::Bind { source } if !source.is_dir());
        let target = if file_source {
            crate::paths::ensure_file_in_root(rootfd.as_fd(), &m.dest)
        } else {
            crate::paths::mkdir_all_in_root(rootfd.as_fd(), &m.dest, 0o755)
        }
        .ctx(|| format!("mounts[{}]: create mount point {}", m.idx, m.dest.display()))?;
        if let MountKind::Bind { source } = &m.kind {
            sys::mount(
                Some(source.as_os_str()),
                &sys::fd_path(target.as_fd()),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .ctx(|| format!("mounts[{}]: bind {}", m.idx, source.display()))?;
        }
    }
    Ok(())
}

/// Undoes a half-made restore: the restored tasks, the cgroup, the state.
struct Undo<'a> {
    dir: &'a StateDir,
    pid: i32,
    cgroup: Option<Box<dyn hako_cgroups::Manager>>,
    parents: Vec<PathBuf>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.pid > 0 {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, 0);
        }
        if let Some(m) = &self.cgroup {
            let _ = m.thaw();
            let _ = m.kill_all(libc::SIGKILL);
            let _ = m.destroy();
            for p in &self.parents {
                let _ = std::fs::remove_dir(p);
            }
        }
        let root = self.dir.dir.join("criu-root");
        let _ = sys::umount2(&root, libc::MNT_DETACH);
        let _ = self.dir.remove();
    }
}

/// `restore`: rebuild a container from a checkpoint under a new state
/// directory and cgroup. Returns the exit code in the foreground, 0 with
/// `detach`.
pub fn restore(o: &RestoreOpts) -> Result<i32> {
    restore_with(o, &mut |_| Ok(()))
}

/// [`restore`], calling `on_namespaces` with the pid of the restored root
/// task once CRIU has made its namespaces and before any task runs (after
/// the prestart hooks): where an engine sets up an empty network.
pub fn restore_with(
    o: &RestoreOpts,
    on_namespaces: &mut dyn FnMut(i32) -> Result<()>,
) -> Result<i32> {
    let c = &o.create;
    let bundle = if c.bundle.is_absolute() {
        c.bundle.clone()
    } else {
        std::env::current_dir()
            .ctx(|| "getcwd".into())?
            .join(&c.bundle)
    };
    let dir = StateDir::new(&c.root, &c.id)?;
    let spec = plan::load_spec(&bundle)?;
    let plan = Plan::from_spec(&spec, &bundle)?;
    let process = plan
        .process
        .clone()
        .ok_or_else(|| crate::error::spec_err("process", "missing: there is nothing to run"))?;
    if process.terminal && c.console_socket.is_none() {
        return Err(crate::error::spec_err(
            "process.terminal",
            "restoring a terminal needs --console-socket for the new pty master",
        ));
    }
    let mode = cg_mode(o.manage_cgroups_mode.as_deref())?;
    if dir.exists() || dir.dir.exists() {
        return Err(Error::Exists(c.id.clone()));
    }
    let images = sys::openat(None, &o.image_path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .ctx(|| format!("--image-path {}", o.image_path.display()))?;
    let descriptors: Vec<String> = match std::fs::read(o.image_path.join(DESCRIPTORS)) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| {
            Error::Other(format!(
                "--image-path {}: {DESCRIPTORS} is corrupt: {e}",
                o.image_path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Other(format!(
                "--image-path {} is not a checkpoint (no {DESCRIPTORS})",
                o.image_path.display()
            )))
        }
        Err(e) => {
            return Err(e).ctx(|| format!("read {}", o.image_path.join(DESCRIPTORS).display()))
        }
    };
    if let Some(p) = &o.work_path {
        open_dir(p, "--work-path", true)?;
    }
    let log_dir = o.work_path.clone().unwrap_or(o.image_path.clone());
    require_criu()?;
    // Namespaces CRIU must join rather than make.
    let mut ns_fds: Vec<(NsKind, OwnedFd)> = Vec::new();
    for (kind, path) in external_kinds(&plan) {
        let fd = sys::openat(None, path, libc::O_RDONLY, 0)
            .ctx(|| format!("open {} namespace {}", kind.spec_name(), path.display()))?;
        ns_fds.push((kind, fd));
    }
    let mut join_ns = Vec::new();
    for (kind, path) in &plan.ns.join {
        match kind {
            NsKind::Network | NsKind::Pid => {}
            NsKind::Cgroup => {
                return Err(crate::error::spec_err(
                    "linux.namespaces",
                    "CRIU cannot restore into a joined cgroup namespace",
                ))
            }
            _ => join_ns.push(JoinNamespace {
                ns: kind.proc_name().to_string(),
                ns_file: path.display().to_string(),
            }),
        }
    }
    let cgroup = crate::cgroup::manager(&plan, &c.id, c.systemd_cgroup)?;

    dir.create()?;
    let mut undo = Undo {
        dir: &dir,
        pid: 0,
        cgroup: None,
        parents: Vec::new(),
        armed: true,
    };
    let mut st = State {
        oci_version: plan.oci_version.clone(),
        id: c.id.clone(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: plan.annotations.clone(),
        init_start_time: 0,
        own_pidns: plan.ns.is_new(NsKind::Pid),
        poststart: Some(plan.hooks.poststart.clone()),
        poststop: plan.hooks.poststop.clone(),
        cgroup: None,
        cgroup_parents: Vec::new(),
    };
    if let Some(m) = &cgroup {
        st.cgroup = crate::cgroup::to_state(m.as_ref());
        st.cgroup_parents = crate::cgroup::missing_parents(m.as_ref());
        undo.parents = st.cgroup_parents.clone();
    }
    dir.save(&st)?;

    // CRIU wants the root to be a mount point whose parent is not
    // overmounted: bind the rootfs to a directory of our own, in a mount
    // namespace of our own (a slave of the host's), so that it and the
    // bind mounts below never show on the host and vanish with us.
    sys::unshare(libc::CLONE_NEWNS).ctx(|| "unshare a mount namespace for criu".into())?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .ctx(|| "make the restore's mounts private".into())?;
    // CRIU works in (and mounts its cgroup yard under) the image or work
    // directory: open them again in this namespace, or their mounts
    // would be the host namespace's and mounting there fails (EINVAL).
    drop(images);
    let images = sys::openat(None, &o.image_path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .ctx(|| format!("--image-path {}", o.image_path.display()))?;
    let work = match &o.work_path {
        Some(p) => Some(open_dir(p, "--work-path", false)?),
        None => None,
    };
    let root = dir.dir.join("criu-root");
    std::fs::create_dir(&root).ctx(|| format!("mkdir {}", root.display()))?;
    sys::mount(
        Some(plan.rootfs.as_os_str()),
        &root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind {} for criu", plan.rootfs.display()))?;
    prepare_mountpoints(&plan, &root)?;

    let foreground = !o.detach;
    if foreground {
        let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    }
    let extra: Vec<_> = ns_fds.iter().map(|(_, f)| f.as_fd()).collect();
    let session = swrk::Session::start(&extra)?;
    // CRIU, and so the tasks it restores, start in the container's cgroup.
    if let Some(m) = &cgroup {
        crate::cgroup::join(m.as_ref(), session.pid())?;
        crate::cgroup::apply_resources(&plan, m.as_ref())?;
    }
    undo.cgroup = cgroup;
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", session.pid()))
        .ctx(|| "read criu's cgroup".into())?;
    let cgroup_binds: Vec<(PathBuf, PathBuf)> =
        cgroup_bind_dests(&plan, &hierarchies_of(session.pid()))
            .into_iter()
            .map(|(d, h)| (d, own_dir(&h)))
            .collect();

    let mut inherit = stdio_inherits(&descriptors);
    for (i, (kind, _)) in ns_fds.iter().enumerate() {
        inherit.push(InheritFd {
            key: ns_key(*kind).into(),
            fd: 4 + i as i32,
        });
    }
    let req = Req {
        r#type: ReqType::Restore as i32,
        opts: Some(Opts {
            images_dir_fd: images.as_raw_fd(),
            evasive_devices: Some(true),
            log_level: Some(4),
            log_file: Some(RESTORE_LOG.into()),
            rst_sibling: Some(true),
            root: Some(root.display().to_string()),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(mode as i32),
            notify_scripts: Some(true),
            shell_job: Some(o.shell_job),
            ext_unix_sk: Some(o.ext_unix_sk),
            tcp_established: Some(o.tcp_established),
            file_locks: Some(o.file_locks),
            orphan_pts_master: Some(true),
            work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
            ext_mnt: restore_mounts(&plan, &cgroup_binds),
            cg_root: cgroup_roots(&proc_cgroup),
            inherit_fd: inherit,
            join_ns,
            empty_ns: o.empty_network.then_some(libc::CLONE_NEWNET as u32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sfd = if foreground {
        // Block signals before the restored init exists, for the relay.
        sys::block_all_signals().ctx(|| "block signals".into())?;
        Some(sys::signalfd_all().ctx(|| "signalfd".into())?)
    } else {
        None
    };
    let restored = session.call(&req, |n| {
        match n.script.as_str() {
            "setup-namespaces" => {
                let mut s = st.clone();
                s.pid = n.pid;
                let hs = s.spec_json(Status::Created).to_string().into_bytes();
                hooks::run_hooks("prestart", &plan.hooks.prestart, &hs, true)?;
                hooks::run_hooks("createRuntime", &plan.hooks.create_runtime, &hs, true)?;
                on_namespaces(n.pid)?;
            }
            "post-restore" => {
                undo.pid = n.pid;
                st.pid = n.pid;
                st.init_start_time = state::proc_stat(n.pid).map_or(0, |s| s.start_time);
                st.status = Status::Running;
                dir.save(&st)?;
            }
            "orphan-pts-master" => {
                let (Some(fd), Some(sock)) = (n.fd, &c.console_socket) else {
                    return Err(Error::Other(
                        "criu sent a pty master but there is no --console-socket".into(),
                    ));
                };
                let s = std::os::unix::net::UnixStream::connect(sock)
                    .ctx(|| format!("connect to console socket {}", sock.display()))?;
                sys::send_fd(s.as_fd(), b"console", fd.as_fd())
                    .ctx(|| "send the pty master".into())?;
            }
            _ => {}
        }
        Ok(())
    });
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            let _ = sys::set_sigmask(&sys::empty_sigmask());
            return Err(criu_error("restore", &c.id, e, &log_dir.join(RESTORE_LOG)));
        }
    };
    if let Some(r) = &restored.restore {
        if st.pid != r.pid {
            undo.pid = r.pid;
            st.pid = r.pid;
            st.init_start_time = state::proc_stat(r.pid).map_or(0, |s| s.start_time);
            st.status = Status::Running;
            dir.save(&st)?;
        }
    }
    let _ = sys::umount2(&root, libc::MNT_DETACH);
    let _ = std::fs::remove_dir(&root);
    if let Some(pf) = &c.pid_file {
        state::atomic_write(
            pf,
            st.pid.to_string().as_bytes(),
            0o644,
            state::Durability::Atomic,
        )?;
    }
    undo.armed = false;
    drop(undo);
    let Some(sfd) = sfd else {
        return Ok(0);
    };
    let pidfd = sys::pidfd_open(st.pid).ctx(|| format!("pidfd_open {}", st.pid))?;
    let code = crate::console::wait_foreground(
        &crate::console::Foreground {
            pid: st.pid,
            pidfd: pidfd.as_fd(),
            console_master: None,
            detach_keys: None,
        },
        sfd.as_fd(),
    );
    let r = container::finish_delete(&dir, &st);
    let _ = sys::set_sigmask(&sys::empty_sigmask());
    let code = code?;
    r.map(|_| code)
}

#[cfg(test)]
mod tests;
