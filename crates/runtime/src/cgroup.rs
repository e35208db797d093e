//! The container's cgroup: the init is in it before its first step, so it
//! (and everything it forks) is accounted from the start: on a cgroup2-only
//! host with the cgroupfs driver the cgroup is made before the clone and
//! the init cloned into it; elsewhere the parent makes it and moves the
//! init in between the clone and the init's first step. Rebuilt from
//! state.json by later commands.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use hako_cgroups::{CgroupConfig, Manager};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::state::State;

/// Sizes as users type them ("512m", "-1"): the one parser, for the CLIs.
pub use hako_cgroups::parse_size;

fn cg_err(step: &str, e: hako_cgroups::Error) -> Error {
    Error::Cgroup {
        step: step.to_string(),
        source: Box::new(e),
    }
}

/// Devices every container may use whatever its device rules say (runc's
/// allow-list): the default /dev nodes, the pty master and peers, console.
fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    let c = |major: i64, minor: Option<i64>| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(LinuxDeviceType::C));
        d.set_major(Some(major));
        d.set_minor(minor);
        d.set_access(Some("rwm".into()));
        d
    };
    vec![
        c(1, Some(3)), // null
        c(1, Some(5)), // zero
        c(1, Some(7)), // full
        c(1, Some(8)), // random
        c(1, Some(9)), // urandom
        c(5, Some(0)), // tty
        c(5, Some(1)), // console
        c(5, Some(2)), // ptmx
        c(136, None),  // /dev/pts/*
    ]
}

/// The resources to apply: the spec's, with the devices the container is
/// given (linux.devices and the defaults) allowed after its own rules.
pub fn effective_resources(plan: &Plan) -> Option<LinuxResources> {
    let mut r = plan.resources.clone()?;
    if let Some(rules) = r.devices().clone() {
        if !rules.is_empty() {
            let mut all = rules;
            all.extend(default_allowed());
            for d in &plan.devices {
                let mut rule = LinuxDeviceCgroup::default();
                rule.set_allow(true);
                rule.set_typ(Some(if d.kind == libc::S_IFBLK {
                    LinuxDeviceType::B
                } else {
                    LinuxDeviceType::C
                }));
                rule.set_major(Some(d.major as i64));
                rule.set_minor(Some(d.minor as i64));
                rule.set_access(Some("rwm".into()));
                all.push(rule);
            }
            r.set_devices(Some(all));
        }
    }
    Some(r)
}

/// Whether this runtime may manage cgroups: root of the initial user
/// namespace. (Root inside a user namespace, as a rootless engine's monitor
/// is, cannot create cgroups on the host.) Delegated cgroup2 subtrees for
/// rootless users are not used yet.
fn can_manage() -> bool {
    crate::sys::geteuid() == 0 && crate::sys::in_initial_userns()
}

/// The container's cgroup manager, or None when cgroups are skipped
/// (rootless without delegation). Nothing is created yet.
pub fn manager(plan: &Plan, id: &str, systemd: bool) -> Result<Option<Box<dyn Manager>>> {
    if systemd {
        // Rootless: the user's systemd, which delegates a subtree to us.
        let path = plan.cgroups_path.as_deref().unwrap_or(Path::new(""));
        return hako_cgroups::systemd_manager(
            &path.to_string_lossy(),
            id,
            !can_manage(),
            &plan.annotations,
        )
        .map(Some)
        // Its errors name the field (cgroupsPath, annotations) or systemd.
        .map_err(|e| cg_err("", e));
    }
    if !can_manage() {
        crate::log::warn("cgroups skipped: running without root and no delegated cgroup");
        return Ok(None);
    }
    // Without a cgroupsPath the cgroup is /<id>, as runc and crun do: no
    // shared parent to create and remove around every container.
    let default = std::path::PathBuf::from(format!("/{id}"));
    hako_cgroups::manager(Some(plan.cgroups_path.as_deref().unwrap_or(&default)), id)
        .map(Some)
        .map_err(|e| cg_err("linux.cgroupsPath", e))
}

/// The parent directories that creating this cgroup will add (they do not
/// exist yet), deepest first: removed again, when empty, with the container.
pub fn missing_parents(m: &dyn Manager) -> Vec<std::path::PathBuf> {
    let cfg = m.config();
    if cfg.systemd.is_some() {
        // Slices are systemd's: it makes and removes them.
        return Vec::new();
    }
    let mut dirs: Vec<&Path> = cfg.v1.values().map(|p| p.as_path()).collect();
    if let Some(u) = &cfg.unified {
        dirs.push(&u.dir);
    }
    let mut out = Vec::new();
    for d in dirs {
        let mut cur = d.parent();
        while let Some(p) = cur {
            if p.exists() {
                break;
            }
            out.push(p.to_path_buf());
            cur = p.parent();
        }
    }
    out.sort();
    out.dedup();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// The one cgroup2 directory that holds every controller of `cfg`, where a
/// process can be started with clone3(CLONE_INTO_CGROUP) instead of being
/// moved in after it exists; None when its pid has to be written to v1
/// hierarchies as well (v1 and hybrid hosts).
pub(crate) fn clone_target(cfg: &CgroupConfig) -> Option<&Path> {
    if !cfg.v1.is_empty() {
        return None;
    }
    cfg.unified.as_ref().map(|u| u.dir.as_path())
}

/// The init's cgroup manager and the directory to clone the init into,
/// when the cgroupfs driver runs on a cgroup2-only host; None otherwise
/// (the systemd driver makes its unit with the process; v1 and hybrid hosts
/// move the pid in after the clone, and resolving there first would only
/// delay it: only on a cgroup2-only host is the layout read before the
/// clone). Nothing is created yet.
pub(crate) fn clone_into(plan: &Plan, id: &str) -> Result<Option<(Box<dyn Manager>, PathBuf)>> {
    if !hako_cgroups::unified_only() || !can_manage() {
        return Ok(None);
    }
    let Some(m) = manager(plan, id, false)? else {
        return Ok(None);
    };
    Ok(clone_target(m.config())
        .map(Path::to_path_buf)
        .map(|dir| (m, dir)))
}

/// Create the cgroup with no process in it yet, and open its directory for
/// clone3(CLONE_INTO_CGROUP).
pub(crate) fn create_for_clone(m: &dyn Manager, dir: &Path) -> Result<OwnedFd> {
    m.create()
        .map_err(|e| cg_err("create the container's cgroup", e))?;
    open_dir(dir)
}

/// An existing container's cgroup opened for clone3(CLONE_INTO_CGROUP)
/// (an `exec` process), when it is one cgroup2 directory.
pub(crate) fn open_for_clone(m: &dyn Manager) -> Option<OwnedFd> {
    clone_target(m.config()).and_then(|d| open_dir(d).ok())
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    crate::sys::openat(None, dir, libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(|e| Error::Other(format!("open cgroup {}: {e}", dir.display())))
}

/// clone3 with `ns_flags`, into `cgroup` when given; when the kernel
/// refuses that (see [`retry_without_cgroup`]), a plain clone whose pid the
/// caller then moves in. Also returns whether the child started in the
/// cgroup. The caller must be single-threaded (see [`crate::sys::clone3_fork`]).
pub(crate) fn clone_into_or_after(
    ns_flags: u64,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
) -> (std::io::Result<crate::sys::Forked>, bool) {
    let forked = crate::sys::clone3_fork(ns_flags, cgroup);
    match &forked {
        Err(e) if cgroup.is_some() && retry_without_cgroup(e.raw_os_error()) => {
            (crate::sys::clone3_fork(ns_flags, None), false)
        }
        _ => (forked, cgroup.is_some()),
    }
}

/// Whether a clone3(CLONE_INTO_CGROUP) that failed with `errno` is tried
/// again as a plain clone whose pid is then written to cgroup.procs: the
/// kernel predates the flag (E2BIG, EINVAL), or the cgroup takes no process
/// this way (EPERM, EACCES outside a delegated tree; EBUSY, EOPNOTSUPP for
/// a domain-invalid or threaded cgroup), where the write says why, or
/// succeeds as it did before the flag existed.
fn retry_without_cgroup(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(
            libc::E2BIG
                | libc::EINVAL
                | libc::EPERM
                | libc::EACCES
                | libc::EBUSY
                | libc::EOPNOTSUPP
        )
    )
}

/// Create the cgroup and move `pid` into it.
pub fn join(m: &dyn Manager, pid: i32) -> Result<()> {
    m.apply(pid)
        .map_err(|e| cg_err("join the container's cgroup", e))
}

/// Write the spec's resources; validated first, so a refusal writes nothing.
pub fn apply_resources(plan: &Plan, m: &dyn Manager) -> Result<()> {
    if let Some(r) = effective_resources(plan) {
        m.set(&r).map_err(|e| cg_err("linux.resources", e))?;
    }
    Ok(())
}

pub fn to_state(m: &dyn Manager) -> Option<serde_json::Value> {
    serde_json::to_value(m.config()).ok()
}

/// Rebuild the manager of an existing container.
pub fn from_state(st: &State) -> Option<Box<dyn Manager>> {
    let cfg: CgroupConfig = serde_json::from_value(st.cgroup.clone()?).ok()?;
    Some(hako_cgroups::for_existing(cfg))
}

pub fn is_frozen(st: &State) -> bool {
    from_state(st)
        .and_then(|m| m.state().ok())
        .is_some_and(|s| s == hako_cgroups::FreezerState::Frozen)
}

/// Whether the cgroup of process `pid` is frozen, v1 or v2 (for callers
/// that have a container's pid but no runtime state any more).
pub fn process_frozen(pid: i32) -> bool {
    hako_cgroups::manager_of_pid(pid)
        .ok()
        .flatten()
        .and_then(|m| m.state().ok())
        .is_some_and(|s| s == hako_cgroups::FreezerState::Frozen)
}

/// Freezes or thaws the cgroup of process `pid`; an error when it has no
/// cgroup of its own (it shares the caller's).
pub fn freeze_process(pid: i32, on: bool) -> Result<()> {
    let m = hako_cgroups::manager_of_pid(pid)
        .map_err(|e| cg_err("find the process's cgroup", e))?
        .ok_or_else(|| Error::Other(format!("process {pid} has no cgroup of its own to freeze")))?;
    if on { m.freeze() } else { m.thaw() }.map_err(|e| cg_err("freezer", e))
}

/// Apply new resources to a running container (`update`).
pub fn update(st: &State, r: &LinuxResources) -> Result<()> {
    let m = from_state(st)
        .ok_or_else(|| Error::Other(format!("container {:?} has no cgroup to update", st.id)))?;
    // As runc: device rules are the container's from create and `update`
    // leaves them alone. containerd's CRI sends the whole resources block,
    // `devices: [deny all]` included; applying that would drop the default
    // allow-list (/dev/null, /dev/zero, ptys) from a running container.
    let mut r = r.clone();
    r.set_devices(None);
    m.set(&r).map_err(|e| cg_err("update", e))
}

/// Kill everything left in the cgroup and remove it.
pub fn destroy(st: &State) -> Result<()> {
    let Some(m) = from_state(st) else {
        return Ok(());
    };
    if m.pids().map(|p| !p.is_empty()).unwrap_or(false) {
        let _ = m.kill_all(libc::SIGKILL);
        let start = std::time::Instant::now();
        while m.pids().map(|p| !p.is_empty()).unwrap_or(false)
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    m.destroy()
        .map_err(|e| cg_err("remove the container's cgroup", e))?;
    // Parents this container's creation added go too, unless another
    // cgroup is in them now (rmdir then fails, and they stay).
    for p in &st.cgroup_parents {
        let _ = std::fs::remove_dir(p);
    }
    Ok(())
}

/// Remove the group `/<name>` from every cgroup hierarchy where it is empty
/// (best effort: a group still in use stays). For an engine that nests its
/// containers under a group of its own, after it removes a container.
pub fn remove_empty_group(name: &str) {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return;
    }
    for h in hako_cgroups::hierarchies() {
        let _ = std::fs::remove_dir(h.mountpoint.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(v1: &[&str], unified: bool) -> CgroupConfig {
        CgroupConfig {
            cgroups_path: "/c".into(),
            v1: v1
                .iter()
                .map(|c| (c.to_string(), Path::new("/sys/fs/cgroup").join(c).join("c")))
                .collect::<BTreeMap<_, _>>(),
            unified: unified.then(|| hako_cgroups::UnifiedDir {
                root: "/sys/fs/cgroup/unified".into(),
                dir: "/sys/fs/cgroup/unified/c".into(),
                controllers: vec!["memory".into(), "pids".into()],
            }),
            systemd: None,
        }
    }

    #[test]
    fn only_a_cgroup2_only_layout_is_cloned_into() {
        // cgroup2 only: the one directory.
        assert_eq!(
            clone_target(&cfg(&[], true)),
            Some(Path::new("/sys/fs/cgroup/unified/c"))
        );
        // Hybrid: v1 hierarchies need the pid written as well.
        assert_eq!(clone_target(&cfg(&["memory", "pids"], true)), None);
        // v1 only.
        assert_eq!(clone_target(&cfg(&["memory"], false)), None);
        assert_eq!(clone_target(&cfg(&[], false)), None);
    }

    #[test]
    fn clone_into_cgroup_falls_back_on_refusals_not_on_other_errors() {
        for e in [
            libc::E2BIG,
            libc::EINVAL,
            libc::EPERM,
            libc::EACCES,
            libc::EBUSY,
        ] {
            assert!(retry_without_cgroup(Some(e)), "{e}");
        }
        // Out of pids or memory: a plain clone would fail the same way.
        for e in [libc::EAGAIN, libc::ENOMEM, libc::ENOSPC] {
            assert!(!retry_without_cgroup(Some(e)), "{e}");
        }
        assert!(!retry_without_cgroup(None));
    }
}
