//! exec, ps, events, update, pause/resume and cgroups through hako-runc
//! (needs root; uses this host's real cgroup hierarchies).

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn detached(b: &Bundle, id: &str) {
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, id]));
}

/// Whether the host is cgroup2 only (the VM stage) rather than hybrid.
fn unified_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's memory cgroup directory (see `default_cgroup`), in the
/// v1 memory hierarchy or the cgroup2 tree.
fn memory_dir(id: &str) -> Option<std::path::PathBuf> {
    let p = default_cgroup(if unified_only() { "" } else { "memory" }, id);
    p.exists().then_some(p)
}

/// The memory limit file's name in that directory.
fn mem_limit_file() -> &'static str {
    if unified_only() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    }
}

#[test]
#[ignore = "needs root"]
fn exec_joins_the_container() {
    need_root!();
    let mut b = Bundle::new();
    b.config["hostname"] = "execbox".into();
    b.args(&["sleep", "60"]);
    detached(&b, "exec1");
    let pid = b.state("exec1")["pid"].as_i64().unwrap();

    // Inline args: same namespaces as the init, its hostname, a small pid.
    let out = ok(&b.runc(&[
        "exec",
        "exec1",
        "sh",
        "-c",
        "hostname; echo $$; readlink /proc/self/ns/net; cat /proc/1/cmdline | tr '\\0' ' '",
    ]));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "execbox");
    assert!(l[1].parse::<u32>().unwrap() < 10, "{out}");
    let host_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(l[2], host_net.to_str().unwrap());
    assert_eq!(l[3].trim(), "sleep 60");

    // Exit code, env, cwd, user.
    let o = b.runc(&["exec", "exec1", "sh", "-c", "exit 9"]);
    assert_eq!(o.status.code(), Some(9));
    let out = ok(&b.runc(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        "exec1",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g",
    ]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["bar", "/tmp", "1000", "1000"]
    );

    // --process process.json, detached with a pid file.
    let proc_json = b.path().join("process.json");
    std::fs::write(
        &proc_json,
        serde_json::to_vec(&json!({
            "args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"]
        }))
        .unwrap(),
    )
    .unwrap();
    let pf = b.path().join("exec.pid");
    ok(&b.runc(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        "--process",
        proc_json.to_str().unwrap(),
        "exec1",
    ]));
    let epid: i32 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{epid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    // ps lists both processes by host pid.
    let pids: Vec<i64> =
        serde_json::from_str(&ok(&b.runc(&["ps", "--format", "json", "exec1"]))).unwrap();
    assert!(
        pids.contains(&pid) && pids.contains(&(epid as i64)),
        "{pids:?}"
    );
    let table = ok(&b.runc(&["ps", "exec1"]));
    assert!(table.lines().next().unwrap().contains("PID"));
    assert_eq!(table.lines().count(), 3, "{table}");

    // A missing program fails with a clear error and leaves the container alone.
    let o = b.runc(&["exec", "exec1", "/no/such"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such"), "{}", stderr(&o));
    assert_eq!(b.state("exec1")["status"], "running");

    ok(&b.runc(&["delete", "--force", "exec1"]));
    assert!(memory_dir("exec1").is_none(), "cgroup left after delete");
    // exec into a gone container is an error.
    let o = b.runc(&["exec", "exec1", "true"]);
    assert!(stderr(&o).contains("does not exist"));
}

/// The init and an exec process are in the container's cgroup, in every
/// hierarchy, before they do anything for the container, and the runtime
/// moves no pid in (the first move waits for an RCU grace period): they are
/// cloned into the cgroup2 directory (clone3 CLONE_INTO_CGROUP) and move
/// themselves into each v1 hierarchy. Both for the init with the cgroupfs
/// driver (systemd makes its unit with the process) and every exec process.
#[test]
#[ignore = "needs root"]
fn init_and_exec_start_in_the_container_cgroup() {
    need_root!();
    let mut b = Bundle::new();
    b.args(&["sleep", "60"]);
    let log = b.path().join("runtime.log");
    let p = b.path().to_string_lossy().into_owned();
    let debug = ["--debug", "--log", log.to_str().unwrap()];
    ok(&b.runc(&[&debug[..], &["run", "-d", "-b", &p, "incg"]].concat()));
    let pf = b.path().join("exec.pid");
    ok(&b.runc(
        &[
            &debug[..],
            &[
                "exec",
                "-d",
                "--pid-file",
                pf.to_str().unwrap(),
                "incg",
                "sleep",
                "60",
            ],
        ]
        .concat(),
    ));
    let init = b.state("incg")["pid"].as_i64().unwrap();
    let exec: i64 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let want = Path::new("/").join(
        default_cgroup("", "incg")
            .strip_prefix("/sys/fs/cgroup")
            .unwrap(),
    );
    for pid in [init, exec] {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        // Every controller's hierarchy and the cgroup2 one (named v1
        // hierarchies such as name=systemd hold no controller: not ours).
        let ours: Vec<&str> = cg
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.splitn(3, ':').collect();
                f[0] == "0" || !(f[1].is_empty() || f[1].starts_with("name="))
            })
            .collect();
        assert!(!ours.is_empty(), "{cg}");
        for l in ours {
            let path = Path::new(l.splitn(3, ':').nth(2).unwrap());
            // systemd's scope is in the cgroup2 hierarchy only.
            if systemd_driver() && !l.starts_with("0::") {
                continue;
            }
            assert_eq!(path, want, "{pid}: {l} in {cg}");
        }
    }
    let log = std::fs::read_to_string(&log).unwrap();
    let said = |what: &str| log.contains(what);
    let cgroup2 = unified_only() || Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    let cgroupfs = !systemd_driver();
    assert_eq!(
        said("the init was cloned into its cgroup2 directory"),
        cgroup2 && cgroupfs,
        "{log}"
    );
    assert_eq!(
        said("the init moves itself into the v1 hierarchies"),
        !unified_only() && cgroupfs,
        "{log}"
    );
    assert_eq!(
        said("the exec process was cloned into its cgroup2 directory"),
        cgroup2,
        "{log}"
    );
    assert_eq!(
        said("the exec process moves itself into the v1 hierarchies"),
        !unified_only(),
        "{log}"
    );
    assert!(!said("into its cgroup by pid"), "{log}");
    ok(&b.runc(&["delete", "--force", "incg"]));
    assert!(memory_dir("incg").is_none(), "cgroup left after delete");
}

/// The container's init and an exec process start with nothing blocked
/// even when hako-runc's caller blocks signals (as crun; a shim or a
/// monitor reading its signals from a signalfd has them all blocked).
#[test]
#[ignore = "needs root"]
fn processes_start_with_no_signal_blocked() {
    need_root!();
    use std::os::unix::process::CommandExt;
    let mut b = Bundle::new();
    b.args(&["sh", "-c", "grep SigBlk /proc/self/status; sleep 60"]);
    let blocked = |args: &[&str]| {
        let mut cmd = b.runc_cmd(args);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut set);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        run_with_timeout(cmd, std::time::Duration::from_secs(30))
    };
    let p = b.path().to_string_lossy().into_owned();
    let log = b.path().join("init.out");
    let o = blocked(&[
        "create",
        "-b",
        &p,
        "--pid-file",
        log.with_extension("pid").to_str().unwrap(),
        "sigm",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pid: i32 = std::fs::read_to_string(log.with_extension("pid"))
        .unwrap()
        .parse()
        .unwrap();
    ok(&blocked(&["start", "sigm"]));
    // `start` returns once the init has exec'd sh.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"));
    assert_eq!(mask.map(str::trim), Some("0000000000000000"), "{status}");
    let out = ok(&blocked(&[
        "exec",
        "sigm",
        "grep",
        "SigBlk",
        "/proc/self/status",
    ]));
    assert_eq!(out.trim(), "SigBlk:\t0000000000000000", "{out}");
    ok(&b.runc(&["delete", "--force", "sigm"]));
}

#[test]
#[ignore = "needs root"]
fn exec_with_a_terminal_through_the_console_socket() {
    need_root!();
    let mut b = Bundle::new();
    b.args(&["sleep", "30"]);
    detached(&b, "exectty");
    let sock = b.path().join("c.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let h = std::thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        let (_, m) = hako_runtime::os::recv_fd(std::os::fd::AsFd::as_fd(&c)).unwrap();
        let mut f = std::fs::File::from(m);
        let mut s = String::new();
        let mut buf = [0u8; 256];
        use std::io::Read;
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
            if s.contains("END") {
                break;
            }
        }
        s
    });
    ok(&b.runc(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "exectty",
        "sh",
        "-c",
        "tty; echo END",
    ]));
    let out = h.join().unwrap();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    ok(&b.runc(&["delete", "--force", "exectty"]));
}

#[test]
#[ignore = "needs root"]
fn pause_and_resume_freeze_the_container() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("i=0; while :; do i=$((i+1)); echo $i > /dev/shm/n; sleep 0.01; done");
    detached(&b, "pause1");
    ok(&b.runc(&["pause", "pause1"]));
    assert_eq!(b.state("pause1")["status"], "paused");
    let (freezer, frozen) = if unified_only() {
        (default_cgroup("", "pause1").join("cgroup.freeze"), "1")
    } else {
        (
            default_cgroup("freezer", "pause1").join("freezer.state"),
            "FROZEN",
        )
    };
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), frozen);
    let o = b.runc(&["pause", "pause1"]);
    assert!(!o.status.success(), "pausing twice is an error");
    let read_n = || ok(&b.runc(&["exec", "pause1", "cat", "/dev/shm/n"]));
    // exec into a paused container is refused (its processes are frozen).
    let o = b.runc(&["exec", "pause1", "true"]);
    assert!(!o.status.success());
    ok(&b.runc(&["resume", "pause1"]));
    assert_eq!(b.state("pause1")["status"], "running");
    let a = read_n();
    wait_for(|| read_n() != a, "the counter moves again after resume");
    let o = b.runc(&["resume", "pause1"]);
    assert!(
        !o.status.success(),
        "resuming a running container is an error"
    );
    ok(&b.runc(&["delete", "--force", "pause1"]));
}

#[test]
#[ignore = "needs root"]
fn memory_stats_grow_and_oom_is_reported() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] = json!({"memory": {"limit": 64 * 1024 * 1024}});
    b.args(&["sleep", "60"]);
    detached(&b, "mem1");
    let usage = |b: &Bundle| -> u64 {
        let o = ok(&b.runc(&["events", "--stats", "mem1"]));
        let v: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
        assert_eq!(v["type"], "stats");
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap()
    };
    let before = usage(&b);
    // Fill 24 MiB of the container's tmpfs: charged to its memory cgroup.
    ok(&b.runc(&[
        "exec",
        "-d",
        "mem1",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; sleep 30",
    ]));
    wait_for(
        || usage(&b) > before + 20 * 1024 * 1024,
        "memory usage to grow",
    );

    // Watch events while something allocates past the limit.
    let mut ev = std::process::Command::new(bin());
    ev.arg("--root")
        .arg(b.state_root())
        .args(["events", "--interval", "1s", "mem1"]);
    let (mut ev, rx, reader) = line_stream(ev);
    let o = b.runc(&[
        "exec",
        "mem1",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>/dev/null; tail /dev/zero",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "the allocator is OOM-killed: {}",
        stderr(&o)
    );
    // The oom event arrives (polled, with a deadline) before the delete.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let oom = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) if l.contains("\"type\":\"oom\"") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    ok(&b.runc(&["delete", "--force", "mem1"]));
    let _ = ev.wait();
    let _ = reader.join();
    assert!(oom, "events reported no oom: {}", seen.join("\n"));
}

#[test]
#[ignore = "needs root"]
fn pids_limit_stops_a_fork_bomb() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] = json!({"pids": {"limit": 16}});
    b.sh("bomb() { bomb | bomb & }; bomb; sleep 1; ls /proc | grep -c '^[0-9]'");
    let o = b.run("bomb1");
    let n: u32 = stdout(&o)
        .trim()
        .lines()
        .last()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(n <= 16, "pids limit exceeded: {n}");
    // The host is still fine: we can start another container right away.
    let mut c = Bundle::new();
    c.args(&["true"]);
    ok(&c.run("afterbomb"));
}

#[test]
#[ignore = "needs root"]
fn update_applies_and_bad_input_changes_nothing() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] =
        json!({"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 100}});
    b.args(&["sleep", "60"]);
    detached(&b, "upd1");
    let dir = memory_dir("upd1").expect("memory cgroup");
    ok(&b.runc(&["update", "--memory", "96m", "--pids-limit", "50", "upd1"]));
    assert_eq!(
        std::fs::read_to_string(dir.join(mem_limit_file()))
            .unwrap()
            .trim(),
        (96 * 1024 * 1024).to_string()
    );
    // The container sees its limit through its own cgroup mount.
    let inside = ok(&b.runc(&[
        "exec",
        "upd1",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]));
    assert_eq!(inside.trim(), "50");
    // JSON on stdin, as containerd sends it.
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--root")
        .arg(b.state_root())
        .args(["update", "--resources", "-", "upd1"])
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":134217728}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.join(mem_limit_file()))
            .unwrap()
            .trim(),
        "134217728"
    );
    // Malformed JSON: one clear error, nothing changed.
    let bad = b.path().join("bad.json");
    std::fs::write(&bad, "{\"memory\": {\"limit\": ").unwrap();
    let o = b.runc(&["update", "--resources", bad.to_str().unwrap(), "upd1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid JSON"), "{}", stderr(&o));
    // A resource this host lacks (net_cls is not mounted here) is named,
    // and the memory value in the same request is not applied.
    if !Path::new("/sys/fs/cgroup/net_cls").exists() {
        std::fs::write(
            &bad,
            r#"{"memory":{"limit":33554432},"network":{"classID":1048577}}"#,
        )
        .unwrap();
        let o = b.runc(&["update", "--resources", bad.to_str().unwrap(), "upd1"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("net_cls"), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(dir.join(mem_limit_file()))
                .unwrap()
                .trim(),
            "134217728",
            "half-applied update"
        );
    }
    ok(&b.runc(&["delete", "--force", "upd1"]));
    assert!(memory_dir("upd1").is_none());
}

#[test]
#[ignore = "needs root"]
fn kill_all_signals_every_process() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("trap '' TERM; sleep 100 & sleep 100 & wait");
    detached(&b, "killall");
    wait_for(
        || {
            serde_json::from_str::<Vec<i64>>(&ok(&b.runc(&["ps", "--format", "json", "killall"])))
                .unwrap()
                .len()
                == 3
        },
        "three processes",
    );
    ok(&b.runc(&["kill", "--all", "killall", "KILL"]));
    wait_for(|| b.state("killall")["status"] == "stopped", "stopped");
    ok(&b.runc(&["delete", "killall"]));
}

#[test]
#[ignore = "needs root"]
fn failed_resource_setup_leaves_no_cgroup_or_state() {
    need_root!();
    if Path::new("/sys/fs/cgroup/net_cls").exists() {
        eprintln!("skipped: needs a host without net_cls");
        return;
    }
    let mut b = Bundle::new();
    b.config["linux"]["resources"] =
        json!({"memory": {"limit": 67108864}, "network": {"classID": 1048577}});
    b.args(&["true"]);
    let o = b.run("cgfail");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("net_cls"), "{}", stderr(&o));
    assert!(memory_dir("cgfail").is_none(), "cgroup left behind");
    assert!(!b.state_root().join("cgfail").exists());
}

/// Docker writes zeros for every resource the user did not set; runc reads
/// them as "unset" (docs/cgroups-resources.md), and so must hako-runc, on
/// create and on update.
#[test]
#[ignore = "needs root"]
fn docker_zero_resources_change_nothing() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 * 1024 * 1024, "reservation": 0, "swap": 0, "kernelTCP": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0},
        "pids": {"limit": 0}
    });
    b.args(&["sleep", "60"]);
    detached(&b, "zeros");
    let dir = memory_dir("zeros").expect("memory cgroup");
    let limit = || {
        std::fs::read_to_string(dir.join(mem_limit_file()))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(limit(), (64 * 1024 * 1024).to_string());
    let zeros = b.path().join("zeros.json");
    std::fs::write(
        &zeros,
        r#"{"memory":{"limit":0,"reservation":0,"swap":0},"cpu":{"shares":0,"quota":0,"period":0},
           "blockIO":{"weight":0},"pids":{"limit":0}}"#,
    )
    .unwrap();
    ok(&b.runc(&["update", "--resources", zeros.to_str().unwrap(), "zeros"]));
    assert_eq!(limit(), (64 * 1024 * 1024).to_string());
    // The same through flags, as `docker update` without a value does.
    ok(&b.runc(&[
        "update",
        "--cpu-share",
        "0",
        "--cpu-quota",
        "0",
        "--cpu-period",
        "0",
        "zeros",
    ]));
    assert_eq!(limit(), (64 * 1024 * 1024).to_string());
    ok(&b.runc(&["delete", "--force", "zeros"]));
}

/// An update the kernel refuses half-way (the cpu period is below the
/// kernel's 1 ms minimum, which only the kernel checks) leaves the memory
/// limit written before it unchanged, and names the field.
#[test]
#[ignore = "needs root"]
fn refused_update_leaves_earlier_values_unchanged() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] = json!({"memory": {"limit": 64 * 1024 * 1024}});
    b.args(&["sleep", "60"]);
    detached(&b, "halfupd");
    let dir = memory_dir("halfupd").expect("memory cgroup");
    let o = b.runc(&[
        "update",
        "--memory",
        "32m",
        "--cpu-quota",
        "1000",
        "--cpu-period",
        "50",
        "halfupd",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cpu.period"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join(mem_limit_file()))
            .unwrap()
            .trim(),
        (64 * 1024 * 1024).to_string()
    );
    ok(&b.runc(&["delete", "--force", "halfupd"]));
}

/// containerd's CRI sends `update` the whole resources block, with its
/// `devices: [deny all]`: as with runc, the device rules stay those of
/// create, so /dev/null keeps working in the running container.
#[test]
#[ignore = "needs root"]
fn update_keeps_the_device_rules_of_create() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    b.args(&["sleep", "60"]);
    detached(&b, "devupd");
    let res = b.dir.path().join("res.json");
    std::fs::write(
        &res,
        r#"{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":100663296}}"#,
    )
    .unwrap();
    ok(&b.runc(&["update", "-r", res.to_str().unwrap(), "devupd"]));
    let o = b.runc(&["exec", "devupd", "sh", "-c", "echo x >/dev/null && echo ok"]);
    assert_eq!(ok(&o).trim(), "ok", "{}", stderr(&o));
    ok(&b.runc(&["delete", "--force", "devupd"]));
}

/// runc's kill semantics, which containerd's shim relies on after every
/// exit: `kill --all` of a stopped container signals what is left in its
/// cgroup and succeeds; a plain `kill` fails with "container not running";
/// an unknown id "does not exist".
#[test]
#[ignore = "needs root"]
fn kill_of_a_stopped_container_follows_runc() {
    need_root!();
    let mut b = Bundle::new();
    // No pid namespace, so the init's child outlives it in the cgroup.
    let ns = b.config["linux"]["namespaces"].as_array().unwrap().clone();
    b.config["linux"]["namespaces"] = json!(ns
        .into_iter()
        .filter(|n| n["type"] != "pid")
        .collect::<Vec<_>>());
    b.sh("sleep 100 >/dev/null 2>&1 &");
    detached(&b, "leftover");
    wait_for(|| b.state("leftover")["status"] == "stopped", "init exited");
    let pids = || {
        serde_json::from_str::<Vec<i64>>(&ok(&b.runc(&["ps", "--format", "json", "leftover"])))
            .unwrap()
    };
    assert_eq!(pids().len(), 1, "the sleep is left in the cgroup");

    let o = b.runc(&["kill", "leftover", "KILL"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("container not running"),
        "{}",
        stderr(&o)
    );

    ok(&b.runc(&["kill", "--all", "leftover", "KILL"]));
    wait_for(|| pids().is_empty(), "the leftover process killed");
    // Again, with nothing left: still fine.
    ok(&b.runc(&["kill", "--all", "leftover", "KILL"]));

    let o = b.runc(&["kill", "no-such-container", "KILL"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    ok(&b.runc(&["delete", "leftover"]));
}

/// The systemd driver without a reachable systemd (none here, or a bus
/// that cannot be reached): one line naming it, and nothing created.
#[test]
#[ignore = "needs root"]
fn systemd_driver_without_systemd_is_one_line_and_nothing_made() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = "system.slice:hako:nosd".into();
    b.args(&["true"]);
    b.write();
    let o = run_with_timeout(
        {
            let mut c = std::process::Command::new(bin());
            c.env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
                .arg("--root")
                .arg(b.state_root())
                .args(["--systemd-cgroup", "run", "-b"])
                .arg(b.path())
                .arg("nosd");
            c
        },
        std::time::Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("systemd is not running here")
            || err.contains("systemd: connect to the system bus"),
        "{err}"
    );
    assert!(!b.state_root().join("nosd").exists());
    assert!(!Path::new("/sys/fs/cgroup/system.slice/hako-nosd.scope").exists());
}
