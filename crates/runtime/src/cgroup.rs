//! The container's cgroup: the init is in it before it does anything for
//! the container, so it (and everything it forks) is accounted from the
//! start. With the cgroupfs driver the cgroup is made before the clone, the
//! init is cloned into its cgroup2 directory and moves itself into each v1
//! hierarchy first thing after the parent's go; neither waits on the
//! kernel's migration lock ([`hako_cgroups::Entry`]). With the systemd
//! driver, systemd makes the unit with the init in it between the clone and
//! the go. Rebuilt from state.json by later commands.

use std::path::Path;

use hako_cgroups::{CgroupConfig, Entry, Manager};
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

/// Create the cgroup with no process in it yet (the cgroupfs driver, made
/// before the clone) and open the new process's way in (see
/// [`hako_cgroups::Entry`]).
pub(crate) fn create_for_clone(m: &dyn Manager) -> Result<Entry> {
    m.create()
        .map_err(|e| cg_err("create the container's cgroup", e))?;
    Entry::open(m.config()).map_err(|e| cg_err("open the container's cgroup", e))
}

/// An existing container's cgroup opened for a new process (an `exec`);
/// None where it cannot be (a rootless caller without write access to a
/// v1 hierarchy): the pid is then moved in after the clone, or not at all.
pub(crate) fn open_for_clone(m: &dyn Manager) -> Option<Entry> {
    Entry::open(m.config()).ok()
}

/// clone3 with `ns_flags`, into the cgroup2 directory `entry` holds; when
/// the kernel refuses that (see [`retry_without_cgroup`]), a plain clone.
/// The directory is closed after the clone, in both processes: none stays
/// open in the child while it resolves its cwd in the container
/// (CVE-2024-21626 was such an fd). Also returns whether the parent still
/// has to move the child in by its pid: there is no entry, or the clone
/// into the directory was refused. (v1 hierarchies the child enters
/// itself, [`Entry::move_self`].) The caller must be single-threaded (see
/// [`crate::sys::clone3_fork`]). `who` names the child in the debug log,
/// which says how it got in.
pub(crate) fn clone_entering(
    ns_flags: u64,
    entry: Option<&mut Entry>,
    who: &str,
) -> (std::io::Result<crate::sys::Forked>, bool) {
    let Some(entry) = entry else {
        return (crate::sys::clone3_fork(ns_flags, None), true);
    };
    let dir = entry.clone_dir();
    let forked = crate::sys::clone3_fork(ns_flags, dir);
    let (forked, cloned_in) = match &forked {
        Err(e) if dir.is_some() && retry_without_cgroup(e.raw_os_error()) => {
            (crate::sys::clone3_fork(ns_flags, None), false)
        }
        _ => (forked, dir.is_some()),
    };
    if matches!(forked, Ok(crate::sys::Forked::Parent { .. })) {
        if cloned_in {
            crate::log::debug(&format!("the {who} was cloned into its cgroup2 directory"));
        } else if dir.is_some() {
            crate::log::debug(&format!("the {who} is moved into its cgroup by pid"));
        }
        if entry.moves_self() {
            crate::log::debug(&format!("the {who} moves itself into the v1 hierarchies"));
        }
    }
    let parent_moves = dir.is_some() && !cloned_in;
    entry.close_dir();
    (forked, parent_moves)
}

/// The EnterCgroup step of the init and of an exec process: move into each
/// v1 hierarchy through the files the parent opened, closing them (no host
/// cgroup file stays open in the container).
pub(crate) fn enter(entry: &mut Option<Entry>) -> Result<()> {
    match entry.take() {
        Some(e) => e
            .move_self()
            .map_err(|e| cg_err("join the container's cgroup", e)),
        None => Ok(()),
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
