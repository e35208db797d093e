//! Regressions for runc's CVE classes: each test sets up the attack and
//! shows it blocked (needs root).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;

/// CVE-2024-21626: a cwd through a leaked fd (/proc/self/fd/N) must never
/// give the container a directory outside its root.
#[test]
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
        let (_, m) = hako_runtime::sys::recv_fd(std::os::fd::AsFd::as_fd(&c)).unwrap();
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
fn rootless_container_maps_root_to_the_user() {
    need_root!();
    let nobody = 65534u32;
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
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown(&bundle);
    chown(&xdg);
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "env",
        ])
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
    cfg["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /tmp/x 2>&1 | grep -c Read-only"
    ]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let b = bundle.to_string_lossy().into_owned();
    let o = as_nobody(&["run", "-b", &b, "rl1"]);
    let out = ok(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        vec!["0", "65534", "1"]
    );
    assert_eq!(l[2], "1", "the rootless spec's root is read-only");
    let e = stderr(&o);
    assert_eq!(e.matches("cgroups skipped").count(), 1, "{e}");
    assert!(
        xdg.join("hako-runc").is_dir(),
        "state not under XDG_RUNTIME_DIR"
    );
    assert_eq!(std::fs::read_dir(xdg.join("hako-runc")).unwrap().count(), 0);

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
    assert_eq!(std::fs::read_dir(xdg.join("hako-runc")).unwrap().count(), 0);
}
