//! Regressions for runc's CVE classes: each test sets up the attack and
//! shows it blocked (needs root).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;

/// CVE-2024-21626: a cwd through a leaked fd (/proc/self/fd/N) must never
/// give the container a directory outside its root.
#[test]
#[ignore = "needs root"]
fn cwd_through_a_leaked_fd_never_escapes() {
    need_root!();
    let mut b = Bundle::new();
    b.sh("pwd; ls -d ../../../etc/hako-host-marker 2>/dev/null || echo contained");
    let marker = std::path::Path::new("/etc/hako-host-marker");
    let _ = std::fs::write(marker, "host");
    for n in 3..=12 {
        b.config["process"]["cwd"] = format!("/proc/self/fd/{n}").into();
        let o = b.run(&format!("cwd{n}"));
        let out = stdout(&o);
        if o.status.success() {
            assert!(
                out.contains("contained") && !out.contains("hako-host-marker"),
                "fd {n}: the container reached the host: {out}"
            );
        } else {
            let e = stderr(&o);
            assert!(e.contains("cwd"), "fd {n}: unclear error {e}");
        }
        assert!(!b.state_root().join(format!("cwd{n}")).exists());
    }
    let _ = std::fs::remove_file(marker);
}

/// CVE-2019-16884: a volume mounted on /proc (a fake procfs) is refused.
#[test]
#[ignore = "needs root"]
fn fake_proc_is_refused() {
    need_root!();
    let mut b = Bundle::new();
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fake.path().join("self/attr")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/proc");
    mounts.insert(
        0,
        json!({"destination": "/proc", "type": "bind", "source": fake.path(), "options": ["rbind"]}),
    );
    let o = b.run("fakeproc");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fake /proc"), "{}", stderr(&o));
    assert!(!b.state_root().join("fakeproc").exists());
}

/// CVE-2021-30465 / CVE-2023-27561: a mount destination that is (or is
/// swapped into) a symlink to a host directory never gets a mount outside
/// the rootfs. A createContainer hook sees the container's mount table
/// before pivot_root, with host paths: nothing may be mounted on `outside`.
#[test]
#[ignore = "needs root"]
fn mount_target_swapped_for_a_symlink_stays_inside() {
    need_root!();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("host-file"), "host").unwrap();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("v"), "vol").unwrap();
    let log = b.path().join("mountinfo.log");
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/mnt/target", "type": "bind", "source": vol.path(), "options": ["rbind"]
    }));
    b.config["hooks"] = json!({"createContainer": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat /proc/self/mountinfo >> {}", log.display())]
    }]});
    b.args(&["true"]);

    // Swap /mnt/target between a directory and a symlink to `outside`
    // while containers start.
    let target = rootfs.join("mnt/target");
    std::fs::create_dir_all(rootfs.join("mnt")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let (t2, out2) = (target.clone(), outside.path().to_path_buf());
    let swapper = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_dir(&t2);
            let _ = std::os::unix::fs::symlink(&out2, &t2);
            std::thread::yield_now();
            let _ = std::fs::remove_file(&t2);
            let _ = std::fs::create_dir(&t2);
        }
    });
    for i in 0..40 {
        let _ = b.run(&format!("race{i}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.is_empty(), "the hook never ran");
    let out = outside.path().to_string_lossy().into_owned();
    for line in text.lines() {
        let mountpoint = line.split(' ').nth(4).unwrap_or("");
        assert!(
            !mountpoint.starts_with(&out),
            "a mount landed outside the rootfs: {line}"
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_no_mounts_under(outside.path());
}

/// CVE-2025-52565: /dev/console made a symlink (to /proc/sysrq-trigger, say)
/// must not redirect the console bind mount.
#[test]
#[ignore = "needs root"]
fn dev_console_symlink_does_not_redirect_the_pty() {
    need_root!();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    // No tmpfs on /dev: the image's own /dev is used, with a hostile link.
    b.config["mounts"].as_array_mut().unwrap().retain(|m| {
        m["destination"] != "/dev"
            && m["destination"] != "/dev/shm"
            && m["destination"] != "/dev/mqueue"
    });
    std::fs::create_dir_all(rootfs.join("dev/pts")).unwrap();
    std::os::unix::fs::symlink("/proc/sysrq-trigger", rootfs.join("dev/console")).unwrap();
    b.config["process"]["terminal"] = true.into();
    b.sh("stat -c '%F' /dev/console; grep -c sysrq /proc/self/mountinfo; echo END");
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
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&[
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "-b",
        &p,
        "con1",
    ]));
    let out = h.join().unwrap();
    assert!(out.contains("character special file"), "{out:?}");
    assert!(
        out.contains("\n0") || out.contains("\r\n0"),
        "sysrq-trigger got a mount: {out:?}"
    );
    wait_for(|| b.state("con1")["status"] == "stopped", "stopped");
    ok(&b.runc(&["delete", "con1"]));
}

/// CVE-2024-21626 (the other half): nothing of the runtime's reaches the
/// container: only 0, 1, 2 are open in the user process.
#[test]
#[ignore = "needs root"]
fn no_runtime_fd_leaks_into_the_container_or_exec() {
    need_root!();
    let mut b = Bundle::new();
    b.args(&["sleep", "30"]);
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, "fdleak"]));
    let pid = b.state("fdleak")["pid"].as_i64().unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds = fds;
    fds.sort();
    assert_eq!(fds, vec!["0", "1", "2"]);
    let out = ok(&b.runc(&[
        "exec",
        "fdleak",
        "sh",
        "-c",
        "ls /proc/self/fd | sort -n | tr '\\n' ' '",
    ]));
    assert_eq!(out.trim(), "0 1 2 3", "exec leaked fds: {out}");
    ok(&b.runc(&["delete", "--force", "fdleak"]));
}

/// Masking goes through a verified /dev/null: a container-supplied
/// /dev/null that is not char 1:3 is refused (CVE-2025-31133).
#[test]
#[ignore = "needs root"]
fn masking_refuses_a_fake_dev_null() {
    need_root!();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    b.config["mounts"].as_array_mut().unwrap().retain(|m| {
        m["destination"] != "/dev"
            && m["destination"] != "/dev/shm"
            && m["destination"] != "/dev/mqueue"
            && m["destination"] != "/dev/pts"
    });
    // linux.devices would recreate it: make the image's /dev/null a file
    // and ask for no devices.
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    let fake = rootfs.join("dev/fake-null");
    std::fs::write(&fake, "").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o666)).unwrap();
    b.args(&["true"]);
    // With the default devices created by the runtime, /dev/null is real:
    // masking works.
    ok(&b.run("mask-ok"));
    // Now replace /dev/null with a symlink to a writable proc file after the
    // runtime's device step: simulate by a bind of a regular file over it.
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/dev/null", "type": "bind", "source": fake, "options": ["bind"]
    }));
    let o = b.run("mask-bad");
    assert!(!o.status.success(), "a fake /dev/null was used for masking");
    assert!(stderr(&o).contains("/dev/null"), "{}", stderr(&o));
    assert!(!b.state_root().join("mask-bad").exists());
}

/// CVE-2019-5736: an entrypoint `#!/proc/self/exe` makes the runtime's final
/// execve run whatever /proc/self/exe is at that moment. It must be the
/// sealed exec helper, never hako-runc: the helper refuses (exit 127)
/// where hako-runc would have started inside the container (and printed its
/// usage, exit 2), and the host binary stays unchanged. Same for `exec`.
#[test]
#[ignore = "needs root"]
fn proc_self_exe_trampoline_cannot_reach_the_host_binary() {
    need_root!();
    let host_bin = std::fs::read(bin()).unwrap();
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    // Give the runtime binary its libraries inside, so that reaching it
    // would really run it.
    let ldd = std::process::Command::new("ldd")
        .arg(bin())
        .output()
        .unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dst = rootfs.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dst).unwrap();
    }
    let tramp = rootfs.join("trampoline");
    std::fs::write(&tramp, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&tramp, std::fs::Permissions::from_mode(0o755)).unwrap();
    b.args(&["/trampoline"]);
    let o = b.run("tramp");
    assert_eq!(
        o.status.code(),
        Some(127),
        "the trampoline reached something other than the sealed helper: {o:?}"
    );
    assert!(
        !stdout(&o).contains("Usage") && !stderr(&o).contains("Usage"),
        "{o:?}"
    );

    // exec: the same trampoline through `hako-runc exec`.
    b.args(&["sleep", "30"]);
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, "tramp2"]));
    let o = b.runc(&["exec", "tramp2", "/trampoline"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(!stderr(&o).contains("Usage"), "{o:?}");
    ok(&b.runc(&["delete", "--force", "tramp2"]));
    assert_eq!(
        std::fs::read(bin()).unwrap(),
        host_bin,
        "the host binary changed"
    );
}

/// The container's process never has hako-runc as its executable.
#[test]
#[ignore = "needs root"]
fn the_container_process_is_never_the_runtime_binary() {
    need_root!();
    let mut b = Bundle::new();
    b.args(&["sleep", "30"]);
    let p = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &p, "notrt"]));
    let pid = b.state("notrt")["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("busybox"), "{exe:?}");
    ok(&b.runc(&["delete", "--force", "notrt"]));
}

/// Rootless: an unprivileged user runs a `spec --rootless` bundle; uid 0
/// inside is the user outside; state goes under $XDG_RUNTIME_DIR; cgroups
/// are skipped with one line saying so; more than one's own id needs
/// newuidmap and a subuid range, and the error says which.
#[test]
#[ignore = "needs root"]
fn rootless_container_maps_root_to_the_user() {
    need_root!();
    // The unprivileged user scripts/setup.sh creates (else nobody).
    let nobody: u32 = std::process::Command::new("id")
        .args(["-u", "hakotest"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(65534);
    let ids = format!("{nobody}:{nobody}");
    let top = tempfile::Builder::new()
        .prefix("hako-rootless-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = top.path().join("bundle");
    let st = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/make-bundle.sh"
        ))
        .arg(&bundle)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(bundle.join("config.json")).unwrap();
    let xdg = top.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    let chown = |p: &std::path::Path| {
        let st = std::process::Command::new("chown")
            .args(["-R", &ids])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown(&bundle);
    chown(&xdg);
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        let id = nobody.to_string();
        c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "env"])
            .arg(format!("XDG_RUNTIME_DIR={}", xdg.display()))
            .arg(bin())
            .args(args)
            .current_dir(&bundle);
        run_with_timeout(c, std::time::Duration::from_secs(30))
    };
    ok(&as_nobody(&["spec", "--rootless"]));
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["linux"]["uidMappings"][0]["hostID"], nobody);
    cfg["process"]["terminal"] = false.into();
    // A volume owned by the user: what root inside creates there belongs to
    // the user on the host.
    let vol = top.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    chown(&vol);
    cfg["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": vol, "options": ["rbind"]
    }));
    cfg["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /tmp/x 2>&1 | grep -c Read-only; touch /data/made-inside"
    ]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let b = bundle.to_string_lossy().into_owned();
    let o = as_nobody(&["run", "-b", &b, "rl1"]);
    let out = ok(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        vec!["0".to_string(), nobody.to_string(), "1".to_string()]
    );
    let made = std::fs::metadata(vol.join("made-inside")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&made),
        nobody,
        "file not owned by the user"
    );
    assert_eq!(l[2], "1", "the rootless spec's root is read-only");
    let e = stderr(&o);
    assert_eq!(e.matches("cgroups skipped").count(), 1, "{e}");
    assert!(
        xdg.join("hako-runc").is_dir(),
        "state not under XDG_RUNTIME_DIR"
    );
    assert_eq!(state_left(&xdg.join("hako-runc")), Vec::<String>::new());

    // A range beyond one's own uid needs newuidmap and /etc/subuid.
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let o = as_nobody(&["run", "-b", &b, "rl2"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("newuidmap") && e.contains("linux.uidMappings"),
        "{e}"
    );
    assert_eq!(state_left(&xdg.join("hako-runc")), Vec::<String>::new());
}

/// Bad security input is refused at create, naming the problem, with
/// nothing left behind.
#[test]
#[ignore = "needs root"]
fn bad_seccomp_and_mappings_are_refused_at_create() {
    need_root!();
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"seccomp": {"defaultAction": "SCMP_ACT_NOPE"}}),
            "seccomp",
            "SCMP_ACT_NOPE",
        ),
        (
            json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]}}),
            "seccomp",
            "SCMP_ARCH_NOPE",
        ),
        (
            json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]}}),
            "seccomp",
            "not_a_syscall",
        ),
        (
            json!({"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 0}],
                   "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
            "user",
            "uidMappings",
        ),
    ];
    for (i, (extra, kind, want)) in cases.into_iter().enumerate() {
        let mut b = Bundle::new();
        for (k, v) in extra.as_object().unwrap() {
            b.config["linux"][k] = v.clone();
        }
        if kind == "user" {
            b.config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
        }
        let id = format!("badsec{i}");
        let o = b.runc(&["create", "-b", &b.path().to_string_lossy(), &id]);
        assert!(!o.status.success(), "case {i} accepted");
        let e = stderr(&o);
        assert!(e.contains(want), "case {i}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "case {i}: {e}");
        assert!(!b.state_root().join(&id).exists());
        assert_no_mounts_under(b.path());
    }
}

/// Without capabilities, root in the container cannot chown files or
/// change the hostname.
#[test]
#[ignore = "needs root"]
fn no_capabilities_means_no_chown_and_no_hostname() {
    need_root!();
    let mut b = Bundle::new();
    b.config["process"]["capabilities"] =
        json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
    b.sh("touch /dev/shm/f; chown 1000 /dev/shm/f 2>&1; hostname other 2>&1; hostname; grep CapEff /proc/self/status");
    let out = ok(&b.run("nocaps"));
    assert!(out.contains("Operation not permitted"), "{out}");
    assert_eq!(out.matches("Operation not permitted").count(), 2, "{out}");
    assert!(out.contains("\nhako\n"), "hostname changed: {out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
}

/// CVE-2025-52881: /proc writes must not follow over-mounts in a mount
/// namespace the container shares. Container A bind-mounts a host file over
/// /proc/sys/net/ipv4/ip_forward in its mount namespace; B joins that mount
/// namespace and sets net.ipv4.ip_forward for its own network namespace.
/// The write must reach B's network namespace, not the planted file.
#[test]
#[ignore = "needs root"]
fn sysctl_writes_ignore_over_mounts_in_a_joined_mount_namespace() {
    need_root!();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("fake"), "0\n").unwrap();
    let mut a = Bundle::new();
    for set in ["bounding", "effective", "permitted"] {
        a.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push("CAP_SYS_ADMIN".into());
    }
    a.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/host", "type": "bind", "source": host.path(), "options": ["rbind"]
    }));
    a.sh("mount --bind /host/fake /proc/sys/net/ipv4/ip_forward && echo planted > /dev/shm/ready; sleep 30");
    let pa = a.path().to_string_lossy().into_owned();
    ok(&a.runc(&["run", "-d", "-b", &pa, "procA"]));
    let apid = a.state("procA")["pid"].as_i64().unwrap();
    wait_for(
        || std::path::Path::new(&format!("/proc/{apid}/root/dev/shm/ready")).exists(),
        "A to plant its mount",
    );

    let mut b = Bundle::new();
    b.config["root"]["path"] = "/".into();
    b.config["mounts"] = json!([]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network"},
        {"type": "mount", "path": format!("/proc/{apid}/ns/mnt")},
    ]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.args(&["sleep", "30"]);
    let pb = b.path().to_string_lossy().into_owned();
    ok(&b.runc(&["run", "-d", "-b", &pb, "procB"]));
    let bpid = b.state("procB")["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(host.path().join("fake")).unwrap(),
        "0\n",
        "the sysctl write followed the planted mount"
    );
    let v = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{bpid}/ns/net"))
        .args(["cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "1");
    ok(&b.runc(&["delete", "--force", "procB"]));
    ok(&a.runc(&["delete", "--force", "procA"]));
}

/// A bundle whose init is the exe attacker (tests/fixtures/exe_attacker.c)
/// with CAP_SYS_PTRACE and no user namespace, logging to /attack.log.
fn attacker_bundle() -> (Bundle, std::path::PathBuf) {
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    std::fs::copy(exe_attacker(), rootfs.join("attacker")).unwrap();
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push("CAP_SYS_PTRACE".into());
    }
    b.args(&["/attacker", "/attack.log", "60"]);
    (b, rootfs.join("attack.log"))
}

/// `hako-runc` copied to a temp dir: the attack's target, so a successful
/// attack cannot damage the build.
fn runtime_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("hako-runc");
    std::fs::copy(bin(), &p).unwrap();
    (d, p)
}

fn runc_with(rt: &std::path::Path, b: &Bundle, args: &[&str]) -> std::process::Output {
    b.write();
    let mut c = std::process::Command::new(rt);
    c.arg("--root").arg(b.state_root()).args(args);
    run_with_timeout(c, std::time::Duration::from_secs(30))
}

/// Repeat `victim` until the attacker holds the runtime's exe, then wait
/// for its verdict.
fn attack_until_opened(log: &std::path::Path, mut victim: impl FnMut(usize)) -> String {
    let start = std::time::Instant::now();
    let mut i = 0;
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("opened")
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "the attacker never caught the runtime inside the container ({i} tries): the test proves nothing"
        );
        victim(i);
        i += 1;
    }
    attacker_verdict(log, std::time::Duration::from_secs(40))
}

/// CVE-2019-5736 with CAP_SYS_PTRACE: a container process holds
/// /proc/PID/exe of `hako-runc exec` (and of an init that joins its pid
/// namespace) while the runtime is inside, and reopens it for writing once
/// the runtime has exited. Both run from a read-only mount of the binary,
/// so the write fails with EROFS and the host binary stays as it was.
/// Without the defence the attacker logs "overwrote".
#[test]
#[ignore = "needs root"]
fn ptrace_capable_container_cannot_overwrite_the_runtime() {
    need_root!();
    let (_d, rt) = runtime_copy();
    let before = std::fs::read(&rt).unwrap();

    // exec
    let (b, log) = attacker_bundle();
    let p = b.path().to_string_lossy().into_owned();
    ok(&runc_with(&rt, &b, &["run", "-d", "-b", &p, "ptr-exec"]));
    let v = attack_until_opened(&log, |_| {
        let _ = runc_with(&rt, &b, &["exec", "ptr-exec", "true"]);
    });
    assert!(
        v.contains("refused") && v.contains("Read-only file system"),
        "exec: {v}"
    );
    assert_eq!(std::fs::read(&rt).unwrap(), before, "exec: binary changed");
    let _ = runc_with(&rt, &b, &["delete", "--force", "ptr-exec"]);

    // create/run joining the attacker's pid namespace
    let (b, log) = attacker_bundle();
    let p = b.path().to_string_lossy().into_owned();
    ok(&runc_with(&rt, &b, &["run", "-d", "-b", &p, "ptr-pid"]));
    let pid = b.state("ptr-pid")["pid"].as_i64().unwrap();
    let mut j = Bundle::new();
    j.args(&["true"]);
    for ns in j.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "pid" {
            ns["path"] = format!("/proc/{pid}/ns/pid").into();
        }
    }
    let jp = j.path().to_string_lossy().into_owned();
    let v = attack_until_opened(&log, |i| {
        let id = format!("ptr-join-{i}");
        let _ = runc_with(&rt, &j, &["run", "-b", &jp, &id]);
        let _ = runc_with(&rt, &j, &["delete", "--force", &id]);
    });
    assert!(
        v.contains("refused") && v.contains("Read-only file system"),
        "create in a joined pid namespace: {v}"
    );
    assert_eq!(
        std::fs::read(&rt).unwrap(),
        before,
        "create: binary changed"
    );
    let _ = runc_with(&rt, &b, &["delete", "--force", "ptr-pid"]);
}
