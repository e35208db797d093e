//! hako-runc's systemd cgroup driver (issue 12), on a host with systemd as
//! PID 1 and cgroup2 only. These tests run in the VM stage
//! (scripts/vm-tests.sh), not on the development host, which has no
//! systemd: Cargo.toml builds this file only when asked for by name
//! (`test = false`), so a host run neither runs nor skips it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// `hako-runc --systemd-cgroup …` on this bundle.
fn sd(b: &Bundle, args: &[&str]) -> std::process::Output {
    let mut a = vec!["--systemd-cgroup"];
    a.extend_from_slice(args);
    b.runc(&a)
}

fn run_detached(b: &Bundle, id: &str) {
    let p = b.path().to_string_lossy().into_owned();
    ok(&sd(b, &["run", "-d", "-b", &p, id]));
}

/// `systemctl show UNIT -p PROP --value`.
fn show(unit: &str, prop: &str) -> String {
    let o = Command::new("systemctl")
        .args(["show", unit, "-p", prop, "--value"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn unit_gone(unit: &str) -> bool {
    show(unit, "LoadState") == "not-found"
}

fn scope_dir(slice_path: &str, unit: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(slice_path).join(unit)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn systemd_host() {
    assert!(
        Path::new("/run/systemd/system").exists()
            && Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "these tests need systemd as PID 1 on a cgroup2 host (the VM stage)"
    );
}

#[test]
#[ignore = "needs root"]
fn the_container_is_a_scope_with_its_limits() {
    need_root!();
    systemd_host();
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = "system.slice:hako:sd1".into();
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 20},
        "cpu": {"quota": 50000, "period": 100000, "shares": 1024}
    });
    b.args(&["sleep", "600"]);
    run_detached(&b, "sd1");
    let unit = "hako-sd1.scope";
    let dir = scope_dir("system.slice", unit);
    let pid = b.state("sd1")["pid"].as_i64().unwrap();
    assert_eq!(
        read(format!("/proc/{pid}/cgroup").into()),
        "0::/system.slice/hako-sd1.scope"
    );
    // The limits, in the kernel and as systemd knows them.
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(read(dir.join("pids.max")), "20");
    assert_eq!(read(dir.join("cpu.max")), "50000 100000");
    assert_eq!(show(unit, "MemoryMax"), "67108864");
    assert_eq!(show(unit, "TasksMax"), "20");
    assert_eq!(show(unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(show(unit, "Delegate"), "yes");
    assert_eq!(show(unit, "ActiveState"), "active");
    assert_eq!(show(unit, "OOMPolicy"), "continue");

    // update: both views change.
    ok(&sd(
        &b,
        &["update", "--memory", "128m", "--pids-limit", "30", "sd1"],
    ));
    assert_eq!(read(dir.join("memory.max")), "134217728");
    assert_eq!(show(unit, "MemoryMax"), "134217728");
    assert_eq!(show(unit, "TasksMax"), "30");

    // pause / resume through the unit's freezer.
    ok(&sd(&b, &["pause", "sd1"]));
    assert_eq!(b.state("sd1")["status"], "paused");
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    ok(&sd(&b, &["resume", "sd1"]));
    assert_eq!(b.state("sd1")["status"], "running");

    // events --stats from the scope.
    let o = ok(&sd(&b, &["events", "--stats", "sd1"]));
    let v: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["data"]["pids"]["current"], 1, "{v}");

    // delete: no unit, no cgroup left; the name can be used again.
    ok(&sd(&b, &["kill", "sd1", "KILL"]));
    wait_for(|| b.state("sd1")["status"] == "stopped", "sd1 to stop");
    ok(&sd(&b, &["delete", "sd1"]));
    assert!(unit_gone(unit), "{}", show(unit, "LoadState"));
    assert!(!dir.exists());
    run_detached(&b, "sd1");
    assert_eq!(show(unit, "ActiveState"), "active");
    ok(&sd(&b, &["delete", "--force", "sd1"]));
    assert!(unit_gone(unit));
}

#[test]
#[ignore = "needs root"]
fn default_path_nested_slices_and_properties() {
    need_root!();
    systemd_host();
    // No cgroupsPath: system.slice:hako:<id>.
    let mut b = Bundle::new();
    b.config["annotations"] = json!({
        "org.systemd.property.TimeoutStopUSec": "uint64 5000000",
        "org.systemd.property.CollectMode": "'inactive-or-failed'"
    });
    b.args(&["sleep", "600"]);
    run_detached(&b, "sd2");
    let unit = "hako-sd2.scope";
    let pid = b.state("sd2")["pid"].as_i64().unwrap();
    assert_eq!(
        read(format!("/proc/{pid}/cgroup").into()),
        "0::/system.slice/hako-sd2.scope"
    );
    assert_eq!(show(unit, "TimeoutStopUSec"), "5s");
    assert_eq!(show(unit, "CollectMode"), "inactive-or-failed");
    ok(&sd(&b, &["delete", "--force", "sd2"]));
    assert!(unit_gone(unit));

    // A nested slice is laid out as systemd does (hako-t.slice/…).
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = "hako-t.slice:x:sd3".into();
    b.args(&["sleep", "600"]);
    run_detached(&b, "sd3");
    let pid = b.state("sd3")["pid"].as_i64().unwrap();
    assert_eq!(
        read(format!("/proc/{pid}/cgroup").into()),
        "0::/hako.slice/hako-t.slice/x-sd3.scope"
    );
    ok(&sd(&b, &["delete", "--force", "sd3"]));
    assert!(unit_gone("x-sd3.scope"));
    let _ = Command::new("systemctl")
        .args(["stop", "hako-t.slice", "hako.slice"])
        .status();
}

#[test]
#[ignore = "needs root"]
fn a_killed_container_is_deleted_with_its_unit() {
    need_root!();
    systemd_host();
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = "system.slice:hako:sd4".into();
    b.args(&["sleep", "600"]);
    let p = b.path().to_string_lossy().into_owned();
    ok(&sd(&b, &["create", "-b", &p, "sd4"]));
    let pid = b.state("sd4")["pid"].as_i64().unwrap();
    assert_eq!(show("hako-sd4.scope", "ActiveState"), "active");
    // SAFETY: kill(2) of a pid we just read; it is the container's init.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    ok(&sd(&b, &["delete", "--force", "sd4"]));
    assert!(unit_gone("hako-sd4.scope"));
    assert!(!scope_dir("system.slice", "hako-sd4.scope").exists());
}

#[test]
#[ignore = "needs root"]
fn oom_kills_in_the_scope_are_reported() {
    need_root!();
    systemd_host();
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = "system.slice:hako:sd5".into();
    b.config["linux"]["resources"] = json!({"memory": {"limit": 16 << 20, "swap": 16 << 20}});
    b.args(&["sleep", "600"]);
    run_detached(&b, "sd5");
    // Watch events while something allocates past the limit.
    let mut ev = Command::new(bin());
    ev.arg("--root").arg(b.state_root()).args([
        "--systemd-cgroup",
        "events",
        "--interval",
        "1s",
        "sd5",
    ]);
    let (mut ev, rx, reader) = line_stream(ev);
    let o = sd(&b, &["exec", "sd5", "sh", "-c", "tail /dev/zero"]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let oom = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) if l.contains("\"type\":\"oom\"") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let events = read(scope_dir("system.slice", "hako-sd5.scope").join("memory.events"));
    ok(&sd(&b, &["delete", "--force", "sd5"]));
    let _ = ev.wait();
    let _ = reader.join();
    assert!(oom, "events reported no oom ({events})");
    assert!(!events.contains("oom_kill 0"), "{events}");
}

#[test]
#[ignore = "needs root"]
fn bad_input_is_one_line_and_leaves_nothing() {
    need_root!();
    systemd_host();
    for (path, ann, what) in [
        (
            "a:b",
            None,
            "cgroupsPath a:b: the systemd driver takes slice:prefix:name",
        ),
        ("system:hako:sd6", None, "is not a slice name"),
        (
            "system.slice:hako:sd6",
            Some(("org.systemd.property.TimeoutStopUSec", "uint64 x")),
            "annotations.org.systemd.property.TimeoutStopUSec: cannot parse",
        ),
        (
            "system.slice:hako:sd6",
            Some(("org.systemd.property.NoSuchProperty", "true")),
            "systemd: start unit hako-sd6.scope",
        ),
    ] {
        let mut b = Bundle::new();
        b.config["linux"]["cgroupsPath"] = path.into();
        if let Some((k, v)) = ann {
            b.config["annotations"] = json!({ k: v });
        }
        b.args(&["true"]);
        let p = b.path().to_string_lossy().into_owned();
        let o = sd(&b, &["run", "-b", &p, "sd6"]);
        assert_eq!(o.status.code(), Some(1), "{path}");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{path}: {err}");
        assert!(err.contains(what), "{path}: {err}");
        assert!(!b.state_root().join("sd6").exists(), "{path}: state left");
        assert!(unit_gone("hako-sd6.scope"), "{path}: unit left");
    }
}

/// The engine (`hako`) with its own roots and settings under `dir`, as
/// root or, rootless, as `user` (with that user's session bus).
fn engine(dir: &Path, user: Option<(&str, u32)>, args: &[&str]) -> std::process::Output {
    let hako = env!("CARGO_BIN_EXE_hako");
    let vars = [
        format!("HAKO_DATA_DIR={}", dir.join("data").display()),
        format!("HAKO_RUN_DIR={}", dir.join("run").display()),
        format!("HAKO_CONFIG={}", dir.join("hako.toml").display()),
        "HAKO_NFT_TABLE=hakovm".to_string(),
    ];
    let mut c = match user {
        None => {
            let mut c = Command::new(hako);
            c.envs(vars.iter().map(|v| v.split_once('=').unwrap()));
            c
        }
        Some((name, uid)) => {
            let mut c = Command::new("runuser");
            c.args(["-u", name, "--", "env"])
                .arg(format!("XDG_RUNTIME_DIR=/run/user/{uid}"))
                .args(&vars)
                .arg(hako);
            c
        }
    };
    c.args(args);
    run_with_timeout(c, std::time::Duration::from_secs(60))
}

/// A directory for one engine, owned by `uid`, with the busybox image.
fn engine_dir(user: Option<(&str, u32)>) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("hako-vm-e-")
        .tempdir()
        .unwrap();
    std::fs::write(d.path().join("hako.toml"), "").unwrap();
    if let Some((_, uid)) = user {
        std::os::unix::fs::chown(d.path(), Some(uid), Some(uid)).unwrap();
        std::os::unix::fs::chown(d.path().join("hako.toml"), Some(uid), Some(uid)).unwrap();
    }
    let rootfs = template().join("rootfs");
    ok(&engine(
        d.path(),
        user,
        &["import", rootfs.to_str().unwrap(), "busybox"],
    ));
    d
}

fn engine_json(dir: &Path, user: Option<(&str, u32)>, name: &str) -> serde_json::Value {
    let o = ok(&engine(dir, user, &["inspect", name]));
    serde_json::from_str::<serde_json::Value>(&o).unwrap()[0].clone()
}

#[test]
#[ignore = "needs root"]
fn the_engine_puts_containers_in_systemd_scopes_by_default() {
    need_root!();
    systemd_host();
    let d = engine_dir(None);
    let e = |args: &[&str]| engine(d.path(), None, args);
    #[rustfmt::skip]
    ok(&e(&["run", "-d", "--name", "s1", "--network", "none", "--memory", "64m", "busybox", "sleep", "600"]));
    let i = engine_json(d.path(), None, "s1");
    assert_eq!(i["HostConfig"]["CgroupManager"], "systemd");
    let id = i["Id"].as_str().unwrap().to_string();
    let pid = i["State"]["Pid"].as_i64().unwrap();
    let unit = format!("hako-{id}.scope");
    let dir = scope_dir("machine.slice", &unit);
    assert_eq!(
        read(format!("/proc/{pid}/cgroup").into()),
        format!("0::/machine.slice/{unit}")
    );
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(show(&unit, "MemoryMax"), "67108864");
    // update: the unit and the files.
    ok(&e(&[
        "update",
        "--memory",
        "32m",
        "--pids-limit",
        "40",
        "s1",
    ]));
    assert_eq!(read(dir.join("memory.max")), "33554432");
    assert_eq!(show(&unit, "MemoryMax"), "33554432");
    assert_eq!(read(dir.join("pids.max")), "40");
    // pause, stats, stop, rm: no unit and no cgroup left.
    ok(&e(&["pause", "s1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    assert_eq!(
        engine_json(d.path(), None, "s1")["State"]["Status"],
        "paused"
    );
    ok(&e(&["unpause", "s1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "0");
    let s = ok(&e(&["stats", "--no-stream", "s1"]));
    assert!(s.contains("/ 32MiB"), "{s}");
    ok(&e(&["rm", "-f", "s1"]));
    assert!(unit_gone(&unit), "{}", show(&unit, "LoadState"));
    assert!(!dir.exists());
    // --cgroup-manager cgroupfs: the runtime's own /hako/<id>.
    #[rustfmt::skip]
    ok(&e(&["--cgroup-manager", "cgroupfs", "run", "-d", "--name", "f1", "--network", "none", "busybox", "sleep", "600"]));
    let i = engine_json(d.path(), None, "f1");
    assert_eq!(i["HostConfig"]["CgroupManager"], "cgroupfs");
    let id = i["Id"].as_str().unwrap();
    let pid = i["State"]["Pid"].as_i64().unwrap();
    assert_eq!(
        read(format!("/proc/{pid}/cgroup").into()),
        format!("0::/hako/{id}")
    );
    ok(&e(&["rm", "-f", "f1"]));
    assert!(!Path::new(&format!("/sys/fs/cgroup/hako/{id}")).exists());
}

/// What the journal says about `uid`'s session (for a failure message).
fn session_diag(uid: u32) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ls -la /run/user/{uid}; systemctl --no-pager status user@{uid}.service; \
             journalctl --no-pager -n 40 -u user@{uid}.service -u user-runtime-dir@{uid}.service; \
             journalctl --no-pager -n 30 _UID={uid}"
        ))
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The VM's user with a systemd user session (its manager started here,
/// as logind does at login or for a lingering user).
fn session_user() -> (&'static str, u32) {
    let o = Command::new("id")
        .args(["-u", "hakouser"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let st = Command::new("systemctl")
        .arg("start")
        .arg(format!("user@{uid}.service"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "systemctl start user@{uid}.service:\n{}",
        session_diag(uid)
    );
    let bus = format!("/run/user/{uid}/bus");
    let t0 = std::time::Instant::now();
    while !Path::new(&bus).exists() {
        if t0.elapsed() > std::time::Duration::from_secs(60) {
            panic!(
                "no {bus} 60 s after user@{uid}.service started:\n{}",
                session_diag(uid)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ("hakouser", uid)
}

#[test]
#[ignore = "needs root"]
fn rootless_containers_get_limits_through_the_users_systemd() {
    need_root!();
    systemd_host();
    let user = Some(session_user());
    let uid = user.unwrap().1;
    // hako-runc itself, as the user, with --systemd-cgroup: the user's
    // manager makes the scope and delegates it. The bundle is the one
    // `hako-runc spec --rootless` writes for the user.
    let bdir = tempfile::Builder::new()
        .prefix("hako-vm-rl-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(bdir.path(), Some(uid), Some(uid)).unwrap();
    let state = bdir.path().join("state");
    let runc = |args: &[&str]| {
        let mut c = Command::new("runuser");
        c.args(["-u", "hakouser", "--", "env"])
            .arg(format!("XDG_RUNTIME_DIR=/run/user/{uid}"))
            .arg(bin())
            .arg("--root")
            .arg(&state)
            .arg("--systemd-cgroup")
            .args(args);
        run_with_timeout(c, std::time::Duration::from_secs(60))
    };
    let bp = bdir.path().to_string_lossy().into_owned();
    ok(&runc(&["spec", "--rootless", "-b", &bp]));
    let cfg = bdir.path().join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["root"]["path"] = template()
        .join("rootfs")
        .to_string_lossy()
        .into_owned()
        .into();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = json!(["sleep", "600"]);
    c["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
    std::fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
    ok(&runc(&["run", "-d", "-b", &bp, "r1"]));
    let st: serde_json::Value = serde_json::from_str(&ok(&runc(&["state", "r1"]))).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let manager = format!("user.slice/user-{uid}.slice/user@{uid}.service");
    let cg = read(format!("/proc/{pid}/cgroup").into());
    assert_eq!(cg, format!("0::/{manager}/user.slice/hako-r1.scope"));
    let dir = scope_dir(&format!("{manager}/user.slice"), "hako-r1.scope");
    assert_eq!(read(dir.join("memory.max")), "67108864");
    ok(&runc(&["delete", "-f", "r1"]));
    assert!(!dir.exists());

    // The engine, rootless: the same, by default.
    let d = engine_dir(user);
    #[rustfmt::skip]
    ok(&engine(d.path(), user, &["run", "-d", "--name", "r2", "--network", "none", "--memory", "64m", "busybox", "sleep", "600"]));
    let i = engine_json(d.path(), user, "r2");
    assert_eq!(i["HostConfig"]["CgroupManager"], "systemd");
    let id = i["Id"].as_str().unwrap().to_string();
    let pid = i["State"]["Pid"].as_i64().unwrap();
    let unit = format!("hako-{id}.scope");
    let cg = read(format!("/proc/{pid}/cgroup").into());
    assert_eq!(cg, format!("0::/{manager}/user.slice/{unit}"));
    let dir = scope_dir(&format!("{manager}/user.slice"), &unit);
    assert_eq!(read(dir.join("memory.max")), "67108864");
    // pause and unpause through the delegated scope's freezer; exec works.
    ok(&engine(d.path(), user, &["pause", "r2"]));
    assert_eq!(
        engine_json(d.path(), user, "r2")["State"]["Status"],
        "paused"
    );
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    ok(&engine(d.path(), user, &["unpause", "r2"]));
    assert_eq!(
        engine_json(d.path(), user, "r2")["State"]["Status"],
        "running"
    );
    let out = ok(&engine(d.path(), user, &["exec", "r2", "id", "-u"]));
    assert_eq!(out.trim(), "0");
    ok(&engine(d.path(), user, &["rm", "-f", "r2"]));
    assert!(!dir.exists());
}

/// A private copy of the busybox rootfs for a client's `--rootfs` (the
/// clients write mount points into it).
fn rootfs_copy(dir: &Path) -> PathBuf {
    let r = dir.join("rootfs");
    let st = Command::new("cp")
        .arg("-a")
        .arg(template().join("rootfs"))
        .arg(&r)
        .status()
        .unwrap();
    assert!(st.success());
    r
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// The scope a process is in (`0::/…/<unit>.scope`): (its directory, unit).
fn scope_of(pid: i64) -> (PathBuf, String) {
    let cg = read(format!("/proc/{pid}/cgroup").into());
    let rel = cg.strip_prefix("0::").unwrap_or(&cg).to_string();
    let unit = rel.rsplit('/').next().unwrap().to_string();
    assert!(unit.ends_with(".scope"), "{cg}");
    (
        Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')),
        unit,
    )
}

/// podman with its own roots under `d`, the systemd cgroup manager, no
/// network and hako-runc as its runtime.
fn podman_at(d: &Path) -> impl Fn(&[&str]) -> std::process::Output + '_ {
    std::fs::write(
        d.join("containers.conf"),
        "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"systemd\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    move |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "systemd"])
            .args(["--runtime", bin()])
            .args(args);
        run_with_timeout(c, std::time::Duration::from_secs(90))
    }
}

#[test]
#[ignore = "needs root"]
fn podman_drives_hako_runc_with_systemd_cgroups() {
    need_root!();
    systemd_host();
    let d = tempfile::Builder::new()
        .prefix("hako-vm-pod-")
        .tempdir()
        .unwrap();
    let rootfs = rootfs_copy(d.path());
    let r = rootfs.to_str().unwrap();
    let podman = podman_at(d.path());
    // run --rm: output and exit code.
    let o = podman(&["run", "--rm", "--rootfs", r, "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (Some(3), "hi"),
        "{}",
        stderr(&o)
    );
    // -d with a memory limit: a scope systemd knows, with the limit.
    let id = ok(&podman(&[
        "run", "-d", "--name", "p1", "--memory", "64m", "--rootfs", r, "sleep", "600",
    ]));
    let id = id.trim();
    let pid: i64 = ok(&podman(&["inspect", "--format", "{{.State.Pid}}", "p1"]))
        .trim()
        .parse()
        .unwrap();
    let (dir, unit) = scope_of(pid);
    assert_eq!(unit, format!("libpod-{id}.scope"));
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(show(&unit, "MemoryMax"), "67108864");
    // exec: output and exit code.
    let o = podman(&["exec", "p1", "sh", "-c", "echo x; exit 4"]);
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (Some(4), "x"),
        "{}",
        stderr(&o)
    );
    // pause / unpause through the scope's freezer.
    ok(&podman(&["pause", "p1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    ok(&podman(&["unpause", "p1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "0");
    // stop, rm: no unit, no cgroup.
    ok(&podman(&["stop", "-t", "2", "p1"]));
    ok(&podman(&["rm", "p1"]));
    assert!(unit_gone(&unit), "{}", show(&unit, "LoadState"));
    assert!(!dir.exists());
}

#[test]
#[ignore = "needs root"]
fn podman_checkpoints_and_restores_through_hako_runc() {
    need_root!();
    systemd_host();
    let d = tempfile::Builder::new()
        .prefix("hako-vm-podck-")
        .tempdir()
        .unwrap();
    let rootfs = rootfs_copy(d.path());
    let r = rootfs.to_str().unwrap();
    let podman = podman_at(d.path());
    let counted = || -> Vec<u64> {
        stdout(&podman(&["logs", "pc"]))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    ok(&podman(&[
        "run",
        "-d",
        "--name",
        "pc",
        "--rootfs",
        r,
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
    ]));
    wait_for(|| counted().len() >= 5, "the counter to count");
    ok(&podman(&["container", "checkpoint", "pc"]));
    let state = ok(&podman(&["inspect", "--format", "{{.State.Status}}", "pc"]));
    assert_eq!(state.trim(), "exited");
    let last = *counted().last().unwrap();
    ok(&podman(&["container", "restore", "pc"]));
    let state = ok(&podman(&["inspect", "--format", "{{.State.Status}}", "pc"]));
    assert_eq!(state.trim(), "running");
    wait_for(
        || counted().iter().any(|n| *n > last + 3),
        "the restored counter to go on",
    );
    let c = counted();
    let at = c.iter().position(|n| *n == last).unwrap();
    assert_eq!(c[at + 1], last + 1, "continues from the checkpoint: {c:?}");
    ok(&podman(&["rm", "-f", "pc"]));
}

/// A private containerd (no CRI), killed when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: std::process::Child,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("hako-vm-ctrd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/ctrd.sock\"\n[ttrpc]\n  address = \"{d}/ctrd.sock.ttrpc\"\n\
             [metrics]\n  address = \"\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, daemon };
        wait_for(|| c.ctr(&["version"]).status.success(), "containerd");
        c
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.dir.path().join("ctrd.sock"))
            .args(args);
        run_with_timeout(c, std::time::Duration::from_secs(90))
    }
}

#[test]
#[ignore = "needs root"]
fn containerd_drives_hako_runc_with_systemd_cgroups() {
    need_root!();
    systemd_host();
    let c = Containerd::start();
    let rootfs = rootfs_copy(c.dir.path());
    let r = rootfs.to_str().unwrap();
    // ctr wants the systemd cgroupsPath spelled out (kubelet's form).
    let run = |extra: &[&str], id: &str, args: &[&str]| {
        let cg = format!("system.slice:ctr:{id}");
        let mut a = vec!["run", "--runc-binary", bin(), "--runc-systemd-cgroup"];
        a.extend_from_slice(&["--cgroup", &cg, "--rootfs"]);
        a.extend_from_slice(extra);
        a.push(r);
        a.push(id);
        a.extend_from_slice(args);
        c.ctr(&a)
    };
    // run --rm: output and exit code.
    let o = run(&["--rm"], "c0", &["sh", "-c", "echo hi; exit 3"]);
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (Some(3), "hi"),
        "{}",
        stderr(&o)
    );
    // -d with a memory limit: a scope systemd knows, with the limit.
    ok(&run(
        &["-d", "--memory-limit", "67108864"],
        "c1",
        &["sleep", "600"],
    ));
    let ls = ok(&c.ctr(&["task", "ls"]));
    let pid: i64 = ls
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"c1")).then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no task c1 in {ls}"));
    let (dir, unit) = scope_of(pid);
    assert_eq!(dir, scope_dir("system.slice", "ctr-c1.scope"));
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(show(&unit, "MemoryMax"), "67108864");
    // exec: output and exit code.
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c1",
        "sh",
        "-c",
        "echo x; exit 4",
    ]);
    assert_eq!(
        (code(&o), stdout(&o).trim()),
        (Some(4), "x"),
        "{}",
        stderr(&o)
    );
    // pause / resume.
    ok(&c.ctr(&["task", "pause", "c1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    ok(&c.ctr(&["task", "resume", "c1"]));
    assert_eq!(read(dir.join("cgroup.freeze")), "0");
    // Stop (a container's PID 1 without a handler ignores SIGTERM, so
    // KILL) and remove: no unit, no cgroup.
    ok(&c.ctr(&["task", "kill", "-s", "SIGKILL", "c1"]));
    wait_for(
        || !Path::new(&format!("/proc/{pid}")).exists(),
        "c1 to stop",
    );
    ok(&c.ctr(&["task", "delete", "c1"]));
    ok(&c.ctr(&["container", "delete", "c1"]));
    assert!(unit_gone(&unit), "{}", show(&unit, "LoadState"));
    assert!(!dir.exists());
}

/// `create` SIGKILLed at moments across its whole run, then `delete -f`
/// (what containerd's shim does after a crash): no unit, no cgroup, no
/// state, no process left, whatever the moment was.
#[test]
#[ignore = "needs root"]
fn create_killed_at_any_moment_leaves_nothing_after_delete() {
    need_root!();
    systemd_host();
    let mut b = Bundle::new();
    b.args(&["sleep", "600"]);
    b.write();
    let p = b.path().to_string_lossy().into_owned();
    // The same id each time: a leftover of one round fails the next.
    let id = "sdkill";
    let unit = "hako-sdkill.scope";
    for delay_ms in [
        0u64, 1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 800,
    ] {
        let mark = format!("HAKO_TEST_MARK=sdkill-{delay_ms}");
        let mut child = Command::new(bin())
            .env("HAKO_TEST_MARK", &mark[15..])
            .arg("--root")
            .arg(b.state_root())
            .args(["--systemd-cgroup", "create", "-b", &p, id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // delete -f: fine whether or not create got as far as its state.
        let o = sd(&b, &["delete", "--force", id]);
        assert!(
            o.status.success() || stderr(&o).contains("does not exist"),
            "after {delay_ms} ms: {}",
            stderr(&o)
        );
        // A scope whose processes all died is stopped by systemd itself.
        let t0 = std::time::Instant::now();
        while !unit_gone(unit) || scope_dir("system.slice", unit).exists() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "after {delay_ms} ms: {unit} is {} (members: {:?})",
                show(unit, "ActiveState"),
                std::fs::read_to_string(scope_dir("system.slice", unit).join("cgroup.procs"))
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            !b.state_root().join(id).exists(),
            "after {delay_ms} ms: state left"
        );
        // No process of that create (the runtime's environment marks its
        // init until it execs the container's process) is left.
        let t0 = std::time::Instant::now();
        loop {
            let left: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("environ"))
                        .is_ok_and(|env| env.split(|c| *c == 0).any(|v| v == mark.as_bytes()))
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "after {delay_ms} ms: processes left: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
