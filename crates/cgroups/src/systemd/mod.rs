//! The systemd cgroup driver: the container's cgroup is a transient unit
//! (`prefix-name.scope` under a slice) that systemd creates with
//! `Delegate=yes`, so systemd knows it and leaves its inside to us. The
//! resources systemd manages are set as unit properties, and then, like
//! every other resource, written to the unit's cgroup files by the
//! cgroupfs code ([`FsManager`]), which also freezes, signals and reports.
//! cgroup2-only hosts (where systemd runs today).

mod bus;
pub mod props;
pub mod unit;
mod wire;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{Host, Layout};
use crate::manager::{CgroupConfig, FsManager, UnifiedDir};
use crate::plan::Plan;
use crate::stats::Stats;
use crate::{fs, FreezerState, Manager};
use props::{Property, Value};
use unit::UnitPath;

/// What the saved state needs to find the unit again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemdUnit {
    pub unit: String,
    pub slice: String,
    /// The user's systemd (rootless), not the system's.
    #[serde(default)]
    pub user: bool,
}

#[derive(Debug)]
pub struct SystemdManager {
    fs: FsManager,
    unit: SystemdUnit,
    /// Extra unit properties (`org.systemd.property.*` annotations) for
    /// `StartTransientUnit`.
    extra: Vec<Property>,
    /// The connection to systemd, opened once per process (the create
    /// path asks where the unit will live, then starts it).
    bus: std::sync::Mutex<Option<bus::Bus>>,
}

/// The systemd manager of a new container: `cgroups_path` is
/// `slice:prefix:name` (empty: `system.slice:hako:<id>`, or `user.slice`
/// for `user`); `annotations` may add `org.systemd.property.*`. Checks
/// everything and asks systemd where the unit will live; creates nothing.
pub fn new(
    host: &Host,
    cgroups_path: &str,
    id: &str,
    user: bool,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<SystemdManager> {
    let default_slice = if user { "user.slice" } else { "system.slice" };
    let up = UnitPath::parse(cgroups_path, id, default_slice)?;
    let extra = props::from_annotations(annotations)?;
    let Layout::V2 { root } = &host.layout else {
        return Err(Error::Systemd {
            what: "the cgroup layout".into(),
            reason: "the systemd driver needs a cgroup2-only host (this one mounts cgroup v1 controllers); use the cgroupfs driver".into(),
        });
    };
    let mut bus = bus::Bus::connect(user)?;
    let base = bus.manager_cgroup()?;
    let rel = format!("{base}{}", up.cgroup());
    let dir = root.join(rel.trim_start_matches('/'));
    let controllers = fs::read_opt(&root.join("cgroup.controllers"))?
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let unit = SystemdUnit {
        unit: up.unit.clone(),
        slice: up.slice.clone(),
        user,
    };
    let cfg = CgroupConfig {
        cgroups_path: PathBuf::from(cgroups_path),
        v1: Default::default(),
        unified: Some(UnifiedDir {
            root: root.clone(),
            dir,
            controllers,
        }),
        systemd: Some(unit.clone()),
    };
    Ok(SystemdManager {
        fs: FsManager::new(cfg),
        unit,
        extra,
        bus: std::sync::Mutex::new(Some(bus)),
    })
}

/// The manager of an existing container, from its saved config.
pub fn existing(cfg: CgroupConfig, unit: SystemdUnit) -> SystemdManager {
    SystemdManager {
        fs: FsManager::new(cfg),
        unit,
        extra: Vec::new(),
        bus: Default::default(),
    }
}

impl SystemdManager {
    /// Run `f` on the connection to systemd, opening it if needed; a
    /// failure closes it, so the next call starts afresh.
    fn with_bus<T>(&self, f: impl FnOnce(&mut bus::Bus) -> Result<T>) -> Result<T> {
        let mut slot = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        let bus = match slot.as_mut() {
            Some(b) => b,
            None => slot.insert(bus::Bus::connect(self.unit.user)?),
        };
        let r = f(bus);
        if r.is_err() {
            *slot = None;
        }
        r
    }

    fn dir(&self) -> &Path {
        &self.fs.config().unified.as_ref().expect("set in new").dir
    }
}

impl Manager for SystemdManager {
    fn config(&self) -> &CgroupConfig {
        self.fs.config()
    }

    /// A transient scope is made with the process it holds: there is no
    /// empty unit to start a process in.
    fn create(&self) -> Result<()> {
        Err(Error::Systemd {
            what: format!("create unit {}", self.unit.unit),
            reason: "the systemd driver makes a unit with its first process".into(),
        })
    }

    fn apply(&self, pid: i32) -> Result<()> {
        let u = &self.unit;
        let mut ps: Vec<Property> = vec![
            (
                "Description".into(),
                Value::Str(format!("hako container {}", u.unit)),
            ),
            ("Slice".into(), Value::Str(u.slice.clone())),
            ("Delegate".into(), Value::Bool(true)),
            ("DefaultDependencies".into(), Value::Bool(false)),
            ("MemoryAccounting".into(), Value::Bool(true)),
            ("CPUAccounting".into(), Value::Bool(true)),
            ("IOAccounting".into(), Value::Bool(true)),
            ("TasksAccounting".into(), Value::Bool(true)),
        ];
        let is_slice = u.unit.ends_with(".slice");
        if !is_slice {
            ps.push(("PIDs".into(), Value::U32s(vec![pid as u32])));
            // An OOM kill of one process is the container's business (as
            // in Docker), not a reason for systemd to stop the whole unit.
            ps.push(("OOMPolicy".into(), Value::Str("continue".into())));
        }
        ps.extend(self.extra.iter().cloned());
        self.with_bus(|b| b.start_unit(&u.unit, &ps))?;
        // A slice takes no processes from systemd: join it ourselves (as
        // runc); a scope already holds the process.
        let procs = self.dir().join("cgroup.procs");
        if is_slice {
            fs::write_file(&procs, &pid.to_string())?;
        } else if !fs::read_opt(&procs)?
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == pid.to_string())
        {
            return Err(Error::Systemd {
                what: format!("start unit {}", u.unit),
                reason: format!(
                    "process {pid} is not in {} after the unit started",
                    self.dir().display()
                ),
            });
        }
        Ok(())
    }

    /// The unit exists: join its cgroup directly (as runc does for exec),
    /// no second unit.
    fn enter(&self, pid: i32) -> Result<()> {
        fs::write_file(&self.dir().join("cgroup.procs"), &pid.to_string())
    }

    fn plan(&self, resources: &LinuxResources) -> Result<Plan> {
        props::from_resources(resources)?;
        self.fs.plan(resources)
    }

    /// Both views change or neither: both are checked first, then the
    /// files are written (the kernel may still refuse a value, and the
    /// plan puts back what it wrote), and only then is systemd told (whose
    /// own writes would not be undone); if systemd refuses, the files are
    /// put back.
    fn set(&self, resources: &LinuxResources) -> Result<()> {
        let ps = props::from_resources(resources)?;
        let plan = self.fs.plan(resources)?;
        plan.validate()?;
        plan.execute_and(|| self.with_bus(|b| b.set_properties(&self.unit.unit, &ps)))
    }

    fn freeze(&self) -> Result<()> {
        self.fs.freeze()
    }
    fn thaw(&self) -> Result<()> {
        self.fs.thaw()
    }
    fn state(&self) -> Result<FreezerState> {
        self.fs.state()
    }
    fn pids(&self) -> Result<Vec<i32>> {
        self.fs.pids()
    }
    fn stats(&self) -> Result<Stats> {
        self.fs.stats()
    }
    fn oom_kill_count(&self) -> Result<u64> {
        self.fs.oom_kill_count()
    }
    fn oom_notifier(&self) -> Result<std::os::fd::OwnedFd> {
        self.fs.oom_notifier()
    }
    fn kill_all(&self, signal: i32) -> Result<()> {
        self.fs.kill_all(signal)
    }

    /// Stop the unit (systemd removes its cgroup), reset it if it failed so
    /// the name is free again, and remove whatever directory is left.
    fn destroy(&self) -> Result<()> {
        self.with_bus(|b| {
            let stopped = b.stop_unit(&self.unit.unit);
            b.reset_failed(&self.unit.unit);
            stopped
        })?;
        self.fs.destroy()
    }
}
