//! hako's cgroup library: creates a container's cgroups, applies
//! `linux.resources` from the OCI spec, freezes, signals, reports stats and
//! removes them, on cgroup v1, cgroup v2 and hybrid hosts (the cgroupfs
//! driver), and as systemd units on cgroup2 hosts (the [`systemd`] driver).
//!
//! The runtime's order of calls:
//!
//! ```text
//! let m = hako_cgroups::manager(spec_cgroups_path, id)?;   // resolve dirs
//! m.create()?; let e = Entry::open(m.config())?;           // before the clone
//! clone3(CLONE_INTO_CGROUP, e.clone_dir()); child: e.move_self()?
//! (or, for a process that exists: m.apply(pid)?            // mkdir + join)
//! m.set(resources)?;                                       // validate, then write
//! save(m.config())                                         // JSON in the state dir
//! ... later: let m = hako_cgroups::for_existing(saved_config);
//! m.kill_all(libc::SIGKILL)?; m.destroy()?;
//! ```
//!
//! `set` builds a [`plan::Plan`] first (`Manager::plan`), checks that every
//! file it needs exists and only then writes, so a spec asking for a
//! controller the host lacks fails before the first write.

#![deny(clippy::undocumented_unsafe_blocks)]

mod bpf;
pub mod convert;
mod entry;
pub mod error;
mod fs;
pub mod layout;
mod manager;
mod normalize;
pub mod plan;
mod size;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::Path;

pub use fs::read_kernel_file;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use bpf::{BpfError, Insn};
pub use entry::Entry;
pub use error::{Error, Result};
pub use layout::{hierarchies, unified_only, Hierarchy, Host, Layout, LayoutError, ProcFiles};
pub use manager::{CgroupConfig, FsManager, UnifiedDir};
pub use normalize::{normalize, validate};
pub use plan::{Op, Plan};
pub use size::parse_size;
pub use stats::Stats;

/// Compiles OCI device rules into the cgroup v2 eBPF device filter program
/// (exposed for inspection and tests).
pub fn compile_device_filter(rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    v2::devices::compile(rules)
}

/// Ids of the eBPF device programs attached directly to a cgroup v2
/// directory (diagnostics: after any number of `set` calls there is one).
pub fn device_programs(dir: &Path) -> Result<Vec<u32>> {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(dir).map_err(|source| BpfError::Open {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(bpf::query_device_progs(
        f.as_fd(),
        &dir.display().to_string(),
    )?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// A freeze was requested and is still in progress.
    Freezing,
    Frozen,
}

/// A container's cgroups. Object safe: the runtime holds a `Box<dyn Manager>`.
pub trait Manager: Send + Sync + std::fmt::Debug {
    /// The resolved directories; serialize it into the container state.
    fn config(&self) -> &CgroupConfig;
    /// Creates the cgroup in every hierarchy (v1 controllers and/or the
    /// unified one), enabling v2 controllers on the way, with no process in
    /// it: a new process can then enter it through an [`Entry`], with no
    /// pid to move. The systemd driver refuses: its unit is made with its
    /// first process.
    fn create(&self) -> Result<()>;
    /// [`Manager::create`], then moves `pid` in.
    fn apply(&self, pid: i32) -> Result<()>;
    /// Moves `pid` into the existing cgroup (a process `exec`ed into a
    /// running container); creates nothing.
    fn enter(&self, pid: i32) -> Result<()> {
        self.apply(pid)
    }
    /// What `set` would write, without touching anything.
    fn plan(&self, resources: &LinuxResources) -> Result<Plan>;
    /// Validates everything, then writes all values. Call after `apply`.
    fn set(&self, resources: &LinuxResources) -> Result<()>;
    /// Freezes every process and waits until the kernel reports it frozen.
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn state(&self) -> Result<FreezerState>;
    /// Every process in the cgroup and its descendants, sorted.
    fn pids(&self) -> Result<Vec<i32>>;
    fn stats(&self) -> Result<Stats>;
    /// Number of processes the OOM killer has killed in this cgroup.
    fn oom_kill_count(&self) -> Result<u64>;
    /// An fd that becomes readable when an OOM event may have happened
    /// (v1: an eventfd registered on memory.oom_control, read 8 bytes to
    /// reset; v2: an inotify fd on memory.events, drain it). The caller
    /// polls it and confirms with `oom_kill_count`. Keep it open as long
    /// as you want notifications.
    fn oom_notifier(&self) -> Result<OwnedFd>;
    /// Sends `signal` (a libc signal number) to every process. SIGKILL on
    /// v2 uses cgroup.kill; otherwise the cgroup is frozen while signalling.
    /// Does not wait for the processes to exit.
    fn kill_all(&self, signal: i32) -> Result<()>;
    /// Removes the container's cgroup directories (and any sub-cgroups),
    /// bottom-up, retrying briefly on EBUSY. Idempotent. Processes must be
    /// gone (kill_all + wait) first.
    fn destroy(&self) -> Result<()>;
}

/// Detects the host layout and resolves `cgroups_path` (absolute: from each
/// hierarchy root; relative: below the runtime's own cgroup; `None`:
/// `/hako/<container_id>`).
pub fn manager(cgroups_path: Option<&Path>, container_id: &str) -> Result<Box<dyn Manager>> {
    manager_for_host(&Host::detect()?, cgroups_path, container_id)
}

/// The manager of the cgroup process `pid` lives in, or None when that is
/// the caller's own cgroup or a hierarchy's root (nothing of its own to
/// freeze or limit). The freezer's hierarchy decides on v1, cgroup2's
/// otherwise.
pub fn manager_of_pid(pid: i32) -> Result<Option<Box<dyn Manager>>> {
    let me = Host::detect()?;
    let it = Host::detect_from(&ProcFiles {
        cgroup: format!("/proc/{pid}/cgroup").into(),
        ..ProcFiles::default()
    })?;
    let key = if me.own.contains_key("freezer") {
        "freezer"
    } else {
        ""
    };
    let Some(path) = it.own.get(key) else {
        return Ok(None);
    };
    if me.own.get(key) == Some(path) || path == Path::new("/") {
        return Ok(None);
    }
    manager_for_host(&me, Some(path), &pid.to_string()).map(Some)
}

/// Like [`manager`] with an explicit host description (tests, fake trees).
pub fn manager_for_host(
    host: &Host,
    cgroups_path: Option<&Path>,
    container_id: &str,
) -> Result<Box<dyn Manager>> {
    Ok(Box::new(FsManager::new(CgroupConfig::resolve(
        host,
        cgroups_path,
        container_id,
    )?)))
}

/// The systemd driver's manager for a new container (see [`systemd::new`]).
pub fn systemd_manager(
    cgroups_path: &str,
    container_id: &str,
    user: bool,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Box<dyn Manager>> {
    Ok(Box::new(systemd::new(
        &Host::detect()?,
        cgroups_path,
        container_id,
        user,
        annotations,
    )?))
}

/// Rebuilds the manager of an existing container from its saved config
/// (cgroupfs or systemd, as it was made).
pub fn for_existing(config: CgroupConfig) -> Box<dyn Manager> {
    match config.systemd.clone() {
        Some(unit) => Box::new(systemd::existing(config, unit)),
        None => Box::new(FsManager::new(config)),
    }
}
