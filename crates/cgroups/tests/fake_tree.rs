//! Unit-level tests against fake cgroupfs trees in a temp dir (no root):
//! exact files and values written, conversions, validation, freezer writes
//! and stats parsing, for cgroup v2 and v1.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hako_cgroups::{
    for_existing, manager_for_host, CgroupConfig, Error, FreezerState, Host, Layout,
};
use oci_spec::runtime::LinuxResources;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn touch(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (f, v) in files {
        fs::write(dir.join(f), v).unwrap();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

const V2_FILES: &[(&str, &str)] = &[
    (
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma",
    ),
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0"),
    ("cgroup.events", "populated 1\nfrozen 0\n"),
    ("memory.max", "max"),
    ("memory.low", "0"),
    ("memory.swap.max", "max"),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.max.burst", "0"),
    ("cpu.idle", "0"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("pids.max", "max"),
    ("io.weight", "default 100"),
    ("io.max", ""),
    ("hugetlb.2MB.max", "max"),
    ("hugetlb.2MB.rsvd.max", "max"),
    ("hugetlb.1GB.max", "max"),
    ("memory.high", "max"),
];

/// A fake pure-v2 host: root with controllers, container dir `/hako/c1`.
struct V2 {
    _t: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
}

fn v2_host() -> (V2, Host) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cg");
    touch(
        &root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    touch(
        &root.join("hako"),
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma",
            ),
            ("cgroup.subtree_control", "memory"),
        ],
    );
    let dir = root.join("hako/c1");
    touch(&dir, V2_FILES);
    let host = Host {
        layout: Layout::V2 { root: root.clone() },
        own: BTreeMap::from([(String::new(), PathBuf::from("/user.slice/me"))]),
    };
    (V2 { _t: t, root, dir }, host)
}

const FULL: &str = r#"{
  "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152,
             "kernel": 1, "kernelTCP": 2, "swappiness": 10, "disableOOMKiller": true},
  "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
          "cpus": "0-1", "mems": "0", "idle": 1},
  "pids": {"limit": 42},
  "blockIO": {"weight": 500,
              "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
              "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
              "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
              "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 7}],
              "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 8}]},
  "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}],
  "unified": {"memory.high": "900000"}
}"#;

#[test]
fn v2_full_resources_exact_writes() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    assert_eq!(m.config().unified.as_ref().unwrap().dir, fx.dir);
    let plan = m.plan(&res(FULL)).unwrap();
    let w: Vec<(String, String)> = plan.writes();
    let expect: Vec<(&str, &str)> = vec![
        ("memory.swap.max", "1048576"),
        ("memory.max", "1048576"),
        ("memory.low", "524288"),
        ("cpu.weight", "100"),
        ("cpu.max", "50000 100000"),
        ("cpu.max.burst", "1000"),
        ("cpu.idle", "1"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("pids.max", "42"),
        ("io.weight", "4950"), // 1 + (500-10)*9999/990
        ("io.weight", "8:0 1"),
        ("io.max", "8:0 rbps=1000"),
        ("io.max", "8:0 wbps=max"),
        ("io.max", "8:16 riops=7"),
        ("io.max", "8:16 wiops=8"),
        ("hugetlb.2MB.max", "4194304"),
        ("hugetlb.2MB.rsvd.max", "4194304"),
        ("hugetlb.1GB.max", "max"),
        ("memory.high", "900000"),
    ];
    let got: Vec<(&str, &str)> = w.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expect);

    m.set(&res(FULL)).unwrap();
    assert_eq!(read(&fx.dir.join("memory.max")), "1048576");
    assert_eq!(read(&fx.dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&fx.dir.join("pids.max")), "42");
    assert_eq!(read(&fx.dir.join("memory.high")), "900000");
}

#[test]
fn v2_bfq_weight_is_unconverted_and_unlimited_values() {
    let (fx, host) = v2_host();
    touch(&fx.dir, &[("io.bfq.weight", "default 100")]);
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let p = m
        .plan(&res(
            r#"{"blockIO": {"weight": 500}, "memory": {"limit": -1},
                "cpu": {"quota": -1}, "pids": {"limit": -1}}"#,
        ))
        .unwrap();
    let w = p.writes();
    assert!(w.contains(&("io.bfq.weight".into(), "500".into())), "{w:?}");
    assert!(w.contains(&("memory.max".into(), "max".into())), "{w:?}");
    assert!(
        w.contains(&("memory.swap.max".into(), "max".into())),
        "{w:?}"
    );
    assert!(w.contains(&("cpu.max".into(), "max".into())), "{w:?}");
    assert!(w.contains(&("pids.max".into(), "max".into())), "{w:?}");
}

#[test]
fn v2_validation_fails_before_any_write() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    // 64KB hugepages do not exist in the fake tree; memory comes first in
    // the plan and must not be written.
    let e = m
        .set(&res(
            r#"{"memory": {"limit": 1000}, "hugepageLimits": [{"pageSize": "64KB", "limit": 1}]}"#,
        ))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::MissingFile { .. }), "{msg}");
    assert!(msg.contains("hugetlb.64KB.max"), "{msg}");
    assert!(msg.contains("hugepageLimits[0]"), "{msg}");
    assert_eq!(read(&fx.dir.join("memory.max")), "max");

    // A controller not enabled for the cgroup is named as such.
    fs::remove_file(fx.dir.join("pids.max")).unwrap();
    fs::write(fx.dir.join("cgroup.controllers"), "memory cpu").unwrap();
    let msg = m
        .set(&res(r#"{"pids": {"limit": 5}}"#))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("pids controller is not enabled for this cgroup"),
        "{msg}"
    );

    // v1-only controllers on v2.
    let msg = m
        .set(&res(r#"{"network": {"classID": 1}}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("net_cls is a cgroup v1 controller"), "{msg}");

    // Out-of-range and inconsistent values.
    let msg = m
        .set(&res(r#"{"memory": {"limit": 100, "swap": 50}}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("memory.swap"), "{msg}");
    let msg = m
        .set(&res(r#"{"memory": {"swappiness": 101}}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("swappiness"), "{msg}");
    let msg = m
        .set(&res(r#"{"cpu": {"realtimeRuntime": 1000}}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("realtime"), "{msg}");
    let msg = m
        .set(&res(r#"{"blockIO": {"weight": 100}}"#))
        .map(|_| ())
        .and_then(|_| {
            fs::remove_file(fx.dir.join("io.weight")).unwrap();
            m.set(&res(r#"{"blockIO": {"weight": 100}}"#))
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("neither io.bfq.weight nor io.weight"), "{msg}");
}

#[test]
fn v2_unified_keys_are_checked() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    for bad in [
        "../memory.max",
        "a/b",
        ".hidden",
        "cgroup.procs",
        "cgroup.kill",
    ] {
        let r = res(&format!(r#"{{"unified": {{"{bad}": "1"}}}}"#));
        let e = m.set(&r).unwrap_err();
        assert!(matches!(e, Error::InvalidResource { .. }), "{bad}: {e}");
    }
    let e = m
        .set(&res(r#"{"unified": {"memory.nonexistent": "1"}}"#))
        .unwrap_err();
    assert!(
        e.to_string().contains("memory.nonexistent does not exist"),
        "{e}"
    );
    // Unified values are written after (and override) the derived ones.
    let p = m
        .plan(&res(
            r#"{"memory": {"limit": 5}, "unified": {"memory.max": "7"}}"#,
        ))
        .unwrap();
    assert_eq!(
        p.writes().last().unwrap(),
        &("memory.max".into(), "7".into())
    );
    m.set(&res(
        r#"{"memory": {"limit": 5}, "unified": {"memory.max": "7"}}"#,
    ))
    .unwrap();
    assert_eq!(read(&fx.dir.join("memory.max")), "7");
}

#[test]
fn v2_apply_enables_controllers_and_joins() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    m.apply(4242).unwrap();
    assert_eq!(read(&fx.dir.join("cgroup.procs")), "4242");
    // Root had nothing enabled: all of them at once.
    assert_eq!(
        read(&fx.root.join("cgroup.subtree_control")),
        "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    );
    // /hako already had memory: only the rest is added.
    assert_eq!(
        read(&fx.root.join("hako/cgroup.subtree_control")),
        "+cpuset +cpu +io +hugetlb +pids +rdma"
    );
    // The leaf itself is never touched (no internal processes rule).
    assert!(!fx.dir.join("cgroup.subtree_control").exists());
}

#[test]
fn v2_freezer_writes_and_state() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    assert_eq!(m.state().unwrap(), FreezerState::Thawed);
    // The fake kernel has already "frozen" it.
    fs::write(fx.dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    m.freeze().unwrap();
    assert_eq!(read(&fx.dir.join("cgroup.freeze")), "1");
    assert_eq!(m.state().unwrap(), FreezerState::Frozen);
    fs::write(fx.dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    assert_eq!(m.state().unwrap(), FreezerState::Freezing);
    m.thaw().unwrap();
    assert_eq!(read(&fx.dir.join("cgroup.freeze")), "0");
    assert_eq!(m.state().unwrap(), FreezerState::Thawed);
}

#[test]
fn v2_stats_and_oom_parsing() {
    let (fx, host) = v2_host();
    touch(
        &fx.dir,
        &[
            ("memory.current", "1000\n"),
            ("memory.max", "4096\n"),
            ("memory.peak", "2000\n"),
            ("memory.swap.current", "10\n"),
            ("memory.swap.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n"),
            ("memory.stat", "anon 100\nfile 200\nkernel 50\n"),
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.events", "max 4\n"),
        ],
    );
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.memory.usage.usage, 1000);
    assert_eq!(s.memory.usage.limit, 4096);
    assert_eq!(s.memory.usage.max, 2000);
    assert_eq!(s.memory.usage.failcnt, 3);
    assert_eq!(s.memory.swap.usage, 1010);
    assert_eq!(s.memory.swap.limit, u64::MAX);
    assert_eq!(s.memory.cache, 200);
    assert_eq!(s.memory.raw["anon"], 100);
    assert_eq!(s.cpu.usage.total, 10_000);
    assert_eq!(s.cpu.usage.user, 6_000);
    assert_eq!(s.cpu.usage.kernel, 4_000);
    assert_eq!(s.cpu.throttling.throttled_periods, 2);
    assert_eq!(s.cpu.throttling.throttled_time, 7_000);
    assert_eq!((s.pids.current, s.pids.limit), (3, 0));
    assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 8192);
    assert_eq!(s.blkio.io_serviced_recursive[0].value, 1);
    assert_eq!(s.hugetlb["2MB"].usage, 2097152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 4);
    assert_eq!(m.oom_kill_count().unwrap(), 2);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["memory"]["usage"]["usage"], 1000);
    assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 2);
    assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
}

#[test]
fn cgroups_path_resolution_and_saved_config() {
    let (fx, host) = v2_host();
    let dir_of = |p: Option<&str>| {
        manager_for_host(&host, p.map(Path::new), "c9")
            .map(|m| m.config().unified.as_ref().unwrap().dir.clone())
    };
    assert_eq!(dir_of(None).unwrap(), fx.root.join("hako/c9"));
    assert_eq!(dir_of(Some("/a/b")).unwrap(), fx.root.join("a/b"));
    // Relative: below our own cgroup (/user.slice/me).
    assert_eq!(
        dir_of(Some("x/y")).unwrap(),
        fx.root.join("user.slice/me/x/y")
    );
    for bad in ["/a/../../etc", "/", "system.slice:docker:abc"] {
        let e = dir_of(Some(bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidPath { .. }), "{bad}: {e}");
    }

    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let json = serde_json::to_string(m.config()).unwrap();
    let cfg: CgroupConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(&cfg, m.config());
    let again = for_existing(cfg);
    touch(&fx.dir, &[("cgroup.procs", "1\n2\n")]);
    touch(&fx.dir.join("sub"), &[("cgroup.procs", "3\n")]);
    assert_eq!(again.pids().unwrap(), vec![1, 2, 3]);
}

// ---------------------------------------------------------------- v1

struct V1 {
    _t: tempfile::TempDir,
    dirs: BTreeMap<&'static str, PathBuf>,
}

fn v1_host() -> (V1, Host) {
    let t = tempfile::tempdir().unwrap();
    let mut controllers = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    let files: &[(&str, &[(&str, &str)])] = &[
        (
            "memory",
            &[
                ("memory.limit_in_bytes", "9223372036854771712"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                ("memory.soft_limit_in_bytes", ""),
                ("memory.kmem.tcp.limit_in_bytes", ""),
                ("memory.swappiness", "60"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
                ),
            ],
        ),
        (
            "cpu",
            &[
                ("cpu.shares", ""),
                ("cpu.cfs_period_us", ""),
                ("cpu.cfs_quota_us", ""),
                ("cpu.cfs_burst_us", ""),
                ("cpu.rt_period_us", ""),
                ("cpu.rt_runtime_us", ""),
                ("cpu.idle", ""),
            ],
        ),
        ("cpuset", &[("cpuset.cpus", ""), ("cpuset.mems", "")]),
        ("pids", &[("pids.max", "max")]),
        (
            "blkio",
            &[
                ("blkio.bfq.weight", ""),
                ("blkio.bfq.weight_device", ""),
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_iops_device", ""),
            ],
        ),
        ("hugetlb", &[("hugetlb.2MB.limit_in_bytes", "")]),
        ("devices", &[("devices.allow", ""), ("devices.deny", "")]),
        ("freezer", &[("freezer.state", "THAWED")]),
        ("net_cls", &[("net_cls.classid", "")]),
    ];
    for (ctl, fs_) in files {
        let mp = t.path().join(ctl);
        touch(&mp, &[("cgroup.procs", "")]);
        let dir = mp.join("hako/c1");
        // Numeric files hold 0 until written; cpuset starts empty as in the kernel.
        let fs_: Vec<(&str, &str)> = fs_
            .iter()
            .map(|(f, v)| {
                (
                    *f,
                    if v.is_empty() && !f.starts_with("cpuset") {
                        "0"
                    } else {
                        v
                    },
                )
            })
            .collect();
        touch(&dir, &fs_);
        touch(&dir, &[("cgroup.procs", "")]);
        controllers.insert(ctl.to_string(), mp);
        dirs.insert(*ctl, dir);
    }
    let host = Host {
        layout: Layout::V1 { controllers },
        own: BTreeMap::new(),
    };
    (V1 { _t: t, dirs }, host)
}

#[test]
fn v1_full_resources_exact_writes() {
    let (fx, host) = v1_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let r = res(r#"{
      "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152,
                 "kernelTCP": 2, "swappiness": 10, "disableOOMKiller": true},
      "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10,
              "realtimeRuntime": 950, "realtimePeriod": 1000, "cpus": "0", "mems": "0", "idle": 0},
      "pids": {"limit": 10},
      "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 20}],
                  "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                  "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 9}]},
      "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
      "network": {"classID": 1048577},
      "devices": [{"allow": false, "access": "rwm"},
                  {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                  {"allow": true, "type": "b", "major": 8, "access": "m"},
                  {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]
    }"#);
    let got = m.plan(&r).unwrap().writes();
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        got,
        vec![
            // Current limit is unlimited: lower the limit first, then memsw.
            ("memory.limit_in_bytes", "1048576"),
            ("memory.memsw.limit_in_bytes", "2097152"),
            ("memory.soft_limit_in_bytes", "524288"),
            ("memory.kmem.tcp.limit_in_bytes", "2"),
            ("memory.swappiness", "10"),
            ("memory.oom_control", "1"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.cfs_burst_us", "10"),
            ("cpu.rt_period_us", "1000"),
            ("cpu.rt_runtime_us", "950"),
            ("cpu.idle", "0"),
            ("cpuset.cpus", "0"),
            ("cpuset.mems", "0"),
            ("pids.max", "10"),
            ("blkio.bfq.weight", "300"),
            ("blkio.bfq.weight_device", "8:0 20"),
            ("blkio.throttle.read_bps_device", "8:0 1000"),
            ("blkio.throttle.write_iops_device", "8:0 9"),
            ("hugetlb.2MB.limit_in_bytes", "2097152"),
            ("net_cls.classid", "1048577"),
            ("devices.deny", "a"),
            ("devices.deny", "a *:* rwm"),
            ("devices.allow", "c 1:3 rw"),
            ("devices.allow", "b 8:* m"),
            ("devices.deny", "c 1:3 w"),
        ]
    );
    m.set(&r).unwrap();
    assert_eq!(
        read(&fx.dirs["memory"].join("memory.limit_in_bytes")),
        "1048576"
    );
    assert_eq!(read(&fx.dirs["devices"].join("devices.deny")), "c 1:3 w");

    // Raising above a small current limit: memsw first, else the kernel
    // would see limit > memsw after the first write.
    fs::write(fx.dirs["memory"].join("memory.limit_in_bytes"), "1000").unwrap();
    let got = m
        .plan(&res(r#"{"memory": {"limit": 1048576, "swap": 2097152}}"#))
        .unwrap()
        .writes();
    assert_eq!(got[0].0, "memory.memsw.limit_in_bytes");
    assert_eq!(got[1].0, "memory.limit_in_bytes");
}

#[test]
fn v1_errors_name_the_missing_piece() {
    let (fx, host) = v1_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    fs::remove_file(fx.dirs["blkio"].join("blkio.bfq.weight")).unwrap();
    let msg = m
        .set(&res(
            r#"{"pids": {"limit": 3}, "blockIO": {"weight": 300}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("blockIO.weight")
            && msg.contains("neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ)"),
        "{msg}"
    );
    assert_eq!(
        read(&fx.dirs["pids"].join("pids.max")),
        "max",
        "nothing written"
    );
    let msg = m
        .set(&res(
            r#"{"network": {"priorities": [{"name": "eth0", "priority": 1}]}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("net_prio is a cgroup v1 controller and is not mounted"),
        "{msg}"
    );
    let msg = m
        .set(&res(r#"{"unified": {"memory.high": "1"}}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cgroup v1 only"), "{msg}");
    let msg = m
        .set(&res(r#"{"devices": [{"allow": true, "access": "rx"}]}"#))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("devices[0]"), "{msg}");
    // set() before apply() on a dir that does not exist.
    let other = manager_for_host(&host, Some(Path::new("/nope")), "x").unwrap();
    let e = other.set(&res(r#"{"pids": {"limit": 3}}"#)).unwrap_err();
    assert!(matches!(e, Error::NotCreated { .. }), "{e}");
}

#[test]
fn v1_stats_parsing_and_freezer() {
    let (fx, host) = v1_host();
    let mem = &fx.dirs["memory"];
    touch(
        mem,
        &[
            ("memory.stat", "cache 300\nrss 700\ntotal_cache 300\n"),
            ("memory.usage_in_bytes", "1000"),
            ("memory.max_usage_in_bytes", "1500"),
            ("memory.failcnt", "2"),
            ("memory.memsw.usage_in_bytes", "1100"),
        ],
    );
    let cpu = &fx.dirs["cpu"];
    touch(
        cpu,
        &[(
            "cpu.stat",
            "nr_periods 9\nnr_throttled 3\nthrottled_time 77\n",
        )],
    );
    touch(
        &fx.dirs["pids"],
        &[("pids.current", "4"), ("pids.max", "64")],
    );
    touch(
        &fx.dirs["blkio"],
        &[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 1\n8:0 Write 0\nTotal 1\n",
            ),
        ],
    );
    touch(
        &fx.dirs["hugetlb"],
        &[
            ("hugetlb.2MB.usage_in_bytes", "0"),
            ("hugetlb.2MB.max_usage_in_bytes", "2097152"),
            ("hugetlb.2MB.failcnt", "1"),
        ],
    );
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.memory.cache, 300);
    assert_eq!(s.memory.usage.usage, 1000);
    assert_eq!(s.memory.usage.max, 1500);
    assert_eq!(s.memory.usage.failcnt, 2);
    assert_eq!(s.memory.usage.limit, 9223372036854771712);
    assert_eq!(s.memory.swap.usage, 1100);
    assert_eq!(s.memory.raw["rss"], 700);
    assert_eq!(s.cpu.throttling.periods, 9);
    assert_eq!(s.cpu.throttling.throttled_time, 77);
    assert_eq!((s.pids.current, s.pids.limit), (4, 64));
    assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
    assert_eq!(s.hugetlb["2MB"].max, 2097152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 1);
    assert_eq!(m.oom_kill_count().unwrap(), 5);

    // A regular file "settles" immediately.
    m.freeze().unwrap();
    assert_eq!(read(&fx.dirs["freezer"].join("freezer.state")), "FROZEN");
    assert_eq!(m.state().unwrap(), FreezerState::Frozen);
    m.thaw().unwrap();
    assert_eq!(m.state().unwrap(), FreezerState::Thawed);
}

#[test]
fn device_filter_program_shape() {
    let rules: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_str(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": true, "type": "c", "major": 5, "access": "rwm"}]"#,
    )
    .unwrap();
    let p = hako_cgroups::compile_device_filter(&rules).unwrap();
    // 6 prologue + rule3 (type, major: 2 jumps + 2) + rule2 (type, access
    // mov/and/jump, major, minor + 2) + rule1 (match-all: 2, ends program).
    assert_eq!(p.len(), 6 + 4 + 8 + 2);
    // Every jump lands inside the program.
    for (i, insn) in p.iter().enumerate() {
        if insn.is_jump() {
            let target = i as i64 + 1 + insn.off() as i64;
            assert!(target > i as i64 && (target as usize) < p.len(), "insn {i}");
        }
    }
    // No catch-all rule: default deny appended.
    let p = hako_cgroups::compile_device_filter(&rules[1..]).unwrap();
    assert_eq!(p.len(), 6 + 4 + 8 + 2);
    assert_eq!(p[p.len() - 2].imm(), 0);
}

#[test]
fn v2_oom_notifier_is_inotify_on_memory_events() {
    use std::os::fd::AsRawFd;
    let (fx, host) = v2_host();
    touch(&fx.dir, &[("memory.events", "oom 0\noom_kill 0\n")]);
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    let fd = m.oom_notifier().unwrap();
    let poll = |fd: i32| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is a valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, 100) }
    };
    assert_eq!(poll(fd.as_raw_fd()), 0);
    fs::write(fx.dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
    assert_eq!(poll(fd.as_raw_fd()), 1);
    assert_eq!(m.oom_kill_count().unwrap(), 1);
}

#[test]
fn swap_unlimited_without_swap_accounting_is_skipped() {
    let (fx, host) = v2_host();
    fs::remove_file(fx.dir.join("memory.swap.max")).unwrap();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    m.set(&res(r#"{"memory": {"limit": -1}}"#)).unwrap();
    let e = m
        .set(&res(r#"{"memory": {"limit": 100, "swap": 200}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("swap accounting"), "{e}");

    let (fx, host) = v1_host();
    fs::remove_file(fx.dirs["memory"].join("memory.memsw.limit_in_bytes")).unwrap();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    m.set(&res(r#"{"memory": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(&fx.dirs["memory"].join("memory.limit_in_bytes")), "-1");
}

/// runc's "unset" values (docs/cgroups-resources.md), one row each: what
/// is written on v2 and on v1 for the value, where `[]` means nothing.
#[test]
fn runc_zero_and_unset_rules_per_field() {
    type Row = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
    );
    let rows: &[Row] = &[
        // (resources, v2 writes, v1 writes)
        (r#"{"cpu": {"shares": 0}}"#, &[], &[]),
        (
            r#"{"cpu": {"shares": 1024}}"#,
            &[("cpu.weight", "100")],
            &[("cpu.shares", "1024")],
        ),
        (r#"{"cpu": {"quota": 0}}"#, &[], &[]),
        (r#"{"cpu": {"period": 0}}"#, &[], &[]),
        (
            r#"{"cpu": {"quota": 0, "period": 0, "shares": 0}}"#,
            &[],
            &[],
        ),
        (
            r#"{"cpu": {"quota": -1}}"#,
            &[("cpu.max", "max")],
            &[("cpu.cfs_quota_us", "-1")],
        ),
        (
            r#"{"cpu": {"realtimeRuntime": 0, "realtimePeriod": 0}}"#,
            &[],
            &[],
        ),
        (r#"{"cpu": {"cpus": "", "mems": ""}}"#, &[], &[]),
        (r#"{"memory": {"limit": 0}}"#, &[], &[]),
        (r#"{"memory": {"reservation": 0}}"#, &[], &[]),
        (r#"{"memory": {"kernelTCP": 0}}"#, &[], &[]),
        (r#"{"memory": {"swap": 0}}"#, &[], &[]),
        (
            r#"{"memory": {"swappiness": 18446744073709551615}}"#,
            &[],
            &[],
        ),
        (
            r#"{"memory": {"limit": -1}}"#,
            &[("memory.swap.max", "max"), ("memory.max", "max")],
            &[
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1"),
            ],
        ),
        (r#"{"pids": {"limit": 0}}"#, &[], &[]),
        (
            r#"{"pids": {"limit": -1}}"#,
            &[("pids.max", "max")],
            &[("pids.max", "max")],
        ),
        (
            r#"{"pids": {"limit": 7}}"#,
            &[("pids.max", "7")],
            &[("pids.max", "7")],
        ),
        (r#"{"blockIO": {"weight": 0}}"#, &[], &[]),
        (r#"{"blockIO": {"leafWeight": 0}}"#, &[], &[]),
        (
            r#"{"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 0}]}}"#,
            &[],
            &[],
        ),
        (r#"{"network": {"classID": 0}}"#, &[], &[]),
        // What Docker sends for a plain `docker run` / `docker update`.
        (
            r#"{"cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
                "memory": {"limit": 0, "reservation": 0, "swap": 0},
                "blockIO": {"weight": 0}, "pids": {"limit": 0}}"#,
            &[],
            &[],
        ),
    ];
    for (json, v2_expect, v1_expect) in rows {
        let (_fx2, host2) = v2_host();
        let m2 = manager_for_host(&host2, Some(Path::new("/hako/c1")), "c1").unwrap();
        let got = m2.plan(&res(json)).unwrap().writes();
        let want: Vec<(String, String)> = v2_expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "v2: {json}");
        m2.set(&res(json)).unwrap();

        let (_fx1, host1) = v1_host();
        let m1 = manager_for_host(&host1, Some(Path::new("/hako/c1")), "c1").unwrap();
        let got = m1.plan(&res(json)).unwrap().writes();
        let want: Vec<(String, String)> = v1_expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "v1: {json}");
    }
}

/// A value the kernel refuses after earlier values were written: the
/// earlier ones are put back and the error names the field.
#[test]
fn refused_write_restores_what_was_written() {
    let (fx, host) = v2_host();
    let m = manager_for_host(&host, Some(Path::new("/hako/c1")), "c1").unwrap();
    // A directory where pids.max should be: write(2) fails after
    // memory.max was already written.
    fs::remove_file(fx.dir.join("pids.max")).unwrap();
    fs::create_dir(fx.dir.join("pids.max")).unwrap();
    let e = m
        .plan(&res(
            r#"{"memory": {"limit": 1048576}, "pids": {"limit": 5}}"#,
        ))
        .unwrap()
        .execute()
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("pids.limit: "), "{msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert_eq!(read(&fx.dir.join("memory.max")), "max");
    assert_eq!(read(&fx.dir.join("memory.swap.max")), "max");
}
