//! hako-runc against real containers on the busybox bundle (needs root).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::json;

#[test]
#[ignore = "needs root"]
fn hostname_pid1_and_private_proc() {
    need_root!();
    let mut b = Bundle::new();
    b.config["hostname"] = "box1".into();
    b.sh("hostname; echo pid=$$; ps -o pid= > /dev/shm/ps; wc -l < /dev/shm/ps; ls /proc > /dev/shm/p; grep -c '^[0-9]' /dev/shm/p");
    let out = ok(&b.run("host1"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "pid=1");
    // ps sees only the shell and itself.
    assert_eq!(lines[2].trim(), "2", "{out}");
    assert!(lines[3].trim().parse::<u32>().unwrap() <= 3, "{out}");
    assert!(
        !b.state_root().join("host1").exists(),
        "state left after run"
    );
}

#[test]
#[ignore = "needs root"]
fn ipc_objects_are_private() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("ipcmk -M 4096 >/dev/null && ipcs -m | grep -c 0x");
    let out = ok(&b.run("ipc1"));
    assert_eq!(out.trim(), "1", "segment visible inside: {out}");
    // The container's segment died with its namespace; the host never saw it.
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let inside_ns_count = host.lines().count();
    let mut b2 = Bundle::new();
    b2.sh("ipcmk -M 12345 >/dev/null; cat /proc/sysvipc/shm | grep -c ' 12345 '; sleep 0.2");
    let o = b2.runc(&["run", "-d", "-b", &b2.path().to_string_lossy(), "ipc2"]);
    ok(&o);
    let host_now = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(
        !host_now
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some("12345")),
        "container's shm segment is visible on the host"
    );
    assert!(host_now.lines().count() <= inside_ns_count + 1);
    ok(&b2.runc(&["delete", "--force", "ipc2"]));
}

#[test]
#[ignore = "needs root"]
fn tmpfs_inside_is_invisible_on_host_and_mounts_unchanged() {
    need_root!();
    let before = host_mounts();
    let mut b = Bundle::new();
    b.sh("mkdir -p /tmp/inner && mount -t tmpfs none /tmp/inner && echo x > /tmp/inner/f && grep -c ' /tmp/inner ' /proc/self/mountinfo");
    // mount(8) inside needs CAP_SYS_ADMIN.
    b.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push("CAP_SYS_ADMIN".into());
    b.config["process"]["capabilities"]["effective"]
        .as_array_mut()
        .unwrap()
        .push("CAP_SYS_ADMIN".into());
    b.config["process"]["capabilities"]["permitted"]
        .as_array_mut()
        .unwrap()
        .push("CAP_SYS_ADMIN".into());
    let out = ok(&b.run("mnt1"));
    assert_eq!(out.trim(), "1");
    let after = host_mounts();
    assert!(!after.contains("/tmp/inner"));
    assert_no_mounts_under(b.path());
    // Containers mount only in their own namespaces: the host's table is
    // the same before and after (other tests' containers never touch it).
    assert_no_mounts_under(&template().join("rootfs"));
    assert_eq!(before, after, "the host mount table changed");
}

#[test]
#[ignore = "needs root"]
fn new_network_namespace_has_only_lo() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("ls /sys/class/net");
    let out = ok(&b.run("net1"));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);
}

#[test]
#[ignore = "needs root"]
fn user_namespace_maps_root_to_host_uid() {
    need_root!();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    // The container's root is host uid 100000: let it own its rootfs.
    let st = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.sh("id -u; cat /proc/self/uid_map; touch /made-by-root; sleep 1");
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, "user1"]));
    let pid = b.state("user1")["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("100000"),
        "host sees the container's root as {uid_line}"
    );
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "100000", "65536"]
    );
    wait_for(
        || b.state("user1")["status"] == "stopped",
        "the container to finish",
    );
    let meta = std::fs::metadata(rootfs.join("made-by-root")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 100000);
    ok(&b.runc(&["delete", "user1"]));
}

#[test]
#[ignore = "needs root"]
fn time_namespace_offsets_show_in_uptime() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] =
        json!({"boottime": {"secs": 864000, "nanosecs": 0}, "monotonic": {"secs": 86400}});
    b.sh("cat /proc/uptime");
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = ok(&b.run("time1"));
    let inside: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let diff = inside - host_up;
    assert!(
        (863_990.0..864_100.0).contains(&diff),
        "uptime inside {inside}, host {host_up}"
    );
}

#[test]
#[ignore = "needs root"]
fn exit_codes_and_signals_propagate() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("exit 42");
    assert_eq!(b.run("exit1").status.code(), Some(42));
    b.sh("kill -TERM $$; trap '' TERM; kill -KILL $$");
    // PID 1 ignores signals it has no handler for, except SIGKILL from… its
    // own namespace is ignored too; so signal from outside:
    b.args(&["sleep", "30"]);
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, "sig1"]));
    ok(&b.runc(&["kill", "sig1", "KILL"]));
    wait_for(|| b.state("sig1")["status"] == "stopped", "stopped");
    ok(&b.runc(&["delete", "sig1"]));

    // A foreground run forwards signals and reports 128+signal.
    b.sh("trap 'exit 7' USR1; : > /dev/shm/trapped; while :; do sleep 0.05; done");
    b.write();
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--root")
        .arg(b.state_root())
        .args(["run", "-b", &p, "sig2"])
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for(
        || {
            std::process::Command::new(bin())
                .arg("--root")
                .arg(b.state_root())
                .args(["state", "sig2"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("running"))
                .unwrap_or(false)
        },
        "sig2 running",
    );
    // "running" comes before the shell has set its trap: wait for the
    // file it writes once the trap is in place.
    let pid = b.state("sig2")["pid"].as_i64().unwrap();
    wait_for(
        || std::path::Path::new(&format!("/proc/{pid}/root/dev/shm/trapped")).exists(),
        "the USR1 trap",
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(7));
}

#[test]
#[ignore = "needs root"]
fn join_namespaces_by_path() {
    need_root!();
    let mut a = Bundle::new();
    a.args(&["sleep", "30"]);
    let pa = a.path().to_string_lossy().into_owned();
    ok(&a.runc(&["run", "-d", "-b", &pa, "joinA"]));
    let pid = a.state("joinA")["pid"].as_i64().unwrap();
    let ns_of = |kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();

    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
    ]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.sh("for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname");
    let out = ok(&b.run("joinB"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], ns_of("net").to_str().unwrap());
    assert_eq!(l[1], ns_of("ipc").to_str().unwrap());
    assert_eq!(l[2], ns_of("uts").to_str().unwrap());
    assert_ne!(l[3], ns_of("pid").to_str().unwrap());
    assert_eq!(l[4], "hako");
    ok(&a.runc(&["delete", "--force", "joinA"]));
}

#[test]
#[ignore = "needs root"]
fn join_pid_namespace_by_path() {
    need_root!();
    let mut a = Bundle::new();
    a.args(&["sleep", "30"]);
    let pa = a.path().to_string_lossy().into_owned();
    ok(&a.runc(&["run", "-d", "-b", &pa, "pidA"]));
    let pid = a.state("pidA")["pid"].as_i64().unwrap();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid", "path": format!("/proc/{pid}/ns/pid")}, {"type": "mount"}, {"type": "uts"},
    ]);
    b.sh("readlink /proc/self/ns/pid; ps -o comm | grep -c sleep");
    let out = ok(&b.run("pidB"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        l[0],
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(l[1], "1", "the other container's sleep is visible");
    ok(&a.runc(&["delete", "--force", "pidA"]));
}

#[test]
#[ignore = "needs root"]
fn namespace_path_of_wrong_type_is_refused() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "uts"},
        {"type": "network", "path": "/proc/self/ns/ipc"},
    ]);
    let o = b.run("wrongns");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("is a ipc namespace, not a network namespace"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!b.state_root().join("wrongns").exists());
}

fn assert_bad_input(b: &Bundle, bundle: &str, id: &str, want: &str) {
    let o = b.runc(&["run", "-b", bundle, id]);
    assert!(!o.status.success(), "should fail");
    let e = stderr(&o);
    assert!(e.contains(want), "stderr {e:?} should name {want:?}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(!b.state_root().join(id).exists(), "state dir left");
    assert_no_mounts_under(Path::new(bundle));
}

#[test]
#[ignore = "needs root"]
fn bad_input_fails_cleanly() {
    need_root!();
    let b = Bundle::new();
    assert_bad_input(&b, "/nonexistent/bundle", "bad1", "/nonexistent/bundle");

    let b = Bundle::new();
    b.write();
    std::fs::write(
        b.path().join("config.json"),
        b"{\"ociVersion\": \"1.0.2\", ",
    )
    .unwrap();
    let o = std::process::Command::new(bin())
        .arg("--root")
        .arg(b.state_root())
        .args(["run", "-b"])
        .arg(b.path())
        .arg("bad2")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("config.json") && e.contains("EOF"), "{e}");
    assert_eq!(e.trim().lines().count(), 1);
    assert!(!b.state_root().join("bad2").exists());

    let mut b = Bundle::new();
    b.args(&[]);
    let p = b.path().to_string_lossy().into_owned();
    assert_bad_input(&b, &p, "bad3", "process.args");

    let mut b = Bundle::new();
    b.config["linux"]["namespaces"][0]["type"] = "bogus".into();
    assert_bad_input(&b, &p_of(&b), "bad4", "bogus");

    let mut b = Bundle::new();
    b.config["process"]["capabilities"]["bounding"][0] = "CAP_NOT_A_THING".into();
    assert_bad_input(&b, &p_of(&b), "bad5", "CAP_NOT_A_THING");

    let mut b = Bundle::new();
    b.args(&["/no/such/program"]);
    assert_bad_input(&b, &p_of(&b), "bad6", "/no/such/program");

    // A failure deep in setup (a mount that cannot work) also leaves nothing.
    let mut b = Bundle::new();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}));
    assert_bad_input(&b, &p_of(&b), "bad7", "mounts[7]");
}

fn p_of(b: &Bundle) -> String {
    b.path().to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs root"]
fn lifecycle_follows_the_spec() {
    need_root!();
    let mut b = Bundle::new();
    b.args(&["sleep", "30"]);
    b.config["annotations"] = json!({"org.example.k": "v"});
    let pidfile = b.path().join("init.pid");
    let p = p_of(&b);
    ok(&b.runc(&[
        "create",
        "-b",
        &p,
        "--pid-file",
        pidfile.to_str().unwrap(),
        "life",
    ]));
    let s = b.state("life");
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], "life");
    assert_eq!(s["bundle"], p.as_str());
    assert_eq!(s["annotations"]["org.example.k"], "v");
    let pid = s["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    // The user process has not run: the init is still hako-runc's copy.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");

    // Duplicate id.
    let o = b.create("life");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    // Delete of a created container without --force is an error.
    let o = b.runc(&["delete", "life"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not stopped"));

    ok(&b.runc(&["start", "life"]));
    assert_eq!(b.state("life")["status"], "running");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    let o = b.runc(&["start", "life"]);
    assert!(!o.status.success(), "second start must fail");

    let list = ok(&b.runc(&["list", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["id"], "life");
    assert_eq!(v[0]["status"], "running");
    assert_eq!(ok(&b.runc(&["list", "-q"])).trim(), "life");
    let table = ok(&b.runc(&["list"]));
    assert!(table.starts_with("ID"), "{table}");

    let o = b.runc(&["delete", "life"]);
    assert!(
        !o.status.success(),
        "delete of a running container must fail"
    );
    ok(&b.runc(&["kill", "life", "9"]));
    wait_for(|| b.state("life")["status"] == "stopped", "stopped");
    let s = b.state("life");
    assert!(s.get("pid").is_none() || s["pid"] == 0);
    let o = b.runc(&["kill", "life", "TERM"]);
    assert!(!o.status.success(), "kill of a stopped container must fail");
    ok(&b.runc(&["delete", "life"]));
    let o = b.runc(&["state", "life"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"));
}

#[test]
#[ignore = "needs root"]
fn delete_force_kills_a_running_container() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("sleep 100 & sleep 100");
    let p = p_of(&b);
    ok(&b.runc(&["run", "-d", "-b", &p, "force1"]));
    let pid = b.state("force1")["pid"].as_i64().unwrap();
    ok(&b.runc(&["delete", "--force", "force1"]));
    assert!(
        !Path::new(&format!("/proc/{pid}/ns")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
    assert!(!b.state_root().join("force1").exists());
}

#[test]
#[ignore = "needs root"]
fn process_settings_apply() {
    need_root!();
    let mut b = Bundle::new();
    b.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 63});
    b.config["process"]["cwd"] = "/tmp".into();
    b.config["process"]["env"] = json!(["PATH=/bin", "HAKO_X=1"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
    b.config["process"]["oomScoreAdj"] = 500.into();
    b.config["process"]["noNewPrivileges"] = true.into();
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"],
        "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]
    });
    b.sh("id; pwd; echo $HAKO_X; ulimit -n; ulimit -Hn; umask; cat /proc/self/oom_score_adj; grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status");
    let out = ok(&b.run("proc1"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        l[0],
        "uid=1000(user) gid=1000(user) groups=5(tty),65534(nogroup)"
    );
    assert_eq!(l[1], "/tmp");
    assert_eq!(l[2], "1");
    assert_eq!(l[3], "321");
    assert_eq!(l[4], "654");
    assert_eq!(l[5], "0077");
    assert_eq!(l[6], "500");
    // CAP_KILL is bit 5 (0x20); CAP_NET_BIND_SERVICE bit 10.
    assert_eq!(l[7], "CapEff:\t0000000000000020");
    assert_eq!(l[8], "CapBnd:\t0000000000000420");
    assert_eq!(l[9], "CapAmb:\t0000000000000020");
    assert_eq!(l[10], "NoNewPrivs:\t1");
}

#[test]
#[ignore = "needs root"]
fn only_stdio_fds_reach_the_container_and_preserve_fds_works() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("ls /proc/self/fd | sort -n | tr '\\n' ' '");
    let out = ok(&b.run("fds1"));
    // 0 1 2 and the fd ls uses to read the directory.
    assert_eq!(out.trim(), "0 1 2 3", "{out}");

    // --preserve-fds 1 passes fd 3 through.
    b.sh("cat <&3");
    b.write();
    let f = std::fs::File::open(template().join("rootfs/etc/hostname")).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--root").arg(b.state_root());
    cmd.args(["run", "--preserve-fds", "1", "-b", &p_of(&b), "fds2"]);
    // SAFETY: dup2 in the child before exec, onto fd 3.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // dup2(3, 3) would keep CLOEXEC: clear it explicitly.
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(ok(&o).trim(), "hako");
}

#[test]
#[ignore = "needs root"]
fn rootfs_readonly_masked_and_readonly_paths() {
    need_root!();
    let mut b = Bundle::new();
    b.config["root"]["readonly"] = true.into();
    b.sh("touch /x 2>&1 | grep -c Read-only; cat /proc/kcore | wc -c; touch /proc/sys/kernel/x 2>/dev/null || echo ro-sys; ls /sys/firmware | wc -l; echo ok > /dev/shm/f && cat /dev/shm/f");
    let out = ok(&b.run("ro1"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l, vec!["1", "0", "ro-sys", "0", "ok"], "{out}");
}

#[test]
#[ignore = "needs root"]
fn sysctl_and_devices() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"});
    b.config["linux"]["devices"] = json!([{"path": "/dev/hako-null", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 1000, "gid": 5}]);
    b.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; stat -c '%t:%T %a %u %g' /dev/hako-null; readlink /dev/ptmx; readlink /dev/fd");
    let out = ok(&b.run("sysctl1"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1");
    assert_eq!(l[1], "2048");
    assert_eq!(l[2], "1:3 660 1000 5");
    assert_eq!(l[3], "pts/ptmx");
    assert_eq!(l[4], "/proc/self/fd");
    // The host's values did not move.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "2048"
    );
}

#[test]
#[ignore = "needs root"]
fn bind_mount_through_symlink_stays_in_rootfs() {
    need_root!();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    let outside = tempfile::tempdir().unwrap();
    // /evil -> the host's temp dir; a volume aimed at /evil/vol must land
    // inside the rootfs, not in the host directory.
    std::os::unix::fs::symlink(outside.path(), rootfs.join("evil")).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("data"), "vol\n").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/evil/vol", "type": "bind",
        "source": src.path(), "options": ["rbind", "ro"]
    }));
    b.sh("cat /evil/vol/data; touch /evil/vol/x 2>/dev/null || echo ro");
    let out = ok(&b.run("sym1"));
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["vol", "ro"]);
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the rootfs"
    );
    assert!(rootfs
        .join(outside.path().strip_prefix("/").unwrap())
        .join("vol")
        .is_dir());
}

#[test]
#[ignore = "needs root"]
fn hooks_run_in_order_with_state() {
    need_root!();
    let mut b = Bundle::new();
    let log = b.path().join("hooks.log");
    let hook = b.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nread -r s\necho \"$1 $(echo \"$s\" | grep -o '\"status\":\"[a-z]*\"')\" >> {}\n[ \"$1\" = poststart ] && exit 3\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let h = |name: &str| json!([{"path": hook, "args": ["hook.sh", name]}]);
    b.config["hooks"] = json!({
        "prestart": h("prestart"), "createRuntime": h("createRuntime"),
        "createContainer": h("createContainer"), "startContainer": h("startContainer"),
        "poststart": h("poststart"), "poststop": h("poststop"),
    });
    // startContainer runs inside the container: give it the hook and log.
    let bp = b.path().to_path_buf();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": bp, "type": "bind", "source": bp, "options": ["bind"]
    }));
    b.sh("true");
    let o = b.run("hooks1");
    ok(&o);
    assert!(
        stderr(&o).contains("poststart"),
        "failing poststart warns: {}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    assert!(text.lines().next().unwrap().contains("created"), "{text}");
    assert!(text.lines().last().unwrap().contains("stopped"), "{text}");
}

#[test]
#[ignore = "needs root"]
fn failing_or_slow_prestart_hook_aborts_create() {
    need_root!();
    let mut b = Bundle::new();
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1}]});
    let o = b.run("hook2");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert!(!b.state_root().join("hook2").exists());
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    let o = b.run("hook3");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("createRuntime[0]"), "{}", stderr(&o));
    assert!(!b.state_root().join("hook3").exists());
    // A hook that exits without reading a state larger than a pipe holds:
    // the runtime's write fails with EPIPE, which must be an error it
    // reports, never a SIGPIPE that kills it silently.
    b.config["annotations"] = json!({ "big": "x".repeat(256 * 1024) });
    let o = b.run("hook4");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("createRuntime[0]"), "{o:?}");
    assert!(!b.state_root().join("hook4").exists());
}

#[test]
#[ignore = "needs root"]
fn console_socket_receives_the_pty_master() {
    need_root!();
    let mut b = Bundle::new();
    b.config["process"]["terminal"] = true.into();
    b.sh("tty; stat -c 'console=%t:%T' /dev/console; echo done");
    let sock = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let p = p_of(&b);
    let s = sock.to_string_lossy().into_owned();
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (_, master) =
            hako_runtime_recv(std::os::fd::AsFd::as_fd(&conn)).expect("receive pty master");
        let mut f = std::fs::File::from(master);
        let mut out = String::new();
        let mut buf = [0u8; 256];
        use std::io::Read;
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
            if out.contains("done") {
                break;
            }
        }
        out
    });
    ok(&b.runc(&["run", "-d", "--console-socket", &s, "-b", &p, "tty1"]));
    let out = h.join().unwrap();
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    // /dev/console is the same pty (devpts major 136 = 0x88).
    assert!(out.contains("console=88:0"), "{out:?}");
    wait_for(|| b.state("tty1")["status"] == "stopped", "stopped");
    ok(&b.runc(&["delete", "tty1"]));
}

fn hako_runtime_recv(
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<(Vec<u8>, std::os::fd::OwnedFd)> {
    hako_runtime::os::recv_fd(fd)
}

#[test]
#[ignore = "needs root"]
fn spec_and_features() {
    need_root!();
    let d = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args(["spec", "-b"])
        .arg(d.path())
        .output()
        .unwrap();
    ok(&o);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"][0], "sh");
    let o = std::process::Command::new(bin())
        .args(["spec", "--rootless", "-b"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success(), "spec must not overwrite config.json");
    let o = std::process::Command::new(bin())
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&"time".into()));
    assert!(f["hooks"].as_array().unwrap().len() == 6);
}

/// `--systemd-cgroup` is accepted on every verb (containerd passes it to
/// all of them); verbs on existing containers read the driver from their
/// state, so they work whether or not systemd runs here. Creating without
/// systemd is refused in one line (runc_ops.rs,
/// systemd_driver_without_systemd_is_one_line_and_nothing_made).
#[test]
fn systemd_cgroup_flag_is_accepted_by_every_verb() {
    let root = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .arg("--root")
        .arg(root.path())
        .args(["--systemd-cgroup", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new(bin())
        .args(["--systemd-cgroup", "features"])
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["linux"]["cgroup"]["systemd"], true);
}

/// Races show at 1%: run the whole lifecycle many times (HAKO_LOOPS).
#[test]
#[ignore = "needs root"]
fn lifecycle_loop() {
    need_root!();
    let n: usize = std::env::var("HAKO_LOOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut b = Bundle::new();
    b.args(&["true"]);
    for i in 0..n {
        let o = b.run(&format!("loop{i}"));
        assert!(o.status.success(), "iteration {i}: {}", stderr(&o));
    }
    b.args(&["sleep", "10"]);
    for i in 0..n / 5 {
        let id = format!("cloop{i}");
        ok(&b.create(&id));
        ok(&b.runc(&["start", &id]));
        ok(&b.runc(&["kill", &id, "KILL"]));
        ok(&b.runc(&["delete", "--force", &id]));
    }
    assert_eq!(state_left(b.state_root()), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn seccomp_filters_apply_to_the_container_process() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]
    });
    b.sh("mkdir /tmp/nope 2>&1; grep Seccomp: /proc/self/status");
    let out = ok(&b.run("sec1"));
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // Without noNewPrivileges the filter is loaded before capabilities drop.
    b.config["process"]["noNewPrivileges"] = false.into();
    let out = ok(&b.run("sec2"));
    assert!(out.contains("Operation not permitted"), "{out}");
    // A bad filter is refused before anything is created, naming the field.
    b.config["linux"]["seccomp"]["syscalls"][0]["names"][0] = "no_such_syscall".into();
    let o = b.run("sec3");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no_such_syscall"), "{}", stderr(&o));
    assert!(!b.state_root().join("sec3").exists());
}

#[test]
#[ignore = "needs root"]
fn seccomp_notify_listener_goes_to_listener_path() {
    need_root!();
    let mut b = Bundle::new();
    let sock = b.path().join("agent.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "hello-agent",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.sh("mkdir /tmp/notified 2>&1; echo done");
    // The agent: take the listener and the state, then close the listener,
    // which makes the pending and later notified calls fail with ENOSYS.
    let agent = std::thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        let (payload, fd) = hako_runtime::os::recv_fd(std::os::fd::AsFd::as_fd(&c)).unwrap();
        drop(fd);
        serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
    });
    let out = ok(&b.run("notify1"));
    let st = agent.join().unwrap();
    assert_eq!(st["fds"], json!(["seccompFd"]));
    assert_eq!(st["metadata"], "hello-agent");
    assert_eq!(st["state"]["id"], "notify1");
    assert!(st["pid"].as_i64().unwrap() > 0);
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(out.contains("done"));
}

#[test]
#[ignore = "needs root"]
fn user_namespace_without_netns_binds_sysfs() {
    need_root!();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "user"}
    ]);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.sh("ls /sys/class/net | grep -cx lo; stat -c '%t:%T' /dev/null; awk '$5==\"/sys\"' /proc/self/mountinfo | grep -c ' ro,'");
    let out = ok(&b.run("usersys"));
    let l: Vec<&str> = out.lines().collect();
    // The host's network devices (sysfs bound from the host), devices bound
    // rather than made, /sys read-only.
    assert_eq!(l[0], "1", "{out}");
    assert_eq!(l[1], "1:3");
    assert_eq!(l[2], "1", "{out}");
}

#[test]
#[ignore = "needs root"]
fn tmpcopyup_and_bind_propagation_and_forced_delete_of_nothing() {
    need_root!();
    let mut b = Bundle::new();
    let vol = tempfile::tempdir().unwrap();
    b.config["linux"]["rootfsPropagation"] = "shared".into();
    b.config["mounts"].as_array_mut().unwrap().extend([
        // podman's --tmpfs: the new tmpfs starts with what /etc held.
        json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
               "options": ["size=1m", "rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]}),
        json!({"destination": "/vol", "type": "bind", "source": vol.path(),
               "options": ["rshared", "rw", "rbind"]}),
    ]);
    b.sh("grep -c root /etc/passwd; awk '$5==\"/etc\" {print $9}' /proc/self/mountinfo; grep ' /vol ' /proc/self/mountinfo | grep -c shared:");
    let out = ok(&b.run("copyup"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1", "tmpfs lost /etc/passwd: {out}");
    assert_eq!(l[1], "tmpfs");
    assert_eq!(l[2], "1", "/vol is not shared: {out}");
    // Deleting what is not there, with --force, is not an error (runc).
    ok(&b.runc(&["delete", "--force", "never-existed"]));
    assert!(!b.runc(&["delete", "never-existed"]).status.success());
}

/// A failure after the init told the runtime it was ready (here a
/// startContainer hook that fails) is printed, one line naming the step,
/// as one before it is (issue 11: it used to vanish with exit 1).
#[test]
#[ignore = "needs root"]
fn failures_after_ready_reach_the_user() {
    need_root!();
    for kind in ["createContainer", "startContainer"] {
        let mut b = Bundle::new();
        b.args(&["true"]);
        b.config["hooks"] = json!({ kind: [{"path": "/bin/false"}] });
        let o = b.run(&format!("late-{kind}"));
        assert!(!o.status.success(), "{kind}: {o:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("hook {kind}[0] /bin/false")) && err.contains("exit status 1"),
            "{kind}: {err:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{kind}: one line: {err:?}");
        let _ = b.runc(&["delete", "--force", &format!("late-{kind}")]);
    }
}

/// 70,000 additionalGids (more than NGROUPS_MAX): the error names setgroups
/// and still carries the errno text; the gid list used to fill the 4 KB
/// init→parent message and cut the cause off.
#[test]
#[ignore = "needs root"]
fn setgroups_error_keeps_its_cause() {
    need_root!();
    let mut b = Bundle::new();
    let gids: Vec<u32> = (1..=70_000).collect();
    b.config["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": gids});
    b.args(&["true"]);
    let o = b.run("gids1");
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("setgroups"))
        .unwrap_or_else(|| panic!("no setgroups line: {err}"));
    assert!(line.contains("Invalid argument"), "{line}");
    assert!(line.contains("70000"), "counts the gids: {line}");
    assert!(line.len() < 1000, "bounded: {} bytes", line.len());
}
