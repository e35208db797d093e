//! The one [`Manager`] implementation: cgroupfs for v1, v2 and hybrid hosts.
//! Each resource is routed to the hierarchy that holds its controller (a
//! v1 mount, or the unified hierarchy), so a hybrid host is simply a mix.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxBlockIo, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{Host, Layout};
use crate::plan::{Op, Plan};
use crate::stats::Stats;
use crate::{fs, v1, v2, FreezerState, Manager};

/// Everything needed to manage one container's cgroups, resolved to
/// directories. Save it (JSON) with the container state so a later
/// `kill`/`events`/`delete` can rebuild the manager with [`crate::for_existing`]
/// even if the runtime's own cgroup has changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupConfig {
    /// The cgroupsPath from the spec (or the default `/hako/<id>`).
    pub cgroups_path: PathBuf,
    /// v1 controller -> the container's directory in that hierarchy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, PathBuf>,
    /// The container's directory on the cgroup2 hierarchy (v2 or hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<UnifiedDir>,
    /// The systemd unit the cgroup is (systemd driver), or None (cgroupfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<crate::systemd::SystemdUnit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedDir {
    /// Mountpoint of the cgroup2 hierarchy.
    pub root: PathBuf,
    /// The container's cgroup directory below `root`.
    pub dir: PathBuf,
    /// Controllers the hierarchy offers (root's cgroup.controllers).
    pub controllers: Vec<String>,
}

impl CgroupConfig {
    /// Resolves `cgroups_path` on `host`: absolute paths are relative to each
    /// hierarchy's root, relative ones to this process's own cgroup in that
    /// hierarchy (as runc), and `None` means `/hako/<container_id>`.
    pub fn resolve(
        host: &Host,
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<CgroupConfig> {
        let path = match cgroups_path {
            Some(p) => p.to_path_buf(),
            None => {
                if container_id.is_empty() || container_id.contains('/') || container_id == ".." {
                    return Err(Error::InvalidPath {
                        path: PathBuf::from(container_id),
                        reason: "container id cannot name a cgroup".into(),
                    });
                }
                Path::new("/hako").join(container_id)
            }
        };
        check_path(&path)?;
        let rel = |key: &str| -> PathBuf {
            if path.is_absolute() {
                strip_root(&path)
            } else {
                let own = host.own.get(key).map(|p| strip_root(p)).unwrap_or_default();
                own.join(&path)
            }
        };
        let unified = |root: &Path, controllers: Vec<String>| UnifiedDir {
            root: root.to_path_buf(),
            dir: root.join(rel("")),
            controllers,
        };
        let (v1, unified) = match &host.layout {
            Layout::V2 { root } => {
                let ctl = fs::read_opt(&root.join("cgroup.controllers"))?
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                (BTreeMap::new(), Some(unified(root, ctl)))
            }
            Layout::V1 { controllers } => (v1_dirs(controllers, &rel), None),
            Layout::Hybrid {
                controllers,
                unified: root,
                unified_controllers,
            } => (
                v1_dirs(controllers, &rel),
                Some(unified(root, unified_controllers.clone())),
            ),
        };
        Ok(CgroupConfig {
            cgroups_path: path,
            v1,
            unified,
            systemd: None,
        })
    }
}

fn v1_dirs(
    controllers: &BTreeMap<String, PathBuf>,
    rel: &dyn Fn(&str) -> PathBuf,
) -> BTreeMap<String, PathBuf> {
    controllers
        .iter()
        .map(|(c, mp)| (c.clone(), mp.join(rel(c))))
        .collect()
}

fn strip_root(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn check_path(p: &Path) -> Result<()> {
    let err = |reason: &str| {
        Err(Error::InvalidPath {
            path: p.to_path_buf(),
            reason: reason.into(),
        })
    };
    if p.components().any(|c| c == Component::ParentDir) {
        return err("'..' is not allowed");
    }
    let s = p.to_string_lossy();
    if !p.is_absolute() && !s.contains('/') && s.matches(':').count() == 2 {
        return err("a systemd cgroup path (slice:prefix:name) needs the systemd driver (hako-runc --systemd-cgroup)");
    }
    if strip_root(p).as_os_str().is_empty() {
        return err("the container cannot use the root cgroup");
    }
    Ok(())
}

/// Where a resource's controller lives.
#[derive(Clone, Copy, Debug)]
enum Backend<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

#[derive(Debug)]
pub struct FsManager {
    cfg: CgroupConfig,
}

impl FsManager {
    pub fn new(cfg: CgroupConfig) -> FsManager {
        FsManager { cfg }
    }

    fn v1_dir(&self, ctl: &str) -> Option<&Path> {
        self.cfg.v1.get(ctl).map(PathBuf::as_path)
    }

    fn v2_dir(&self, ctl: &str) -> Option<&Path> {
        let u = self.cfg.unified.as_ref()?;
        u.controllers
            .iter()
            .any(|c| c == ctl)
            .then_some(u.dir.as_path())
    }

    fn find(&self, v1: &str, v2: &str) -> Option<Backend<'_>> {
        self.v1_dir(v1)
            .map(Backend::V1)
            .or_else(|| self.v2_dir(v2).map(Backend::V2))
    }

    /// The backend for a spec field, or an error saying the controller is missing.
    fn backend(&self, field: &str, v1: &'static str, v2: &str) -> Result<Backend<'_>> {
        self.find(v1, v2)
            .ok_or_else(|| Error::ControllerUnavailable {
                field: field.into(),
                controller: v1,
                detail: self.availability(v1, v2),
            })
    }

    fn availability(&self, v1: &str, v2: &str) -> String {
        let mounted: Vec<&str> = self.cfg.v1.keys().map(String::as_str).collect();
        match &self.cfg.unified {
            Some(u) if mounted.is_empty() => format!(
                "cgroup2 at {} offers {:?}, not {v2:?}",
                u.root.display(),
                u.controllers.join(" ")
            ),
            Some(u) => format!(
                "no v1 {v1:?} hierarchy is mounted (mounted: {}) and cgroup2 at {} offers {:?}, not {v2:?}",
                mounted.join(","),
                u.root.display(),
                u.controllers.join(" ")
            ),
            None => format!(
                "no v1 {v1:?} hierarchy is mounted (mounted: {}) and there is no cgroup2 hierarchy",
                mounted.join(",")
            ),
        }
    }

    fn freezer(&self) -> Option<Backend<'_>> {
        // The v2 freezer is a core file (cgroup.freeze), not a controller.
        self.v1_dir("freezer")
            .map(Backend::V1)
            .or_else(|| self.cfg.unified.as_ref().map(|u| Backend::V2(&u.dir)))
    }

    /// Every distinct directory the container has, v1 then unified.
    fn dirs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for d in self.cfg.v1.values() {
            if !out.contains(&d.as_path()) {
                out.push(d);
            }
        }
        if let Some(u) = &self.cfg.unified {
            out.push(&u.dir);
        }
        out
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        ["freezer", "pids", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .or_else(|| self.cfg.unified.as_ref().map(|u| u.dir.as_path()))
            .or_else(|| self.cfg.v1.values().next().map(PathBuf::as_path))
    }
}

impl Manager for FsManager {
    fn config(&self) -> &CgroupConfig {
        &self.cfg
    }

    fn create(&self) -> Result<()> {
        for (ctl, dir) in &self.cfg.v1 {
            fs::mkdir_all(dir)?;
            if ctl == "cpuset" {
                v1::cpuset::inherit(dir)?;
            }
        }
        if let Some(u) = &self.cfg.unified {
            fs::mkdir_all(&u.dir)?;
            // On a hybrid host the cgroup2 side holds controllers nobody
            // asked for (hugetlb here); enabling one in subtree_control pins
            // it to cgroup2, and other runtimes (crun) can then no longer
            // mount it as v1. There it is enabled by set() when needed.
            if self.cfg.v1.is_empty() {
                v2::enable_controllers(&u.root, &u.dir)?;
            }
        }
        Ok(())
    }

    fn apply(&self, pid: i32) -> Result<()> {
        self.create()?;
        let pid = pid.to_string();
        for dir in self.dirs() {
            fs::write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn plan(&self, res: &LinuxResources) -> Result<Plan> {
        let res = &crate::normalize::normalize(res);
        let mut plan = Plan::default();
        if let Some(m) = res
            .memory()
            .as_ref()
            .filter(|m| **m != LinuxMemory::default())
        {
            match self.backend("memory", "memory", "memory")? {
                Backend::V1(d) => v1::memory::plan(m, d, &mut plan)?,
                Backend::V2(d) => v2::memory::plan(m, d, &mut plan)?,
            }
        }
        if let Some(c) = res.cpu() {
            let cpu_part = c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some()
                || c.idle().is_some();
            if cpu_part {
                match self.backend("cpu", "cpu", "cpu")? {
                    Backend::V1(d) => v1::cpu::plan(c, d, &mut plan)?,
                    Backend::V2(d) => v2::cpu::plan(c, d, &mut plan)?,
                }
            }
            if c.cpus().is_some() || c.mems().is_some() {
                let (Backend::V1(d) | Backend::V2(d)) =
                    self.backend("cpu.cpus/mems", "cpuset", "cpuset")?;
                v1::cpuset::plan(c, d, &mut plan)?;
            }
        }
        if let Some(p) = res.pids() {
            let (Backend::V1(d) | Backend::V2(d)) = self.backend("pids", "pids", "pids")?;
            v1::pids::plan(p, d, &mut plan)?;
        }
        if let Some(b) = res
            .block_io()
            .as_ref()
            .filter(|b| **b != LinuxBlockIo::default())
        {
            match self.backend("blockIO", "blkio", "io")? {
                Backend::V1(d) => v1::blkio::plan(b, d, &mut plan)?,
                Backend::V2(d) => v2::io::plan(b, d, &mut plan)?,
            }
        }
        if let Some(h) = res.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            match self.backend("hugepageLimits", "hugetlb", "hugetlb")? {
                Backend::V1(d) => v1::hugetlb::plan(h, d, &mut plan)?,
                Backend::V2(d) => v2::hugetlb::plan(h, d, &mut plan)?,
            }
        }
        if let Some(n) = res.network() {
            if n.class_id().is_some() {
                let d = self.v1_only("network.classID", "net_cls")?;
                v1::network::plan_classid(n, d, &mut plan)?;
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                let d = self.v1_only("network.priorities", "net_prio")?;
                v1::network::plan_priorities(n, d, &mut plan)?;
            }
        }
        if let Some(rdma) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
            let (Backend::V1(d) | Backend::V2(d)) = self.backend("rdma", "rdma", "rdma")?;
            let mut devs: Vec<_> = rdma.iter().collect();
            devs.sort_by(|a, b| a.0.cmp(b.0));
            for (dev, l) in devs {
                let n = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
                plan.write(
                    "rdma",
                    format!("rdma[{dev:?}]"),
                    d,
                    "rdma.max",
                    format!(
                        "{dev} hca_handle={} hca_object={}",
                        n(l.hca_handles()),
                        n(l.hca_objects())
                    ),
                );
            }
        }
        if let Some(rules) = res.devices() {
            if let Some(d) = self.v1_dir("devices") {
                v1::devices::plan(rules, d, &mut plan)?;
            } else if let Some(u) = &self.cfg.unified {
                // Compile now so a bad rule fails before any write.
                v2::devices::compile(rules)?;
                plan.ops.push(Op::DeviceFilter {
                    dir: u.dir.clone(),
                    rules: rules.clone(),
                });
            } else {
                return Err(Error::ControllerUnavailable {
                    field: "devices".into(),
                    controller: "devices",
                    detail: self.availability("devices", "(eBPF)"),
                });
            }
        }
        if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            let Some(dir) = self.cfg.unified.as_ref().map(|u| &u.dir) else {
                return Err(Error::InvalidResource {
                    field: "unified".into(),
                    reason: "needs a cgroup v2 hierarchy, and this host has cgroup v1 only".into(),
                });
            };
            v2::unified::plan(u, dir, &mut plan)?;
        }
        Ok(plan)
    }

    fn set(&self, res: &LinuxResources) -> Result<()> {
        if let Some(u) = self
            .cfg
            .unified
            .as_ref()
            .filter(|_| !self.cfg.v1.is_empty())
        {
            let wants_hugetlb = res
                .hugepage_limits()
                .as_ref()
                .is_some_and(|h| !h.is_empty())
                && u.controllers.iter().any(|c| c == "hugetlb");
            let wants_unified = res.unified().as_ref().is_some_and(|m| !m.is_empty());
            if wants_hugetlb || wants_unified {
                v2::enable_controllers(&u.root, &u.dir)?;
            }
        }
        let plan = self.plan(res)?;
        plan.validate()?;
        plan.execute()
    }

    fn freeze(&self) -> Result<()> {
        match self.freezer() {
            Some(Backend::V1(d)) => v1::freezer::set(d, true),
            Some(Backend::V2(d)) => v2::freezer::set(d, true),
            None => Err(self.no_freezer("freeze")),
        }
    }

    fn thaw(&self) -> Result<()> {
        match self.freezer() {
            Some(Backend::V1(d)) => v1::freezer::set(d, false),
            Some(Backend::V2(d)) => v2::freezer::set(d, false),
            None => Err(self.no_freezer("thaw")),
        }
    }

    fn state(&self) -> Result<FreezerState> {
        match self.freezer() {
            Some(Backend::V1(d)) => v1::freezer::state(d),
            Some(Backend::V2(d)) => v2::freezer::state(d),
            None => Ok(FreezerState::Thawed),
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(d) = self.procs_dir() {
            fs::pids_recursive(d, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        match self.find("memory", "memory") {
            Some(Backend::V1(d)) => s.memory = v1::memory::stats(d)?,
            Some(Backend::V2(d)) => s.memory = v2::memory::stats(d)?,
            None => {}
        }
        match self.find("cpu", "cpu") {
            Some(Backend::V1(_)) | None if !self.cfg.v1.is_empty() => {
                if let Some(d) = self.v1_dir("cpuacct") {
                    s.cpu.usage = v1::cpu::usage(d)?;
                }
                if let Some(d) = self.v1_dir("cpu") {
                    s.cpu.throttling = v1::cpu::throttling(d)?;
                }
            }
            // v2 cpu.stat has the usage fields even without the cpu controller.
            _ => {
                if let Some(u) = &self.cfg.unified {
                    s.cpu = v2::cpu::stats(&u.dir)?;
                }
            }
        }
        if let Some(Backend::V1(d) | Backend::V2(d)) = self.find("pids", "pids") {
            s.pids = v1::pids::stats(d)?;
        }
        match self.find("blkio", "io") {
            Some(Backend::V1(d)) => s.blkio = v1::blkio::stats(d)?,
            Some(Backend::V2(d)) => s.blkio = v2::io::stats(d)?,
            None => {}
        }
        match self.find("hugetlb", "hugetlb") {
            Some(Backend::V1(d)) => s.hugetlb = v1::hugetlb::stats(d)?,
            Some(Backend::V2(d)) => s.hugetlb = v2::hugetlb::stats(d)?,
            None => {}
        }
        Ok(s)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        match self.backend("oom_kill_count", "memory", "memory")? {
            Backend::V1(d) => v1::memory::oom_kill_count(d),
            Backend::V2(d) => v2::memory::oom_kill_count(d),
        }
    }

    fn oom_notifier(&self) -> Result<std::os::fd::OwnedFd> {
        match self.backend("oom_notifier", "memory", "memory")? {
            Backend::V1(d) => v1::memory::oom_eventfd(d),
            Backend::V2(d) => v2::memory::oom_inotify(d),
        }
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        let sig = Signal::try_from(signal).map_err(|_| Error::InvalidResource {
            field: "signal".into(),
            reason: format!("{signal} is not a valid signal"),
        })?;
        // cgroup.kill (Linux >= 5.14) kills the whole subtree atomically,
        // including processes forked while we would be iterating.
        if sig == Signal::SIGKILL {
            if let Some(u) = &self.cfg.unified {
                let f = u.dir.join("cgroup.kill");
                if f.exists() {
                    return fs::write_file(&f, "1");
                }
            }
        }
        // Otherwise freeze first so nobody forks between listing and
        // signalling, then thaw so the signals are delivered.
        let froze = self.freezer().is_some()
            && self.state()? == FreezerState::Thawed
            && self.freeze().is_ok();
        let mut result = Ok(());
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    if result.is_ok() {
                        result = Err(Error::Kill {
                            pid,
                            signal,
                            source,
                        });
                    }
                }
            }
        }
        if froze {
            self.thaw()?;
        }
        result
    }

    fn destroy(&self) -> Result<()> {
        let mut result = Ok(());
        for d in self.dirs() {
            if let Err(e) = fs::remove_cgroup_tree(d) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}

impl FsManager {
    fn v1_only(&self, field: &str, ctl: &'static str) -> Result<&Path> {
        self.v1_dir(ctl)
            .ok_or_else(|| Error::ControllerUnavailable {
                field: field.into(),
                controller: ctl,
                detail: if self.cfg.v1.is_empty() {
                    format!("{ctl} is a cgroup v1 controller and this host is cgroup v2 only")
                } else {
                    format!(
                        "{ctl} is a cgroup v1 controller and is not mounted (mounted: {})",
                        self.cfg.v1.keys().cloned().collect::<Vec<_>>().join(",")
                    )
                },
            })
    }

    fn no_freezer(&self, field: &str) -> Error {
        Error::ControllerUnavailable {
            field: field.into(),
            controller: "freezer",
            detail: self.availability("freezer", "cgroup.freeze"),
        }
    }
}
