//! Mount options (pure parsing) and the rootfs steps of the executor.
//!
//! Order, as in runc and crun: make "/" a slave so nothing propagates back to
//! the host; bind the rootfs onto itself; every spec mount in order, each
//! target resolved inside the rootfs by fd; devices; then pivot_root and the
//! finishing remounts (read-only root, masked and read-only paths), which
//! must come last because a read-only parent would block later targets.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::paths;
use crate::plan::{DevicePlan, MountKind, MountPlan, NsKind, Plan};
use crate::sys;

type Flags = libc::c_ulong;

/// Parsed `mounts[].options`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// MS_* flags to set.
    pub flags: Flags,
    /// MS_* flags the options explicitly clear (`rw`, `suid`, `exec`…).
    pub clear: Flags,
    pub bind: bool,
    pub recursive: bool,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<Flags>,
    /// mount_setattr(AT_RECURSIVE) attributes (`rro`, `rnosuid`…).
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
    /// `tmpcopyup` (runc's extension): fill a new tmpfs with what the
    /// directory it covers held.
    pub copy_up: bool,
}

/// Parse mount options the way runc does; unknown options become fs data.
pub fn parse_options(opts: &[String]) -> std::result::Result<MountOptions, String> {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in opts {
        let set = |o: &mut MountOptions, f: Flags| {
            o.flags |= f;
            o.clear &= !f;
        };
        let clr = |o: &mut MountOptions, f: Flags| {
            o.flags &= !f;
            o.clear |= f;
        };
        match opt.as_str() {
            "defaults" => {}
            "ro" => set(&mut o, libc::MS_RDONLY),
            "rw" => clr(&mut o, libc::MS_RDONLY),
            "nosuid" => set(&mut o, libc::MS_NOSUID),
            "suid" => clr(&mut o, libc::MS_NOSUID),
            "nodev" => set(&mut o, libc::MS_NODEV),
            "dev" => clr(&mut o, libc::MS_NODEV),
            "noexec" => set(&mut o, libc::MS_NOEXEC),
            "exec" => clr(&mut o, libc::MS_NOEXEC),
            "sync" => set(&mut o, libc::MS_SYNCHRONOUS),
            "async" => clr(&mut o, libc::MS_SYNCHRONOUS),
            "dirsync" => set(&mut o, libc::MS_DIRSYNC),
            "remount" => set(&mut o, libc::MS_REMOUNT),
            "mand" => set(&mut o, libc::MS_MANDLOCK),
            "nomand" => clr(&mut o, libc::MS_MANDLOCK),
            "atime" => clr(&mut o, libc::MS_NOATIME),
            "noatime" => set(&mut o, libc::MS_NOATIME),
            "diratime" => clr(&mut o, libc::MS_NODIRATIME),
            "nodiratime" => set(&mut o, libc::MS_NODIRATIME),
            "relatime" => set(&mut o, libc::MS_RELATIME),
            "norelatime" => clr(&mut o, libc::MS_RELATIME),
            "strictatime" => set(&mut o, libc::MS_STRICTATIME),
            "nostrictatime" => clr(&mut o, libc::MS_STRICTATIME),
            "lazytime" => set(&mut o, libc::MS_LAZYTIME),
            "nolazytime" => clr(&mut o, libc::MS_LAZYTIME),
            "iversion" => set(&mut o, libc::MS_I_VERSION),
            "noiversion" => clr(&mut o, libc::MS_I_VERSION),
            "silent" => set(&mut o, libc::MS_SILENT),
            "loud" => clr(&mut o, libc::MS_SILENT),
            "nosymfollow" => set(&mut o, 256),
            "symfollow" => clr(&mut o, 256),
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" => o.propagation.push(libc::MS_PRIVATE),
            "rprivate" => o.propagation.push(libc::MS_PRIVATE | libc::MS_REC),
            "shared" => o.propagation.push(libc::MS_SHARED),
            "rshared" => o.propagation.push(libc::MS_SHARED | libc::MS_REC),
            "slave" => o.propagation.push(libc::MS_SLAVE),
            "rslave" => o.propagation.push(libc::MS_SLAVE | libc::MS_REC),
            "unbindable" => o.propagation.push(libc::MS_UNBINDABLE),
            "runbindable" => o.propagation.push(libc::MS_UNBINDABLE | libc::MS_REC),
            "rro" => o.rec_set |= sys::MOUNT_ATTR_RDONLY,
            "rrw" => o.rec_clr |= sys::MOUNT_ATTR_RDONLY,
            "rnosuid" => o.rec_set |= sys::MOUNT_ATTR_NOSUID,
            "rsuid" => o.rec_clr |= sys::MOUNT_ATTR_NOSUID,
            "rnodev" => o.rec_set |= sys::MOUNT_ATTR_NODEV,
            "rdev" => o.rec_clr |= sys::MOUNT_ATTR_NODEV,
            "rnoexec" => o.rec_set |= sys::MOUNT_ATTR_NOEXEC,
            "rexec" => o.rec_clr |= sys::MOUNT_ATTR_NOEXEC,
            "rnoatime" => o.rec_set |= sys::MOUNT_ATTR_NOATIME,
            "rnodiratime" => o.rec_set |= sys::MOUNT_ATTR_NODIRATIME,
            "rstrictatime" => o.rec_set |= sys::MOUNT_ATTR_STRICTATIME,
            "rnosymfollow" => o.rec_set |= sys::MOUNT_ATTR_NOSYMFOLLOW,
            "rsymfollow" => o.rec_clr |= sys::MOUNT_ATTR_NOSYMFOLLOW,
            "rrelatime" => o.rec_set |= sys::MOUNT_ATTR_RELATIME,
            "tmpcopyup" => o.copy_up = true,
            "idmap" | "ridmap" => {
                return Err(format!("{opt:?}: id-mapped mounts are not supported yet"))
            }
            "" => {}
            other => data.push(other),
        }
    }
    o.data = data.join(",");
    Ok(o)
}

/// Flags a bind remount must keep because the kernel locks them on mounts
/// inherited from a more privileged namespace.
fn locked_flags(path: &Path) -> Flags {
    let f = sys::fstatfs_flags(path).unwrap_or(0);
    let mut out = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if f & st != 0 {
            out |= ms;
        }
    }
    out
}

/// Remount a bind mount with `flags`; on EPERM retry keeping locked flags.
pub fn bind_remount(target: &Path, flags: Flags) -> std::io::Result<()> {
    let base = libc::MS_REMOUNT | libc::MS_BIND;
    match sys::mount(None, target, None, base | flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let keep = locked_flags(target) & !libc::MS_RDONLY;
            sys::mount(None, target, None, base | flags | keep, None)
        }
        r => r,
    }
}

/// What the mount steps leave for later steps.
pub struct Rootfs {
    pub root: OwnedFd,
    pub path: PathBuf,
    /// The root was handed over as a detached mount and stacked over "/"
    /// of our mount namespace (see [`Handoff`]), not bound onto its path.
    pub stacked: bool,
}

pub struct MountCtx<'a> {
    pub plan: &'a Plan,
    /// The container has a user namespace: mknod is impossible there.
    pub userns: bool,
    /// Mounts the privileged parent opened for us.
    pub handoff: Option<&'a Handoff>,
}

/// The annotation by which an engine that mounts the rootfs `nosuid,nodev`
/// on the host (so no other host user can run its setuid files) asks for
/// those two flags to be cleared on the container's own copy of the mount.
pub const ROOTFS_SUID_ANNOTATION: &str = "run.hako.rootfs.suid";

/// The rootfs and bind sources as detached mounts, opened by a privileged
/// runtime before clone and attached by the init inside its own mount
/// namespace.
///
/// Why: a container with a user namespace runs its mount steps as the
/// container's root, which must not need search permission on the host
/// directories above its rootfs and volumes (an engine keeps those 0700;
/// loosening them let every host user reach the container's setuid files).
/// The parent resolves the paths with its own credentials; the init only
/// attaches mounts by fd. runc and crun hand bind sources over the same way.
#[derive(Debug)]
pub struct Handoff {
    rootfs: OwnedFd,
    /// Bind sources by `MountPlan::idx`.
    binds: Vec<(usize, OwnedFd)>,
}

impl Handoff {
    fn bind(&self, idx: usize) -> Option<BorrowedFd<'_>> {
        self.binds
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, fd)| fd.as_fd())
    }
}

/// Whether the plan needs a [`Handoff`] and we can make one: a new mount
/// namespace, a runtime that is root of the initial user namespace, and a
/// user namespace for the container or the engine's suid request.
pub fn open_handoff(plan: &Plan) -> Result<Option<Handoff>> {
    let suid = plan
        .annotations
        .get(ROOTFS_SUID_ANNOTATION)
        .is_some_and(|v| v == "true");
    if !plan.ns.is_new(NsKind::Mount)
        || !(suid || plan.ns.has(NsKind::User))
        || sys::geteuid() != 0
        || !sys::in_initial_userns()
    {
        return Ok(None);
    }
    // As the path-based steps: nothing the container mounts propagates
    // back to the host (slave), or nothing at all with a private rootfs.
    let prop: u64 = match plan.rootfs_propagation {
        Some(p) if p & libc::MS_PRIVATE != 0 => libc::MS_PRIVATE,
        _ => libc::MS_SLAVE,
    };
    let rootfs = sys::open_tree_clone(&plan.rootfs, true)
        .ctx(|| format!("open rootfs {}", plan.rootfs.display()))?;
    sys::mount_setattr_fd(rootfs.as_fd(), true, 0, 0, prop)
        .ctx(|| format!("set the propagation of rootfs {}", plan.rootfs.display()))?;
    if suid {
        sys::mount_setattr_fd(
            rootfs.as_fd(),
            false,
            0,
            sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
            0,
        )
        .ctx(|| format!("clear nosuid,nodev on rootfs {}", plan.rootfs.display()))?;
    }
    let mut binds = Vec::new();
    for m in &plan.mounts {
        if let MountKind::Bind { source } = &m.kind {
            let what = || format!("bind source {}", source.display());
            let fd = sys::open_tree_clone(source, m.opts.recursive)
                .map_err(|e| mount_err(m, &what(), e))?;
            sys::mount_setattr_fd(fd.as_fd(), true, 0, 0, prop)
                .map_err(|e| mount_err(m, &what(), e))?;
            binds.push((m.idx, fd));
        }
    }
    Ok(Some(Handoff { rootfs, binds }))
}

/// Everything that happens before pivot_root.
pub fn prepare_rootfs(ctx: &MountCtx<'_>) -> Result<Rootfs> {
    let plan = ctx.plan;
    // Make every mount a slave (or private) so that nothing we do here
    // propagates back to the host, whatever the host's propagation is.
    let pre = match plan.rootfs_propagation {
        Some(p) if p & libc::MS_PRIVATE != 0 => libc::MS_PRIVATE | libc::MS_REC,
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    sys::mount(None, Path::new("/"), None, pre, None).ctx(|| "make / a slave mount".to_string())?;
    let (root, stacked) = match ctx.handoff {
        Some(h) => {
            // Stack the handed rootfs over "/" of our own namespace: no
            // path of the host is looked up, absolute paths still start at
            // the old root beneath it until pivot_root, and the new root is
            // reached through its fd.
            sys::move_mount_fd(h.rootfs.as_fd(), None, Some(Path::new("/")))
                .ctx(|| format!("attach rootfs {}", plan.rootfs.display()))?;
            let root = h.rootfs.try_clone().ctx(|| "dup the rootfs fd".into())?;
            (root, true)
        }
        None => {
            // pivot_root needs the new root to be a mount point.
            sys::mount(
                Some(plan.rootfs.as_os_str()),
                &plan.rootfs,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .ctx(|| format!("bind mount rootfs {}", plan.rootfs.display()))?;
            let root = sys::openat(None, &plan.rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
                .ctx(|| format!("open rootfs {}", plan.rootfs.display()))?;
            (root, false)
        }
    };

    let mut dev_bound = false;
    for m in &plan.mounts {
        if m.dest == Path::new("/dev") && matches!(m.kind, MountKind::Bind { .. }) {
            dev_bound = true;
        }
        mount_one(ctx, root.as_fd(), m)?;
    }
    if !dev_bound {
        create_devices(ctx, root.as_fd())?;
    }
    Ok(Rootfs {
        root,
        path: plan.rootfs.clone(),
        stacked,
    })
}

fn mount_err(m: &MountPlan, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        step: format!("mounts[{}]: {what} on {}", m.idx, m.dest.display()),
        cause: e,
    }
}

fn mount_one(ctx: &MountCtx<'_>, root: BorrowedFd<'_>, m: &MountPlan) -> Result<()> {
    let o = &m.opts;
    match &m.kind {
        MountKind::Bind { source } => {
            let handed = ctx.handoff.and_then(|h| h.bind(m.idx));
            let src_err = |e| mount_err(m, &format!("bind source {}", source.display()), e);
            let is_dir = match handed {
                Some(fd) => {
                    sys::fstat(fd).map_err(src_err)?.st_mode & libc::S_IFMT == libc::S_IFDIR
                }
                None => std::fs::metadata(source).map_err(src_err)?.is_dir(),
            };
            let target = if is_dir {
                paths::mkdir_all_in_root(root, &m.dest, 0o755)
            } else {
                paths::ensure_file_in_root(root, &m.dest)
            }
            .map_err(|e| mount_err(m, "create mount point", e))?;
            let mut flags = libc::MS_BIND;
            if o.recursive {
                flags |= libc::MS_REC;
            }
            match handed {
                Some(fd) => sys::move_mount_fd(fd, Some(target.as_fd()), None),
                None => sys::mount(
                    Some(source.as_os_str()),
                    &sys::fd_path(target.as_fd()),
                    None,
                    flags,
                    None,
                ),
            }
            .map_err(|e| mount_err(m, &format!("bind {}", source.display()), e))?;
            // Re-resolve: the old fd names the covered directory, not the mount.
            let top = paths::open_in_root(root, &m.dest).map_err(|e| mount_err(m, "reopen", e))?;
            let mut extra = o.flags & !(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_REC);
            if handed.is_some() && ctx.userns && extra != 0 {
                // A handed mount is not locked as one inherited from the host
                // would be: keep the host's nosuid/nodev/noexec ourselves.
                extra |= locked_flags(&sys::fd_path(top.as_fd()))
                    & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
            }
            if extra != 0 {
                bind_remount(&sys::fd_path(top.as_fd()), extra)
                    .map_err(|e| mount_err(m, "remount bind", e))?;
            }
            finish_mount(m, top.as_fd())
        }
        MountKind::Fs { fstype, source } => {
            let target = paths::mkdir_all_in_root(root, &m.dest, 0o755)
                .map_err(|e| mount_err(m, "create mount point", e))?;
            let tpath = sys::fd_path(target.as_fd());
            let res = sys::mount(
                Some(OsStr::new(source)),
                &tpath,
                Some(fstype),
                o.flags & !libc::MS_REMOUNT,
                Some(&o.data),
            );
            match res {
                Ok(()) => {}
                // sysfs cannot be mounted from a user namespace without its
                // own network namespace; bind the host's, read-only, instead.
                Err(e)
                    if fstype == "sysfs" && e.raw_os_error() == Some(libc::EPERM) && ctx.userns =>
                {
                    sys::mount(
                        Some(OsStr::new("/sys")),
                        &tpath,
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                    )
                    .map_err(|e| mount_err(m, "bind /sys", e))?;
                    let top = paths::open_in_root(root, &m.dest)
                        .map_err(|e| mount_err(m, "reopen", e))?;
                    bind_remount(
                        &sys::fd_path(top.as_fd()),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    )
                    .map_err(|e| mount_err(m, "remount /sys", e))?;
                }
                Err(e) => return Err(mount_err(m, &format!("mount {fstype}"), e)),
            }
            let top = paths::open_in_root(root, &m.dest).map_err(|e| mount_err(m, "reopen", e))?;
            if o.copy_up && fstype == "tmpfs" {
                // `target` still names the covered directory.
                copy_tree(&sys::fd_path(target.as_fd()), &sys::fd_path(top.as_fd()))
                    .map_err(|e| mount_err(m, "tmpcopyup", e))?;
            }
            if fstype == "proc" {
                check_fstype(top.as_fd(), PROC_SUPER_MAGIC)
                    .map_err(|e| mount_err(m, "verify proc", e))?;
            }
            finish_mount(m, top.as_fd())
        }
        MountKind::Cgroup => mount_cgroup(ctx, root, m),
    }
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

fn check_fstype(fd: BorrowedFd<'_>, magic: i64) -> std::io::Result<()> {
    let t = sys::statfs_type(&sys::fd_path(fd))?;
    if t != magic {
        return Err(std::io::Error::other(format!(
            "filesystem type {t:#x} is not the one mounted"
        )));
    }
    Ok(())
}

/// Copy a directory tree (owners, modes, symlinks, device nodes) into the
/// existing directory `dst`, which takes `src`'s mode and owner: for
/// `tmpcopyup`, and the engine's volume copy-up. Symlinks are copied, never
/// followed; callers pass /proc/self/fd links of directories they opened
/// safely.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let top = std::fs::metadata(src)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(top.mode() & 0o7777))?;
    std::os::unix::fs::chown(dst, Some(top.uid()), Some(top.gid()))?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            continue;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            let c = sys::cstr(&to)?;
            // SAFETY: mknod with a valid path and the source's mode and rdev.
            if unsafe { libc::mknod(c.as_ptr(), md.mode(), md.rdev()) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn finish_mount(m: &MountPlan, top: BorrowedFd<'_>) -> Result<()> {
    let p = sys::fd_path(top);
    if m.opts.rec_set != 0 || m.opts.rec_clr != 0 {
        sys::mount_setattr_recursive(&p, m.opts.rec_set, m.opts.rec_clr)
            .map_err(|e| mount_err(m, "set recursive attributes", e))?;
    }
    for prop in &m.opts.propagation {
        sys::mount(None, &p, None, *prop, None).map_err(|e| mount_err(m, "set propagation", e))?;
    }
    Ok(())
}

fn mount_cgroup(ctx: &MountCtx<'_>, root: BorrowedFd<'_>, m: &MountPlan) -> Result<()> {
    let cgns = ctx.plan.ns.is_new(NsKind::Cgroup);
    let flags = m.opts.flags & !(libc::MS_RDONLY | libc::MS_REMOUNT);
    let ro = m.opts.flags & libc::MS_RDONLY != 0;
    // The host's hierarchies, from hako_cgroups (the one parser of
    // mountinfo and /proc/self/cgroup).
    let hosts = hako_cgroups::hierarchies();
    let unified_only = hosts.iter().all(|h| h.v2) && !hosts.is_empty();

    // Mount one hierarchy at `dest`: a fresh mount in a cgroup namespace (it
    // then shows the container's cgroup as its root), else a bind of our own
    // cgroup's directory. Targets are reopened after mounting: the old fd
    // names the covered directory, not the new mount.
    let attach = |h: &hako_cgroups::Hierarchy, dest: &Path, ro: bool| -> std::io::Result<()> {
        let t = paths::mkdir_all_in_root(root, dest, 0o755)?;
        let extra = if ro { libc::MS_RDONLY } else { 0 };
        if cgns {
            let (fstype, data) = if h.v2 {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(h.subsys.as_str()))
            };
            match sys::mount(
                Some(OsStr::new(fstype)),
                &sys::fd_path(t.as_fd()),
                Some(fstype),
                flags | extra,
                data,
            ) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
        }
        let src = h.mountpoint.join(h.own.strip_prefix("/").unwrap_or(&h.own));
        sys::mount(
            Some(src.as_os_str()),
            &sys::fd_path(t.as_fd()),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        let top = paths::open_in_root(root, dest)?;
        bind_remount(&sys::fd_path(top.as_fd()), flags | extra)
    };

    if unified_only {
        attach(&hosts[0], &m.dest, ro).map_err(|e| mount_err(m, "mount cgroup2", e))?;
    } else {
        let target = paths::mkdir_all_in_root(root, &m.dest, 0o755)
            .map_err(|e| mount_err(m, "create mount point", e))?;
        sys::mount(
            Some(OsStr::new("tmpfs")),
            &sys::fd_path(target.as_fd()),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(|e| mount_err(m, "mount tmpfs for cgroup hierarchies", e))?;
        for h in &hosts {
            let Some(name) = h.mountpoint.file_name() else {
                continue;
            };
            if !h.mountpoint.starts_with("/sys/fs/cgroup") {
                continue;
            }
            attach(h, &m.dest.join(name), ro).map_err(|e| {
                mount_err(m, &format!("mount cgroup {}", h.mountpoint.display()), e)
            })?;
        }
    }
    let top = paths::open_in_root(root, &m.dest).map_err(|e| mount_err(m, "reopen", e))?;
    if ro {
        let p = sys::fd_path(top.as_fd());
        let r = if unified_only {
            Ok(())
        } else {
            sys::mount(
                None,
                &p,
                None,
                libc::MS_REMOUNT
                    | flags
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC
                    | libc::MS_RDONLY,
                Some("mode=755"),
            )
        };
        r.map_err(|e| mount_err(m, "remount read-only", e))?;
    }
    finish_mount(m, top.as_fd())
}

/// The devices every container gets (runc's default set).
pub fn default_devices() -> Vec<DevicePlan> {
    let d = |name: &str, major, minor| DevicePlan {
        path: PathBuf::from(format!("/dev/{name}")),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    vec![
        d("null", 1, 3),
        d("zero", 1, 5),
        d("full", 1, 7),
        d("random", 1, 8),
        d("urandom", 1, 9),
        d("tty", 5, 0),
    ]
}

fn create_devices(ctx: &MountCtx<'_>, root: BorrowedFd<'_>) -> Result<()> {
    let mut devs = default_devices();
    devs.retain(|d| !ctx.plan.devices.iter().any(|s| s.path == d.path));
    devs.extend(ctx.plan.devices.iter().cloned());
    // /dev is opened once for the nodes in it (three calls a device fewer).
    let dev =
        paths::mkdir_all_in_root(root, Path::new("/dev"), 0o755).ctx(|| "open /dev".into())?;
    let dev = paths::dir_fd(dev.as_fd()).ctx(|| "open /dev".into())?;
    for d in &devs {
        make_device(ctx, root, dev.as_fd(), d)
            .ctx(|| format!("create device {}", d.path.display()))?;
    }
    let links: [(&str, &str); 5] = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    for (target, name) in links {
        if name == "ptmx" {
            // Replace any ptmx the image ships with the devpts one.
            // SAFETY: unlinkat on a valid dirfd and a literal name.
            unsafe {
                libc::unlinkat(std::os::fd::AsRawFd::as_raw_fd(&dev), c"ptmx".as_ptr(), 0);
            }
        }
        match sys::symlinkat(Path::new(target), dev.as_fd(), Path::new(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("symlink /dev/{name}")),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = sys::symlinkat(Path::new("/proc/kcore"), dev.as_fd(), Path::new("core"));
    }
    Ok(())
}

/// Makes device node `d`; `dev` is the container's /dev (a directory fd),
/// used when the node is directly in it.
fn make_device(
    ctx: &MountCtx<'_>,
    root: BorrowedFd<'_>,
    dev: BorrowedFd<'_>,
    d: &DevicePlan,
) -> std::io::Result<()> {
    if ctx.userns {
        // No mknod in a user namespace: bind the host's node instead.
        let f = paths::ensure_file_in_root(root, &d.path)?;
        return sys::mount(
            Some(d.path.as_os_str()),
            &sys::fd_path(f.as_fd()),
            None,
            libc::MS_BIND,
            None,
        );
    }
    let parent = d.path.parent().unwrap_or(Path::new("/dev"));
    let name = Path::new(d.path.file_name().unwrap_or_default());
    let other;
    let dir = if parent == Path::new("/dev") {
        dev
    } else {
        let o = paths::mkdir_all_in_root(root, parent, 0o755)?;
        other = paths::dir_fd(o.as_fd())?;
        other.as_fd()
    };
    // SAFETY: unlinkat on a valid dirfd; a missing file is fine.
    unsafe {
        let n = sys::cstr(name)?;
        libc::unlinkat(std::os::fd::AsRawFd::as_raw_fd(&dir), n.as_ptr(), 0);
    }
    sys::mknodat(dir, name, d.kind | d.mode, sys::makedev(d.major, d.minor))?;
    let node = sys::openat(Some(dir), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    sys::fchownat_empty(node.as_fd(), d.uid, d.gid)?;
    // mknod applied the umask; set the exact mode through the fd.
    sys::chmod(&sys::fd_path(node.as_fd()), d.mode)
}

/// Move into the rootfs: pivot_root, or chroot with `--no-pivot`.
pub fn enter_rootfs(rootfs: &Rootfs, no_pivot: bool) -> Result<()> {
    sys::fchdir(rootfs.root.as_fd()).ctx(|| format!("chdir {}", rootfs.path.display()))?;
    if no_pivot && rootfs.stacked {
        // Already on top of "/".
        sys::chroot(Path::new(".")).ctx(|| "chroot".into())?;
    } else if no_pivot {
        sys::mount(
            Some(OsStr::new(".")),
            Path::new("/"),
            None,
            libc::MS_MOVE,
            None,
        )
        .ctx(|| "move rootfs to /".into())?;
        sys::chroot(Path::new(".")).ctx(|| "chroot".into())?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one;
        // it is then detached without needing a directory for it.
        sys::pivot_root(Path::new("."), Path::new(".")).ctx(|| "pivot_root".into())?;
        // The old root must not propagate our unmount to the host.
        sys::mount(
            None,
            Path::new("."),
            None,
            libc::MS_SLAVE | libc::MS_REC,
            None,
        )
        .ctx(|| "make old root a slave".into())?;
        sys::umount2(Path::new("."), libc::MNT_DETACH).ctx(|| "detach old root".into())?;
    }
    std::env::set_current_dir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// The container's /dev/null, opened without following a symlink and checked
/// to be the null device, so masking cannot be turned into a bind of
/// something else.
fn verified_devnull() -> Result<OwnedFd> {
    let fd = sys::openat(
        None,
        Path::new("/dev/null"),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )
    .ctx(|| "open /dev/null for masking".into())?;
    let st = sys::fstat(fd.as_fd()).ctx(|| "stat /dev/null".into())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != sys::makedev(1, 3) {
        return Err(Error::Other(
            "linux.maskedPaths: /dev/null in the container is not the null device (char 1:3)"
                .into(),
        ));
    }
    Ok(fd)
}

/// After pivot_root: propagation of "/", read-only root, masked and
/// read-only paths.
pub fn finish_rootfs(plan: &Plan) -> Result<()> {
    if let Some(p) = plan.rootfs_propagation {
        sys::mount(None, Path::new("/"), None, p, None).ctx(|| "set rootfs propagation".into())?;
    }
    // Detaching the old root made every mount a slave again: give mounts
    // that asked for a propagation mode (e.g. rshared volumes) their mode.
    for m in &plan.mounts {
        for prop in &m.opts.propagation {
            sys::mount(None, &m.dest, None, *prop, None)
                .map_err(|e| mount_err(m, "set propagation", e))?;
        }
    }
    for p in &plan.readonly_paths {
        match sys::mount(
            Some(p.as_os_str()),
            p,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.readonlyPaths: bind {}", p.display())),
        }
        bind_remount(
            p,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )
        .ctx(|| format!("linux.readonlyPaths: remount {} read-only", p.display()))?;
    }
    let devnull = if plan.masked_paths.is_empty() {
        None
    } else {
        Some(verified_devnull()?)
    };
    for p in &plan.masked_paths {
        // Never through a symlink: the mask must land on the path named.
        let fd = match sys::openat(None, p, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.maskedPaths: {}", p.display())),
        };
        let st =
            sys::fstat(fd.as_fd()).ctx(|| format!("linux.maskedPaths: stat {}", p.display()))?;
        let target = sys::fd_path(fd.as_fd());
        let r = match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                return Err(Error::Other(format!(
                    "linux.maskedPaths: {} is a symlink; refusing to mask through it",
                    p.display()
                )))
            }
            libc::S_IFDIR => sys::mount(
                Some(OsStr::new("tmpfs")),
                &target,
                Some("tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some("size=0k,mode=755"),
            ),
            _ => {
                // Bind the verified /dev/null, by fd, so a container-made
                // /dev/null (or a symlink in its place) cannot be used.
                let Some(dn) = devnull.as_ref() else { continue };
                sys::mount(
                    Some(sys::fd_path(dn.as_fd()).as_os_str()),
                    &target,
                    None,
                    libc::MS_BIND,
                    None,
                )
            }
        };
        r.ctx(|| format!("linux.maskedPaths: mask {}", p.display()))?;
    }
    if plan.root_readonly {
        bind_remount(Path::new("/"), libc::MS_RDONLY).ctx(|| "remount rootfs read-only".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> MountOptions {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);
    }

    #[test]
    fn later_options_win() {
        let o = p(&["ro", "rw", "noexec", "exec"]);
        assert_eq!(o.flags, 0);
        assert_eq!(o.clear, libc::MS_RDONLY | libc::MS_NOEXEC);
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "ro", "rslave", "private"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_RDONLY);
        assert_eq!(
            o.propagation,
            vec![libc::MS_SLAVE | libc::MS_REC, libc::MS_PRIVATE]
        );
    }

    #[test]
    fn recursive_attrs() {
        let o = p(&["rro", "rnosuid", "rrw"]);
        assert_eq!(o.rec_set, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID);
        assert_eq!(o.rec_clr, sys::MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn idmap_is_refused() {
        assert!(parse_options(&["idmap".to_string()]).is_err());
    }
}
