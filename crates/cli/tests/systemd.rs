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
