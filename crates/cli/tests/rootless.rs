//! The rootless engine as a new user meets it (needs root to make the
//! user): a user with subordinate id ranges (made here, removed at the
//! end) runs images whose files belong to several users, volumes, exec,
//! logs, stop and stats, `--network none`, and a published port through
//! pasta; a user without ranges gets one line saying how to add them.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::registry::Registry;
use common::*;

/// A user made for one test, with a home, a runtime directory and
/// (optionally) 65536 subordinate uids and gids; all removed on drop,
/// with every process of the user.
struct TestUser {
    name: String,
    uid: u32,
    home: tempfile::TempDir,
    range: Option<u32>,
}

/// useradd, userdel and our edits of /etc/subuid and /etc/subgid are
/// read-modify-writes of the same files: one at a time in this process.
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn accounts() -> std::sync::MutexGuard<'static, ()> {
    ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestUser {
    fn new(tag: &str, with_ranges: bool) -> TestUser {
        let _a = accounts();
        let name = format!("hkr{tag}{}", std::process::id() % 100_000);
        let home = tempfile::Builder::new()
            .prefix("hako-rootless-")
            .tempdir()
            .unwrap();
        let st = Command::new("useradd")
            .args(["-M", "-d"])
            .arg(home.path())
            .args(["-s", "/bin/sh", &name])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
        let o = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid: u32 = stdout(&o).trim().parse().unwrap();
        // useradd may have given ranges already (SUB_UID_COUNT): ours
        // replace them, or none at all for the user without.
        for f in ["/etc/subuid", "/etc/subgid"] {
            remove_lines_of(f, &name);
        }
        // A range of its own, far from the usual 100000+ ones.
        // Distinct per user: a test with two users must not give both the
        // same host ids.
        let slot = (std::process::id() % 1000) * 16 + u32::from(tag.as_bytes()[0] % 16);
        let range = with_ranges.then(|| 300_000_000 + slot * 131_072);
        if let Some(start) = range {
            for f in ["/etc/subuid", "/etc/subgid"] {
                let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
                writeln!(file, "{name}:{start}:65536").unwrap();
            }
        }
        std::os::unix::fs::chown(home.path(), Some(uid), Some(uid)).unwrap();
        for d in ["data", "run"] {
            std::fs::create_dir(home.path().join(d)).unwrap();
            std::os::unix::fs::chown(home.path().join(d), Some(uid), Some(uid)).unwrap();
        }
        std::fs::set_permissions(
            home.path().join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        TestUser {
            name,
            uid,
            home,
            range,
        }
    }

    fn data(&self) -> PathBuf {
        self.home.path().join("data/hako")
    }

    /// `hako ARGS` as the user, in a login-like environment.
    fn hako(&self, args: &[&str]) -> Output {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--init-groups", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.home.path().display()))
            .arg(format!("USER={}", self.name))
            .arg(format!("XDG_DATA_HOME={}/data", self.home.path().display()))
            .arg(format!(
                "XDG_RUNTIME_DIR={}/run",
                self.home.path().display()
            ))
            .arg(env!("CARGO_BIN_EXE_hako"))
            .args(args)
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_with_timeout(c, Duration::from_secs(120))
    }

    /// A busybox root filesystem of the user's, imported as `busybox`.
    fn import_busybox(&self) {
        let root = self.home.path().join("bb");
        let st = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-bundle.sh"))
            .arg(&root)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("chown")
            .args(["-R", &format!("{0}:{0}", self.uid)])
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        self.ok(&["import", root.join("rootfs").to_str().unwrap(), "busybox"]);
    }

    /// `run --rm IMAGE sh -c SCRIPT`'s output.
    fn sh(&self, image: &str, script: &str) -> String {
        self.ok(&["run", "--rm", image, "sh", "-c", script])
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.hako(args);
        assert!(
            o.status.success(),
            "hako {args:?} as {}: exit {:?}\nstdout: {}\nstderr: {}",
            self.name,
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let ids = stdout(&self.hako(&["ps", "-aq"]));
        for id in ids.split_whitespace() {
            let _ = self.hako(&["rm", "-f", id]);
        }
        let _ = Command::new("pkill")
            .args(["-KILL", "-U", &self.uid.to_string()])
            .status();
        let _ = wait_for_none(self.uid);
        // Files of the user's range (unpacked images, volumes) are the
        // user's to remove only from inside: root removes them here.
        let _a = accounts();
        let _ = Command::new("userdel").arg(&self.name).status();
        for f in ["/etc/subuid", "/etc/subgid"] {
            remove_lines_of(f, &self.name);
        }
        common::host::umount_under(self.home.path());
        let _ = std::fs::remove_dir_all(self.home.path());
    }
}

fn wait_for_none(uid: u32) -> bool {
    common::host::poll(Duration::from_secs(10), || {
        let any = std::fs::read_dir("/proc").ok()?.flatten().any(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
                && e.file_name().to_string_lossy().parse::<u32>().is_ok()
        });
        (!any).then_some(())
    })
    .is_some()
}

fn remove_lines_of(file: &str, name: &str) {
    let Ok(s) = std::fs::read_to_string(file) else {
        return;
    };
    let kept: String = s
        .lines()
        .filter(|l| l.split(':').next() != Some(name))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(file, kept).unwrap();
}

/// A host port nobody holds now (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
#[ignore = "needs root"]
fn rootless_user_with_subordinate_ids_runs_real_images() {
    need_root!();
    let reg = Registry::start();
    let u = TestUser::new("a", true);
    let start = u.range.unwrap();
    let image = format!("127.0.0.1:{}/owners:latest", reg.port);
    u.ok(&["pull", &image]);

    // uid 0 is the user, 1.. the range; -u works for a mapped id.
    let out = u.sh(&image, "cat /proc/self/uid_map; id -u");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", &u.uid.to_string(), "1"], "{out}");
    assert_eq!(lines[1], ["1", &start.to_string(), "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_eq!(
        u.ok(&["run", "--rm", "-u", "1000", &image, "id", "-u"])
            .trim(),
        "1000"
    );

    // The image's own owners, as in the registry.
    let out = u.sh(
        &image,
        "ls -lnd /srv/www/index.html /home/user/notes /bin/busybox",
    );
    let owners: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[3].to_string())
        })
        .collect();
    assert_eq!(
        owners,
        [("0", "0"), ("1000", "1000"), ("33", "33")].map(|(a, b)| (a.to_string(), b.to_string())),
        "{out}"
    );

    // A rootless build: RUN and COPY --chown keep the image's owners,
    // and the result runs.
    let ctx = u.home.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {image}\nRUN mkdir /made && echo built > /made/f && chown 1000:1000 /made/f\nCOPY --chown=33:33 note /srv/www/note\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("note"), "copied\n").unwrap();
    for f in ["", "Containerfile", "note"] {
        std::os::unix::fs::chown(ctx.join(f), Some(u.uid), Some(u.uid)).unwrap();
    }
    u.ok(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "localhost/rl-built:1",
        ctx.to_str().unwrap(),
    ]);
    let out = u.sh(
        "localhost/rl-built:1",
        "stat -c '%u:%g' /made/f /srv/www/note; cat /made/f /srv/www/note",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000:1000", "33:33", "built", "copied"],
        "{out}"
    );

    // A volume written inside belongs to the mapped ids outside.
    u.ok(&[
        "run",
        "--rm",
        "-v",
        "vol:/data",
        &image,
        "sh",
        "-c",
        "touch /data/g; mkdir /data/u; chown 1000:1000 /data/u",
    ]);
    u.ok(&[
        "run",
        "--rm",
        "-v",
        "vol:/data",
        "-u",
        "1000",
        &image,
        "touch",
        "/data/u/f",
    ]);
    let vol = u.data().join("volumes/vol/_data");
    let owner =
        |f: &str| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(vol.join(f)).unwrap());
    assert_eq!(owner("u/f"), start + 999);
    assert_eq!(owner("g"), u.uid);

    // keep-id: the user's own id inside, the image still root's, and a
    // file made in a bind mount is the user's on the host.
    let shared = u.home.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(u.uid), Some(u.uid)).unwrap();
    let bind = format!("{}:/h", shared.display());
    let out = u.ok(&[
        "run",
        "--rm",
        "--userns",
        "keep-id",
        "-v",
        &bind,
        &image,
        "sh",
        "-c",
        "id -u; stat -c %u /etc/passwd; touch /h/mine",
    ]);
    assert_eq!(out, format!("{}\n0\n", u.uid));
    let mine = std::fs::metadata(shared.join("mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&mine), u.uid);
    // Its shifted copy of the image went with the last container using it.
    let copies = std::fs::read_dir(u.data().join("image/idmapped"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(copies, 0, "a shifted copy outlived its containers");

    // A detached container: exec (also as another user), logs, stats, stop.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "d",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "echo started; sleep 600",
    ]);
    assert_eq!(
        u.ok(&["exec", "d", "sh", "-c", "echo in-exec; id -u"]),
        "in-exec\n0\n"
    );
    assert_eq!(u.ok(&["exec", "-u", "33", "d", "id", "-u"]).trim(), "33");
    let o = u.hako(&["exec", "d", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(u.ok(&["logs", "d"]), "started\n");
    let stats = u.ok(&["stats", "--no-stream", "--format", "{{.Name}}", "d"]);
    assert_eq!(stats.trim(), "d", "{stats}");
    u.ok(&["stop", "-t", "1", "d"]);
    let st = u.ok(&["inspect", "-f", "{{.State.Status}}", "d"]);
    assert_eq!(st.trim(), "exited");

    // --network none: lo alone.
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "ip",
        "-o",
        "link",
    ]);
    let links: Vec<&str> = out.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(links, ["lo"], "{out}");

    // The default network is pasta, with -p forwarded from the host; then
    // slirp4netns, podman's other choice (and ours without pasta), its
    // ports through its API socket. Each port is free again after `rm`.
    let serve = |name: &str| {
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:80");
        u.ok(&[
            "run", "-d", "--name", name, "-p", &publish, &image, "httpd", "-f", "-p", "80", "-h",
            "/srv/www",
        ]);
        let page = common::host::poll(Duration::from_secs(30), || {
            http_get(port, "/index.html").filter(|r| r.contains("page"))
        });
        assert!(
            page.is_some(),
            "{name}: no answer from the published port {port}"
        );
        u.ok(&["rm", "-f", name]);
        common::host::poll(Duration::from_secs(10), || {
            std::net::TcpListener::bind(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("{name}: port {port} still taken after rm"));
    };
    serve("web");
    let cfg_dir = u.home.path().join(".config/hako");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("hako.toml"),
        "[engine]\nrootless_network_cmd = \"slirp4netns\"\n",
    )
    .unwrap();
    serve("web2");
    std::fs::remove_file(cfg_dir.join("hako.toml")).unwrap();

    // A user network: containers reach each other by name and alias,
    // through the user's own network namespace (no host bridge).
    let bridge = format!("hkrl{}", std::process::id() % 100_000);
    u.ok(&["network", "create", "--bridge", &bridge, "rnet"]);
    u.ok(&[
        "run",
        "-d",
        "--name",
        "n1",
        "--network",
        "rnet",
        &image,
        "sleep",
        "600",
    ]);
    u.ok(&[
        "run",
        "-d",
        "--name",
        "n2",
        "--network",
        "rnet",
        "--network-alias",
        "db",
        &image,
        "sleep",
        "600",
    ]);
    for peer in ["n2", "db"] {
        let out = u.ok(&["exec", "n1", "ping", "-c", "1", "-W", "5", peer]);
        assert!(out.contains("1 packets received"), "{out}");
    }
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "a rootless network made a host bridge"
    );
    // -p there: through hako's forwarder (a host port, the container's
    // address in the user's network namespace), free again after rm; UDP
    // is refused, nothing made.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    u.ok(&[
        "run",
        "-d",
        "--name",
        "n3",
        "--network",
        "rnet",
        "-p",
        &publish,
        &image,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/srv/www",
    ]);
    let page = common::host::poll(Duration::from_secs(30), || {
        http_get(port, "/index.html").filter(|r| r.contains("page"))
    });
    assert!(page.is_some(), "no answer through the forwarder on {port}");
    // Twice more: each connection is relayed on its own.
    for _ in 0..2 {
        assert!(http_get(port, "/index.html").is_some_and(|r| r.contains("page")));
    }
    u.ok(&["rm", "-f", "n3"]);
    common::host::poll(Duration::from_secs(10), || {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("port {port} still taken after rm"));
    let o = u.hako(&[
        "run",
        "-d",
        "--name",
        "n4",
        "--network",
        "rnet",
        "-p",
        "8053:53/udp",
        &image,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(stderr(&o).contains("publishes TCP ports only"), "{o:?}");
    assert!(!u.ok(&["ps", "-a", "--format", "{{.Names}}"]).contains("n4"));
    u.ok(&["rm", "-f", "n1", "n2"]);
    u.ok(&["network", "rm", "rnet"]);
    u.ok(&["rm", "-f", "d"]);
}

#[test]
#[ignore = "needs root"]
fn rootless_user_without_ranges_is_told_how_to_add_them() {
    need_root!();
    let u = TestUser::new("b", false);
    let o = u.hako(&["ps"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("no subordinate ids for") && err.contains("usermod --add-subuids"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Asked for, the single-id map works (the user's id is root inside).
    let cfg = u.home.path().join("hako.toml");
    std::fs::write(&cfg, "[engine]\nrootless_single_id = true\n").unwrap();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.uid))
        .args(["--init-groups", "env"])
        .arg(format!("HAKO_CONFIG={}", cfg.display()))
        .arg(format!("XDG_DATA_HOME={}/data", u.home.path().display()))
        .arg(format!("XDG_RUNTIME_DIR={}/run", u.home.path().display()))
        .arg(env!("CARGO_BIN_EXE_hako"))
        .args(["info", "--format", "{{.Rootless}}"])
        .stdin(Stdio::null());
    let o = run_with_timeout(c, Duration::from_secs(60));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "true");
}

/// The rootless engine gives its user nothing the user could not reach
/// without it: its state is the user's alone, and neither a bind mount
/// nor container root opens what the user cannot open.
#[test]
#[ignore = "needs root"]
fn rootless_user_reaches_nothing_more_through_hako() {
    need_root!();
    let u = TestUser::new("c", true);
    u.import_busybox();
    u.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "none",
        "-v",
        "v:/v",
        "busybox",
        "sleep",
        "600",
    ]);

    // State: the roots are the user's and owner-only; nothing of hako's
    // own below them (outside the image's and volumes' content) is
    // writable by others.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let data = u.data();
    let run = u.home.path().join("run/hako");
    for d in [&data, &run] {
        let m = std::fs::metadata(d).unwrap();
        assert_eq!(
            (m.uid(), m.permissions().mode() & 0o777),
            (u.uid, 0o700),
            "{}",
            d.display()
        );
    }
    fn walk(p: &Path, bad: &mut Vec<String>) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // The image's and the containers' own files are theirs to set.
        if ["layers", "upper", "work", "merged", "_data", "idmapped"].contains(&name.as_str()) {
            return;
        }
        if !m.file_type().is_symlink() && m.permissions().mode() & 0o002 != 0 {
            bad.push(format!("{} {:o}", p.display(), m.permissions().mode()));
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), bad);
            }
        }
    }
    let mut bad = Vec::new();
    walk(&data, &mut bad);
    walk(&run, &mut bad);
    assert!(bad.is_empty(), "writable by others: {bad:?}");

    // Probes the user cannot open: a root-only directory and file, the
    // host's shadow file, and a directory of root's binaries to write.
    let secret = tempfile::Builder::new()
        .prefix("hako-secret-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(secret.path(), PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(secret.path().join("key"), "secret").unwrap();
    std::fs::set_permissions(secret.path().join("key"), PermissionsExt::from_mode(0o600)).unwrap();
    let as_user = |cmd: &str| {
        Command::new("setpriv")
            .arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.uid))
            .args(["--init-groups", "sh", "-c", cmd])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let key = secret.path().join("key");
    let dir = secret.path().display().to_string();
    for (probe, plain, through) in [
        (
            "read a root-only directory",
            format!("ls {dir}"),
            vec![
                "run",
                "--rm",
                "-v",
                &format!("{dir}:/s"),
                "busybox",
                "ls",
                "/s",
            ],
        ),
        (
            "read a root-only file",
            format!("cat {}", key.display()),
            vec![
                "run",
                "--rm",
                "-v",
                &format!("{}:/k", key.display()),
                "busybox",
                "cat",
                "/k",
            ],
        ),
        (
            "read /etc/shadow",
            "cat /etc/shadow".into(),
            vec![
                "run",
                "--rm",
                "-v",
                "/etc/shadow:/s",
                "busybox",
                "cat",
                "/s",
            ],
        ),
        (
            "write into /usr/bin",
            "touch /usr/bin/hako-probe".into(),
            vec![
                "run",
                "--rm",
                "-v",
                "/usr/bin:/b",
                "busybox",
                "touch",
                "/b/hako-probe",
            ],
        ),
        (
            "make a device node",
            "mknod /tmp/hako-null c 1 3".into(),
            vec![
                "run",
                "--rm",
                "busybox",
                "mknod",
                "/dev/hako-null",
                "c",
                "1",
                "3",
            ],
        ),
    ] {
        let args: Vec<&str> = through.iter().map(|s| s.as_ref()).collect();
        assert!(
            !as_user(&plain),
            "the user alone can {probe}: the probe is wrong"
        );
        let o = u.hako(&args);
        assert!(
            !o.status.success(),
            "through hako the user can {probe}: {}",
            stdout(&o)
        );
    }
    assert!(!Path::new("/usr/bin/hako-probe").exists());
    // Another user cannot use this user's engine: its state is unreachable.
    let other = TestUser::new("d", true);
    let o = Command::new("setpriv")
        .arg(format!("--reuid={}", other.uid))
        .arg(format!("--regid={}", other.uid))
        .args(["--init-groups", "env"])
        .arg(format!("HOME={}", other.home.path().display()))
        .arg(format!("HAKO_DATA_DIR={}", data.display()))
        .arg(format!("HAKO_RUN_DIR={}", run.display()))
        .arg(format!(
            "XDG_RUNTIME_DIR={}/run",
            other.home.path().display()
        ))
        .arg(env!("CARGO_BIN_EXE_hako"))
        .args(["ps", "-a"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied"),
        "{o:?}"
    );
    // A runtime directory someone else made first (as /tmp/hako-UID can
    // be) is refused, not used.
    let squat = secret.path().join("run-of-someone-else");
    std::fs::create_dir(&squat).unwrap();
    std::fs::set_permissions(secret.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&squat, PermissionsExt::from_mode(0o777)).unwrap();
    let o = Command::new("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.uid))
        .args(["--init-groups", "env"])
        .arg(format!("HOME={}", u.home.path().display()))
        .arg(format!("XDG_DATA_HOME={}/data", u.home.path().display()))
        .arg(format!("HAKO_RUN_DIR={}", squat.display()))
        .arg(env!("CARGO_BIN_EXE_hako"))
        .args(["ps"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("must be yours and 0700"),
        "{o:?}"
    );
    assert!(!squat.join("pause.pid").exists());
    u.ok(&["rm", "-f", "c"]);
}

/// `mount_program` (podman's setting): container roots through
/// fuse-overlayfs instead of the kernel's overlayfs, said in inspect,
/// and gone (mount and daemon) with the container.
#[test]
#[ignore = "needs root"]
fn rootless_roots_through_fuse_overlayfs_when_configured() {
    need_root!();
    assert!(
        Path::new("/usr/bin/fuse-overlayfs").is_file(),
        "needs fuse-overlayfs (scripts/setup.sh installs it)"
    );
    let u = TestUser::new("f", true);
    let cfg_dir = u.home.path().join(".config/hako");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("hako.toml"),
        "[engine]\nmount_program = \"/usr/bin/fuse-overlayfs\"\n",
    )
    .unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{0}:{0}", u.uid)])
        .arg(u.home.path().join(".config"))
        .status()
        .unwrap();
    assert!(st.success());
    u.import_busybox();
    u.ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo kept > /etc/mine; sleep 600",
    ]);
    let driver = u.ok(&["inspect", "-f", "{{.GraphDriver.Name}}", "f"]);
    assert_eq!(driver.trim(), "fuse-overlayfs");
    assert_eq!(
        common::host::poll(Duration::from_secs(30), || {
            let o = u.hako(&["exec", "f", "cat", "/etc/mine"]);
            o.status.success().then(|| stdout(&o))
        })
        .as_deref(),
        Some("kept\n")
    );
    let daemons = || {
        common::host::pids_mentioning("fuse-overlayfs")
            .into_iter()
            .filter(|p| {
                std::fs::metadata(format!("/proc/{p}"))
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == u.uid)
            })
            .count()
    };
    assert_eq!(daemons(), 1);
    u.ok(&["rm", "-f", "f"]);
    common::host::poll(Duration::from_secs(10), || (daemons() == 0).then_some(()))
        .expect("the fuse-overlayfs daemon ends with its container");
}
