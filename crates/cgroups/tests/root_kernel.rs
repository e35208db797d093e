//! Root integration tests on the real cgroup hierarchies of the machine
//! running them (v1, hybrid or v2). Each test creates its own cgroup below a
//! `hako-test-<random>` parent, relative to the test process's own cgroup,
//! and a Drop guard kills its children and removes every directory even when
//! an assertion fails. Skipped (with a printed reason) when not root.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hako_cgroups::{
    for_existing, manager, CgroupConfig, FreezerState, Host, Layout, Manager, UnifiedDir,
};
use oci_spec::runtime::LinuxResources;

/// Serializes the tests: they share the unified root's subtree_control,
/// which a guard restores.
static LOCK: Mutex<()> = Mutex::new(());

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if let Err(e) = Host::detect() {
        return Some(format!("no usable cgroup layout: {e}"));
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(r) = skip_reason() {
            panic!("cannot run a root cgroup test: {r} (root tests are #[ignore]d and run as root with --include-ignored)");
        }
    };
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("hako-test-{}-{n:x}", std::process::id())
}

/// Owns a test cgroup: on drop thaws, kills, destroys it, removes the
/// `hako-test-*` parents and undoes controller enabling on the v2 root.
struct Cg {
    m: Box<dyn Manager>,
    parents: Vec<PathBuf>,
    restore_subtree: Option<(PathBuf, String)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Cg {
    fn new(id: &str) -> Cg {
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Absolute, as containerd and podman pass it: under a systemd
        // service (the VM stage) the test's own cgroup cannot have children
        // with controllers while it holds the test process.
        let rel = PathBuf::from("/").join(unique()).join(id);
        let m = manager(Some(&rel), id).unwrap();
        Cg::wrap(m, lock)
    }

    fn wrap(m: Box<dyn Manager>, lock: std::sync::MutexGuard<'static, ()>) -> Cg {
        let cfg = m.config().clone();
        let mut parents: Vec<PathBuf> = cfg
            .v1
            .values()
            .map(|d| d.parent().unwrap().into())
            .collect();
        let mut restore_subtree = None;
        if let Some(u) = &cfg.unified {
            parents.push(u.dir.parent().unwrap().into());
            let f = u.root.join("cgroup.subtree_control");
            restore_subtree = Some((f.clone(), fs::read_to_string(&f).unwrap_or_default()));
        }
        parents.sort();
        parents.dedup();
        for p in &parents {
            assert!(
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hako-test-"),
                "refusing to manage {}",
                p.display()
            );
        }
        Cg {
            m,
            parents,
            restore_subtree,
            _lock: lock,
        }
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = self.m.thaw();
        let _ = self.m.kill_all(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !self.m.pids().unwrap_or_default().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = self.m.destroy() {
            eprintln!("cleanup: destroy: {e}");
        }
        for p in &self.parents {
            let _ = fs::remove_dir(p);
        }
        if let Some((f, before)) = &self.restore_subtree {
            let now = fs::read_to_string(f).unwrap_or_default();
            for c in now.split_whitespace() {
                if !before.split_whitespace().any(|b| b == c) {
                    let _ = fs::write(f, format!("-{c}"));
                }
            }
        }
    }
}

/// A child running `script` under sh, blocked on stdin until `release()`.
/// Dropping it kills and reaps it.
struct Kid {
    child: Child,
}

impl Kid {
    fn spawn(script: &str) -> Kid {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read x; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Kid { child }
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn release(&mut self) {
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
    }
    /// Waits for exit (with timeout) and returns (status, stdout, stderr).
    fn finish(&mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap().trim().to_string()
}

fn dir(cg: &Cg, ctl: &str) -> Option<PathBuf> {
    let cfg = cg.m.config();
    cfg.v1.get(ctl).cloned().or_else(|| {
        cfg.unified
            .as_ref()
            .filter(|u| u.controllers.iter().any(|c| c == ctl) || ctl == "freezer")
            .map(|u| u.dir.clone())
    })
}

#[test]
#[ignore = "needs root"]
fn apply_set_read_back_stats_destroy() {
    require_root!();
    let cg = Cg::new("basic");
    let mut kid = Kid::spawn("exec sleep 100");
    cg.m.apply(kid.pid()).unwrap();
    cg.m.set(&res(
        r#"{"memory": {"limit": 67108864, "reservation": 33554432},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 10}}"#,
    ))
    .unwrap();
    kid.release();

    // The child is in every hierarchy.
    let proc_cgroup = fs::read_to_string(format!("/proc/{}/cgroup", kid.pid())).unwrap();
    for d in cg.m.config().v1.values() {
        let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == kid.pid().to_string()),
            "{} has no child",
            d.display()
        );
    }
    assert!(proc_cgroup.contains("hako-test-"), "{proc_cgroup}");

    let mem = dir(&cg, "memory").unwrap();
    if cg.m.config().v1.contains_key("memory") {
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "33554432");
    } else {
        assert_eq!(read(&mem.join("memory.max")), "67108864");
        assert_eq!(read(&mem.join("memory.low")), "33554432");
    }
    let cpu = dir(&cg, "cpu").unwrap();
    if cg.m.config().v1.contains_key("cpu") {
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    } else {
        assert_eq!(read(&cpu.join("cpu.max")), "50000 100000");
    }
    assert_eq!(read(&dir(&cg, "pids").unwrap().join("pids.max")), "10");

    // Stats: the exec'd sleep faulted pages in after joining.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = cg.m.stats().unwrap();
        if s.memory.usage.usage > 0 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(s.memory.usage.usage > 0, "{s:?}");
    assert_eq!(s.memory.usage.limit, 67108864);
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, 10);
    assert!(cg.m.pids().unwrap().contains(&kid.pid()));
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["memory"]["usage"]["usage"].as_u64().unwrap() > 0);

    // The saved config rebuilds an equivalent manager (CLI `hako-runc kill`).
    let saved = serde_json::to_string(cg.m.config()).unwrap();
    let again = for_existing(serde_json::from_str::<CgroupConfig>(&saved).unwrap());
    again.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = kid.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    // A nested cgroup (a container's own sub-cgroups) goes with it.
    let nested: Vec<PathBuf> = (cg.m.config().v1.values())
        .chain(cg.m.config().unified.iter().map(|u| &u.dir))
        .map(|d| d.join("nested/deeper"))
        .collect();
    for n in &nested {
        std::fs::create_dir_all(n).unwrap();
    }
    again.destroy().unwrap();
    for d in cg.m.config().v1.values() {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    if let Some(u) = &cg.m.config().unified {
        assert!(!u.dir.exists());
    }
    again.destroy().unwrap(); // idempotent
}

#[test]
#[ignore = "needs root"]
fn freeze_and_thaw() {
    require_root!();
    let cg = Cg::new("freeze");
    let kid = Kid::spawn("exec sleep 100");
    cg.m.apply(kid.pid()).unwrap();
    assert_eq!(cg.m.state().unwrap(), FreezerState::Thawed);
    cg.m.freeze().unwrap();
    assert_eq!(cg.m.state().unwrap(), FreezerState::Frozen);
    let fz = dir(&cg, "freezer").unwrap();
    if cg.m.config().v1.contains_key("freezer") {
        assert_eq!(read(&fz.join("freezer.state")), "FROZEN");
    } else {
        assert!(read(&fz.join("cgroup.events")).contains("frozen 1"));
    }
    cg.m.thaw().unwrap();
    assert_eq!(cg.m.state().unwrap(), FreezerState::Thawed);
    // kill_all with a catchable signal goes through freeze/list/signal/thaw.
    cg.m.kill_all(libc::SIGTERM).unwrap();
    drop(kid);
}

#[test]
#[ignore = "needs root"]
fn memory_limit_oom_kills_and_is_counted() {
    require_root!();
    let cg = Cg::new("oom");
    // tail buffers an endless "line" of zeros: it allocates until killed.
    let mut kid = Kid::spawn("exec tail /dev/zero");
    cg.m.apply(kid.pid()).unwrap();
    let mut r = r#"{"memory": {"limit": 16777216}}"#.to_string();
    if cg
        .m
        .config()
        .v1
        .get("memory")
        .is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists())
    {
        r = r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#.into();
    }
    cg.m.set(&res(&r)).unwrap();
    let before = cg.m.oom_kill_count().unwrap();
    let notifier = cg.m.oom_notifier().unwrap();
    kid.release();
    let (status, _, _) = kid.finish(Duration::from_secs(30));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status:?}"
    );
    assert!(cg.m.oom_kill_count().unwrap() > before);
    let mut pfd = libc::pollfd {
        fd: notifier.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call, nfds = 1.
    let n = unsafe { libc::poll(&mut pfd, 1, 2000) };
    assert_eq!(n, 1, "OOM notifier fd did not become readable");
    let s = cg.m.stats().unwrap();
    assert!(
        s.memory.usage.failcnt > 0 || s.memory.usage.max > 0,
        "{s:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn pids_limit_makes_fork_fail() {
    require_root!();
    let cg = Cg::new("pids");
    let mut kid = Kid::spawn(
        "for i in 1 2 3; do sleep 30 </dev/null >/dev/null 2>&1 & done; echo started; exit 0",
    );
    cg.m.apply(kid.pid()).unwrap();
    cg.m.set(&res(r#"{"pids": {"limit": 2}}"#)).unwrap();
    kid.release();
    let (_, out, err) = kid.finish(Duration::from_secs(10));
    assert!(
        err.to_lowercase().contains("fork"),
        "stdout {out:?} stderr {err:?}"
    );
    assert!(cg.m.stats().unwrap().pids.current <= 2);
}

#[test]
#[ignore = "needs root"]
fn v1_devices_deny_dev_null() {
    require_root!();
    let cg = Cg::new("devices");
    if !cg.m.config().v1.contains_key("devices") {
        eprintln!("SKIPPED: no v1 devices controller (covered by v2_ebpf_device_filter)");
        return;
    }
    let mut kid = Kid::spawn("if echo hi > /dev/null; then echo open; else echo denied; fi");
    cg.m.apply(kid.pid()).unwrap();
    cg.m.set(&res(r#"{"devices": [{"allow": true, "access": "rwm"},
                        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#))
        .unwrap();
    let list = read(&dir(&cg, "devices").unwrap().join("devices.list"));
    assert!(!list.contains("c 1:3"), "{list}");
    kid.release();
    let (_, out, _) = kid.finish(Duration::from_secs(10));
    assert_eq!(out.trim(), "denied");
}

/// Drives the pure-v2 code paths on whatever cgroup2 hierarchy the host
/// has (on a hybrid host: the unified mount, with no v1 controllers): eBPF
/// device filter, cgroup.freeze, cgroup.kill, hugetlb on v2.
#[test]
#[ignore = "needs root"]
fn v2_ebpf_device_filter_freeze_kill() {
    require_root!();
    let host = Host::detect().unwrap();
    let (root, controllers) = match &host.layout {
        Layout::V2 { root } => (root.clone(), Vec::new()),
        Layout::Hybrid {
            unified,
            unified_controllers,
            ..
        } => (unified.clone(), unified_controllers.clone()),
        Layout::V1 { .. } => {
            eprintln!("SKIPPED: no cgroup2 hierarchy");
            return;
        }
    };
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // At the hierarchy's root, not under the test's own cgroup (see Cg::new).
    let rel: PathBuf = PathBuf::from(unique()).join("v2");
    let cfg = CgroupConfig {
        cgroups_path: rel.clone(),
        v1: BTreeMap::new(),
        unified: Some(UnifiedDir {
            dir: root.join(&rel),
            root: root.clone(),
            controllers,
        }),
        systemd: None,
    };
    let cg = Cg::wrap(for_existing(cfg), lock);
    let mut kid = Kid::spawn(
        "if echo hi > /dev/null; then echo null-open; else echo null-denied; fi; \
         if [ \"$(head -c1 /dev/zero | wc -c)\" = 1 ]; then echo zero-open; else echo zero-denied; fi",
    );
    cg.m.apply(kid.pid()).unwrap();
    // Last match wins: allow everything, then deny /dev/null.
    let rules = r#"{"devices": [{"allow": true, "access": "rwm"},
                                {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#;
    cg.m.set(&res(rules)).unwrap();
    // Re-applying replaces the program instead of stacking a second one.
    cg.m.set(&res(rules)).unwrap();
    let progs =
        hako_cgroups::device_programs(&cg.m.config().unified.as_ref().unwrap().dir).unwrap();
    assert_eq!(progs.len(), 1, "attached programs: {progs:?}");
    kid.release();
    let (_, out, _) = kid.finish(Duration::from_secs(10));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["null-denied", "zero-open"]
    );

    // v2 freezer and cgroup.kill.
    let kid2 = Kid::spawn("exec sleep 100");
    cg.m.apply(kid2.pid()).unwrap();
    cg.m.freeze().unwrap();
    assert_eq!(cg.m.state().unwrap(), FreezerState::Frozen);
    cg.m.thaw().unwrap();
    assert_eq!(cg.m.state().unwrap(), FreezerState::Thawed);
    let mut kid2 = kid2;
    cg.m.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = kid2.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    // hugetlb on v2 when the hierarchy offers it.
    let u = cg.m.config().unified.clone().unwrap();
    if u.controllers.iter().any(|c| c == "hugetlb") && u.dir.join("hugetlb.2MB.max").exists() {
        cg.m.set(&res(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
        ))
        .unwrap();
        assert_eq!(read(&u.dir.join("hugetlb.2MB.max")), "4194304");
        assert!(cg.m.stats().unwrap().hugetlb.contains_key("2MB"));
    } else {
        eprintln!("hugetlb on cgroup2 not checked: not offered here");
    }
}

#[test]
#[ignore = "needs root"]
fn errors_on_real_host_name_the_problem() {
    require_root!();
    let cg = Cg::new("errors");
    let kid = Kid::spawn("exec sleep 100");
    cg.m.apply(kid.pid()).unwrap();
    let e = cg.m.set(&res(
        r#"{"pids": {"limit": 5}, "blockIO": {"weight": 500}}"#,
    ));
    match (&cg.m.config().v1.get("blkio"), e) {
        (Some(d), Err(e))
            if !d.join("blkio.weight").exists() && !d.join("blkio.bfq.weight").exists() =>
        {
            let msg = e.to_string();
            assert!(
                msg.contains("blockIO.weight") && msg.contains("BFQ"),
                "{msg}"
            );
            // Validation happened before pids.max was written.
            assert_eq!(read(&dir(&cg, "pids").unwrap().join("pids.max")), "max");
        }
        (_, r) => eprintln!("blkio weight is supported here: {r:?}"),
    }
    if !cg.m.config().v1.contains_key("net_cls") {
        let msg =
            cg.m.set(&res(r#"{"network": {"classID": 1}}"#))
                .unwrap_err()
                .to_string();
        assert!(msg.contains("net_cls"), "{msg}");
    }
    // A write the kernel refuses names the path and the value.
    let msg =
        cg.m.set(&res(r#"{"cpu": {"cpus": "4096"}}"#))
            .unwrap_err()
            .to_string();
    assert!(
        msg.contains("write 4096 to ") && msg.contains("cpuset.cpus"),
        "{msg}"
    );
    drop(kid);
}
