//! End-to-end tests of the `hako` engine (root only: `#[ignore]`d, run as
//! root with --include-ignored).
//!
//! Each test has its own data and run roots (`--data-root/--run-root` via
//! HAKO_DATA_DIR/HAKO_RUN_DIR), its own nft table, and cleans up through a
//! Drop guard: containers, networks, mounts, directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::criu::criu_works;
use common::{attacker_verdict, fixture_binary};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            panic!("needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
        }
    };
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hako")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A busybox-static rootfs (scripts/make-bundle.sh), built once.
fn busybox_rootfs() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        // Leftovers of earlier runs (their process is gone) go first: the
        // rootfs and the built fixtures of each test binary's run.
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name
                    .strip_prefix("hako-engine-bb-")
                    .or_else(|| name.strip_prefix("hako-engine-fixtures-"));
                if let Some(pid) = pid {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("hako-engine-bb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/make-bundle.sh"))
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .expect("run make-bundle.sh");
        assert!(st.success(), "make-bundle.sh failed");
        dir.join("rootfs")
    })
}

/// One test's engine: its own roots, settings file, default network
/// (bridge and subnet) and nft table; everything removed on drop. So test
/// runs (and a real hako) on one host do not share addresses.
struct Engine {
    dir: tempfile::TempDir,
    nft: String,
    networks: Vec<String>,
    /// The default network's subnet in this engine's settings file.
    subnet_prefix: String,
}

impl Engine {
    fn new(tag: &str) -> Engine {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hako-e-{tag}-"))
            .tempdir()
            .unwrap();
        static ENGINES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 64;
        let pid = std::process::id();
        let subnet_prefix = format!("10.{}.{n}.", 100 + pid % 50);
        std::fs::write(
            dir.path().join("hako.toml"),
            format!(
                "[network]\ndefault_bridge = \"hkt{}x{n}\"\ndefault_subnet = \"{subnet_prefix}0/24\"\n\
                 subnet_pool = \"10.{}.{}.0/22\"\n",
                pid % 100_000,
                150 + pid % 50,
                n * 4
            ),
        )
        .unwrap();
        let e = Engine {
            dir,
            // Its own nft table too: engines of one test process share no
            // IPAM lock, so one's `network rm` (which drops the table once
            // empty) could race another's `network create` on a shared one.
            nft: format!("hakot{}x{n}", pid % 100_000),
            networks: Vec::new(),
            subnet_prefix,
        };
        let o = e.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("sha256:"));
        e
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(Path::new(bin()), args)
    }

    /// `cmd` through another copy of the hako binary.
    fn cmd_with(&self, exe: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(exe);
        c.args(args)
            .env("HAKO_DATA_DIR", self.data())
            .env("HAKO_RUN_DIR", self.dir.path().join("run"))
            .env("HAKO_NFT_TABLE", &self.nft)
            .env("HAKO_CONFIG", self.dir.path().join("hako.toml"))
            .stdin(Stdio::null());
        c
    }

    /// Run with a timeout; the output whatever the exit status.
    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hako");
        wait_output(child, Duration::from_secs(60), args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "hako {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Bad input: exit 125 with `want` in its message; the message.
    fn fails(&self, args: &[&str], want: &str) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        err
    }

    /// `run -d --name NAME FLAGS… --network none busybox sh -c SCRIPT`.
    fn run_sh(&self, name: &str, flags: &[&str], script: &str) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--network", "none", "busybox", "sh", "-c", script]);
        self.ok(&args);
    }

    fn out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.out(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// The monitor's own error output (its stderr) of container `name`:
    /// shown when a test finds a container in a state only a failing
    /// monitor leaves.
    fn monitor_log(&self, name: &str) -> String {
        let id = self.inspect(name)["Id"].as_str().unwrap_or("").to_string();
        std::fs::read_to_string(self.data().join("containers").join(id).join("monitor.log"))
            .unwrap_or_else(|e| format!("(no monitor.log: {e})"))
    }

    fn ps_names(&self) -> Vec<String> {
        self.out(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["Names"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

fn wait_output(mut child: Child, timeout: Duration, what: &[&str]) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "hako {what:?} timed out; stdout: {} stderr: {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(o) = self.cmd(&["ps", "-a", "-q"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        for n in &self.networks {
            let _ = self.cmd(&["network", "rm", n]).output();
        }
        // The default network, if a test used it (its bridge and nft table).
        let _ = self.cmd(&["network", "rm", "hako"]).output();
        // Anything still mounted under our roots (a failed test's rootfs).
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.dir.path().to_string_lossy().into_owned();
            let mut points: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").args(["-l", p]).status();
            }
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn own_hostname_pid1_and_proc() {
    need_root!();
    let e = Engine::new("basic");
    let o = e.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "hostname; echo pid=$$; ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/pid; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "exit code passes through: {o:?}");
    let s = stdout(&o);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "pid=1");
    // Its own /proc: only the container's few processes.
    assert!(lines[2].parse::<u32>().unwrap() < 5, "{s}");
    let host_pid = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(lines[3], host_pid.to_string_lossy());
    // --rm removed it.
    assert!(e.ps_names().is_empty());
    // --uts host: the host's name, as Docker shows it (issue 14).
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uts",
        "host",
        "busybox",
        "hostname",
    ]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(stdout(&o).trim(), host.trim());
    for flag in ["--hostname", "--domainname"] {
        let o = e.run(&[
            "run", "--rm", "--uts", "host", flag, "x.org", "busybox", "true",
        ]);
        assert_eq!(o.status.code(), Some(125));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{flag} and --uts host")), "{err}");
    }
}

/// Issue 14: `-v ../../x:/data` used to create `<data>/../../x/_data` (and
/// `-v ..:/x` the data root's own `_data`). A volume name that is not one
/// is refused with Docker's exit code, and nothing is created.
#[test]
#[ignore = "needs root"]
fn volume_names_cannot_escape_the_volumes_dir() {
    need_root!();
    let e = Engine::new("volname");
    let outside = e.dir.path().join("x");
    for v in ["../../x:/data", "..:/x", "../x:/data"] {
        let o = e.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            v,
            "busybox",
            "true",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{v}: {err}");
        assert!(err.contains("is not a volume name"), "{v}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert!(!outside.exists(), "{} was created", outside.display());
    assert!(!e.data().join("_data").exists());
    assert!(!e.dir.path().join("_data").exists());
    assert!(e.ps_names().is_empty(), "no record left behind");
}

/// Issue 14: a host port has one owner. A second `-p` on a port another
/// container publishes, or that a host program holds, is refused naming
/// the owner (exit 125), and the failed run leaves no container behind.
#[test]
#[ignore = "needs root"]
fn published_ports_have_one_owner() {
    need_root!();
    let e = Engine::new("ports");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    // A free port for the first container (bound then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = format!("127.0.0.1:{free}:80");
    e.ok(&[
        "run", "-d", "--name", "first", "-p", &p, "busybox", "sleep", "60",
    ]);
    // Reserved while it runs, as podman does: a host program cannot take it.
    assert!(std::net::TcpListener::bind(("127.0.0.1", free)).is_err());
    for detach in [true, false] {
        let mut args = vec!["run", "--name", "second", "-p", &p];
        if detach {
            args.insert(1, "-d");
        }
        args.extend(["busybox", "true"]);
        let o = e.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(
            err.contains("already published by container first"),
            "{err}"
        );
        assert_eq!(
            e.ps_names(),
            vec!["first"],
            "no record left (detach={detach})"
        );
    }
    let hp = format!("127.0.0.1:{held}:80");
    let o = e.run(&["run", "-d", "--name", "third", "-p", &hp, "busybox", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("held by pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(e.ps_names(), vec!["first"]);
    drop(holder);
    // With no container address, -p is discarded with Docker's warning.
    let o = e.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        &hp,
        "busybox",
        "true",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("published ports are discarded"));
    e.ok(&["rm", "-f", "first"]);
    // Released with the container.
    poll(10, "port released", || {
        std::net::TcpListener::bind(("127.0.0.1", free)).ok()
    });
}

#[test]
#[ignore = "needs root"]
fn flags_env_volumes_workdir_readonly_limits() {
    need_root!();
    let e = Engine::new("flags");
    // Everything after the image is the command's, flag-like words too
    // (`-c` is also run's --cpu-shares); an unknown flag before the image
    // is said as one.
    let o = e.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "echo $0",
        "zero",
    ]);
    assert_eq!(o.trim(), "zero");
    e.fails(
        &["run", "--bogus", "busybox", "true"],
        "unknown flag --bogus",
    );
    let vol = e.dir.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("in.txt"), "from-host\n").unwrap();
    let envf = e.dir.path().join("env");
    std::fs::write(&envf, "# comment\nFROMFILE=yes\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "A=1",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/data",
        "-v",
        &v,
        "-v",
        "named1:/named",
        "--tmpfs",
        "/scratch",
        "--read-only",
        "-u",
        "1000:1000",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "echo A=$A F=$FROMFILE cwd=$(pwd) id=$(id -u):$(id -g); cat in.txt; \
         touch /rootfile 2>/dev/null && echo rw || echo ro; \
         touch /scratch/x && echo tmpfs-ok",
    ]);
    let s = stdout(&o);
    assert!(s.contains("A=1 F=yes cwd=/data id=1000:1000"), "{s}");
    assert!(s.contains("from-host"), "{s}");
    assert!(s.contains("\nro\n"), "{s}");
    assert!(s.contains("tmpfs-ok"), "{s}");
    assert!(e.data().join("volumes/named1/_data").is_dir());
    // A working directory the image lacks is made (Docker's and podman's
    // behaviour), even with a read-only root.
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "-w",
        "/not/there",
        "busybox",
        "pwd",
    ]);
    assert_eq!(stdout(&o), "/not/there\n");
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--domainname",
        "example.org",
        "busybox",
        "cat",
        "/proc/sys/kernel/domainname",
    ]);
    assert_eq!(stdout(&o), "example.org\n");
    // The limits go into the spec (and inspect).
    e.ok(&[
        "create",
        "--name",
        "lim",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "busybox",
        "true",
    ]);
    let i = e.inspect("lim");
    assert_eq!(i["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(i["HostConfig"]["PidsLimit"], 50);
    assert_eq!(i["HostConfig"]["NanoCpus"], 500_000_000);
    // Or as a quota per period (Docker's older flags), not with --cpus.
    #[rustfmt::skip]
    e.ok(&[
        "create", "--name", "quota", "--network", "none", "--cpu-quota", "25000",
        "--cpu-period", "50000", "busybox", "true",
    ]);
    let i = e.inspect("quota");
    assert_eq!(i["HostConfig"]["CpuQuota"], 25_000);
    assert_eq!(i["HostConfig"]["CpuPeriod"], 50_000);
    assert_eq!(i["HostConfig"]["NanoCpus"], 0);
    for args in [
        vec!["--cpus", "1", "--cpu-quota", "50000"],
        vec!["--cpu-quota", "10"],
        vec!["--cpu-period", "10"],
    ] {
        let mut a = vec!["create", "--network", "none"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}: {o:?}");
    }
    assert_eq!(i["State"]["Status"], "created");
    // Default capabilities, masked paths and no-new-privileges.
    let caps = i["Capabilities"].as_array().unwrap();
    assert!(caps.iter().any(|c| c == "CAP_CHOWN") && !caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; cat /proc/kcore | wc -c",
    ]);
    assert!(
        stdout(&o).contains("CapEff:\t00000000a80425fb"),
        "{}",
        stdout(&o)
    );
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(!stdout(&o).contains("a80425fb"), "{}", stdout(&o));
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-drop",
        "all",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(stdout(&o).contains("0000000000000000"), "{}", stdout(&o));
    // The default seccomp profile, unless relaxed.
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert!(stdout(&o).contains("2"), "{}", stdout(&o));
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert!(stdout(&o).contains("0"), "{}", stdout(&o));
}

#[test]
#[ignore = "needs root"]
fn imported_docker_export_tarball() {
    need_root!();
    let e = Engine::new("tar");
    let tar = e.dir.path().join("export.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(busybox_rootfs())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    e.ok(&["import", tar.to_str().unwrap(), "exported:v1"]);
    let imgs = e.out(&["images", "--format", "json"]);
    assert!(imgs.contains("exported:v1"), "{imgs}");
    let i: Value = serde_json::from_str(&e.out(&["image", "inspect", "exported:v1"])).unwrap();
    assert_eq!(i[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "exported:v1",
        "sh",
        "-c",
        "echo from-tarball; ls /bin/busybox",
    ]);
    assert!(stdout(&o).contains("from-tarball"));
    e.ok(&["rmi", "exported:v1"]);
    assert!(!e.out(&["images"]).contains("exported"));
}

#[test]
#[ignore = "needs root"]
fn detached_logs_exec_stop_rm() {
    need_root!();
    let e = Engine::new("life");
    let id = e.out(&[
        "run", "-d", "--name", "ticker", "--network", "none", "--memory", "32m", "busybox", "sh", "-c",
        "trap 'echo got-term; exit 0' TERM; i=0; while true; do echo tick $i; echo warn $i >&2; i=$((i+1)); sleep 0.2; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    // logs -f follows until the container stops.
    let follower = e
        .cmd(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Short id prefixes resolve.
    let o = e.ok(&["exec", &id[..6], "sh", "-c", "echo exec-$(hostname)"]);
    assert_eq!(stdout(&o).trim(), format!("exec-{}", &id[..12]));
    let o = e.run(&["exec", "ticker", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let i = e.inspect("ticker");
    assert_eq!(i["State"]["Status"], "running");
    let pid = i["State"]["Pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        i["Namespaces"]["pid"].as_str().unwrap(),
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .unwrap()
            .to_string_lossy()
    );
    assert_eq!(i["HostConfig"]["Memory"], 32 << 20);
    assert!(e.out(&["top", "ticker"]).contains("sleep"));
    let o = e.ok(&[
        "exec",
        "-u",
        "1000",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "ticker",
        "sh",
        "-c",
        "echo $(id -u) $X $(pwd)",
    ]);
    assert_eq!(stdout(&o).trim(), "1000 y /tmp");
    e.ok(&["pause", "ticker"]);
    assert_eq!(e.inspect("ticker")["State"]["Status"], "paused");
    e.ok(&["unpause", "ticker"]);
    assert_eq!(e.inspect("ticker")["State"]["Status"], "running");
    // With its runtime state out of the way (as after a monitor crash),
    // pause and the status fall back to the container's own cgroup: the
    // v1 freezer on a hybrid host, cgroup.freeze on cgroup2.
    let id = e.inspect("ticker")["Id"].as_str().unwrap().to_string();
    let state = e.dir.path().join("run/runtime").join(&id);
    let aside = e.dir.path().join("run/runtime-aside");
    std::fs::rename(&state, &aside).unwrap();
    e.ok(&["pause", "ticker"]);
    assert_eq!(e.inspect("ticker")["State"]["Status"], "paused");
    e.ok(&["unpause", "ticker"]);
    assert_eq!(e.inspect("ticker")["State"]["Status"], "running");
    std::fs::rename(&aside, &state).unwrap();
    let st = e.out(&["stats", "--no-stream", "--format", "json", "ticker"]);
    let st: Value = serde_json::from_str(st.trim()).unwrap();
    assert_eq!(st["Stats"]["memory"]["usage"]["limit"], 32 << 20, "{st}");
    let ps = e.out(&["ps"]);
    assert!(ps.contains("ticker") && ps.contains("Up"), "{ps}");

    // It ran long enough to log three ticks (the steps above take about
    // as long as two), then SIGTERM reached it: its trap logs got-term
    // (checked below).
    poll(10, "three ticks in the log", || {
        e.out(&["logs", "ticker"]).contains("tick 2").then_some(())
    });
    e.ok(&["stop", "-t", "5", "ticker"]);
    let logs = wait_output(follower, Duration::from_secs(10), &["logs", "-f"]);
    let out = stdout(&logs);
    assert!(
        out.contains("tick 0") && out.contains("tick 2") && out.contains("got-term"),
        "{out}"
    );
    assert!(String::from_utf8_lossy(&logs.stderr).contains("warn 0"));
    let i = e.inspect("ticker");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 0);
    let tail = e.out(&["logs", "--tail", "1", "-t", "ticker"]);
    assert_eq!(tail.lines().count(), 1);
    assert!(tail.starts_with("20"), "timestamps: {tail}");
    let ps = e.out(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    // Restart it and remove it running with -f.
    e.ok(&["start", "ticker"]);
    assert_eq!(e.inspect("ticker")["State"]["Status"], "running");
    assert!(
        !e.run(&["rm", "ticker"]).status.success(),
        "rm of a running container needs -f"
    );
    e.ok(&["rm", "-f", "ticker"]);
    assert!(e.ps_names().is_empty());
    assert!(!e.data().join("containers").join(&id).exists());
}

#[test]
#[ignore = "needs root"]
fn names_are_unique_under_concurrency_and_crashes_are_cleanable() {
    need_root!();
    let e = Engine::new("conc");
    let same = [
        "create",
        "--name",
        "same",
        "--network",
        "none",
        "busybox",
        "true",
    ];
    let kids: Vec<Child> = (0..4)
        .map(|_| {
            e.cmd(&same)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ok = kids
        .into_iter()
        .map(|k| wait_output(k, Duration::from_secs(60), &["create"]))
        .filter(|o| o.status.success())
        .count();
    assert_eq!(ok, 1);
    assert_eq!(e.ps_names(), vec!["same".to_string()]);
    // A foreground CLI killed with SIGKILL: the container stays visible
    // and `rm -f` cleans it.
    let mut fg = e
        .cmd(&[
            "run",
            "--name",
            "orphan",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !e.ps_names().contains(&"orphan".to_string())
        || e.inspect("orphan")["State"]["Status"] != "running"
    {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    fg.kill().unwrap();
    fg.wait().unwrap();
    assert_eq!(e.inspect("orphan")["State"]["Status"], "running");
    e.ok(&["rm", "-f", "orphan", "same"]);
    assert!(e.ps_names().is_empty());
    // Their names are free again.
    e.ok(&same);
    e.ok(&["rm", "same"]);
}

#[test]
#[ignore = "needs root"]
fn init_reaps_orphaned_zombies() {
    need_root!();
    let e = Engine::new("init");
    // 100 orphans that block on a fifo until the test lets them go, so they
    // all exit after the shell became `sleep` (which never reaps): without
    // --init they stay zombies, whatever the machine's load.
    let script =
        "mkfifo /go; for i in $(seq 100); do (cat /go >/dev/null &); done; exec sleep 1000";
    let count = |name: &str, state: &str| -> u32 {
        let c = format!("grep -l '^State:.*{state}' /proc/[0-9]*/status 2>/dev/null | wc -l");
        e.out(&["exec", name, "sh", "-c", &c])
            .trim()
            .parse()
            .unwrap()
    };
    let cats = |name: &str| -> u32 {
        let c = "grep -l '^Name:.*cat' /proc/[0-9]*/status 2>/dev/null | wc -l";
        e.out(&["exec", name, "sh", "-c", c])
            .trim()
            .parse()
            .unwrap()
    };
    let poll = |what: &str, f: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (flag, name) in [("--init", "withinit"), ("--rm", "noinit")] {
        e.ok(&[
            "run",
            "-d",
            flag,
            "--name",
            name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        poll(&format!("{name}: 100 orphans"), &|| {
            cats(name) == 100 && count(name, "S") > 0
        });
        e.ok(&["exec", name, "sh", "-c", "echo go > /go"]);
    }
    poll("withinit: every orphan reaped", &|| {
        cats("withinit") == 0 && count("withinit", "Z") == 0
    });
    poll("noinit: 100 zombies", &|| count("noinit", "Z") >= 100);
    // The init is named as Docker's docker-init is, not after the loader
    // that runs it.
    let comm = e.out(&["exec", "withinit", "cat", "/proc/1/comm"]);
    assert_eq!(comm.trim(), "hako-init");
    // The init forwards SIGTERM to the command: it ends by SIGTERM (143),
    // not by the SIGKILL that follows the stop timeout (137).
    e.ok(&["stop", "-t", "30", "withinit"]);
    assert_eq!(e.inspect("withinit")["State"]["ExitCode"], 143);
}

#[test]
#[ignore = "needs root"]
fn namespace_kept_after_container_then_entered() {
    need_root!();
    let e = Engine::new("ns");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--hostname",
        "kept-host",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "container:a",
        "busybox",
        "sleep",
        "100",
    ]);
    let rows: Vec<Value> = e
        .out(&["ns", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let net_a = rows
        .iter()
        .find(|r| r["Container"] == "a" && r["Type"] == "net")
        .unwrap();
    assert_eq!(net_a["SharedWith"], serde_json::json!(["b"]));
    assert_eq!(net_a["Host"], false);
    let uts_b = rows
        .iter()
        .find(|r| r["Container"] == "b" && r["Type"] == "uts")
        .unwrap();
    assert_eq!(uts_b["SharedWith"], serde_json::json!([]));
    let keep = e.dir.path().join("kept/uts");
    e.ok(&["ns", "keep", "a", "uts", keep.to_str().unwrap()]);
    e.ok(&["rm", "-f", "a", "b"]);
    assert!(e.ps_names().is_empty());
    let o = e.ok(&["ns", "enter", keep.to_str().unwrap(), "--", "hostname"]);
    assert_eq!(stdout(&o).trim(), "kept-host");
    e.ok(&["ns", "rm", keep.to_str().unwrap()]);
    assert!(!keep.exists());
}

#[test]
#[ignore = "needs root"]
fn two_containers_on_a_bridge_talk() {
    need_root!();
    let mut e = Engine::new("net");
    let net = format!("hkt{}", std::process::id() % 10_000);
    e.networks.push(net.clone());
    let port = 18000 + std::process::id() % 1000;
    let publish = format!("127.0.0.1:{port}:8080");
    e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.215.9.0/24",
        "--bridge",
        &net,
        &net,
    ]);
    assert!(e.out(&["network", "ls"]).contains("10.215.9.0/24"));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        &net,
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "while true; do echo hello-over-bridge | nc -l -p 8080; done",
    ]);
    let ip = e.inspect("srv")["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.215.9."), "{ip}");
    let info: Value = serde_json::from_str(&e.out(&["network", "inspect", &net])).unwrap();
    let members = info[0]["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1, "{info}");
    let member = members.values().next().unwrap();
    assert_eq!(member["Name"], "srv");
    assert_eq!(member["IPv4Address"], format!("{ip}/24"));
    assert_eq!(
        e.out(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Driver}}",
            &net
        ]),
        "10.215.9.0/24 10.215.9.1 bridge\n"
    );
    let attached = |e: &Engine| {
        e.out(&[
            "network",
            "inspect",
            "--format",
            "{{len .Containers}}",
            &net,
        ])
    };
    assert_eq!(attached(&e), "1\n");
    // By name (through /etc/hosts) from a second container.
    let mut got = String::new();
    for _ in 0..20 {
        let o = e.run(&[
            "run",
            "--rm",
            "--network",
            &net,
            "busybox",
            "nc",
            "-w",
            "2",
            "srv",
            "8080",
        ]);
        got = stdout(&o);
        if got.contains("hello-over-bridge") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(got.contains("hello-over-bridge"), "{got}");
    // The published port, from the host.
    let o = Command::new("busybox")
        .args(["nc", "-w", "2", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stdout(&o).contains("hello-over-bridge"), "{o:?}");
    // --ip: that address on the user network; one another container has,
    // one outside the subnet, the gateway's, or --ip on the default
    // network: one line, 125, no container.
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        "10.215.9.200",
        "--mac-address",
        "92:d0:c6:0a:29:33",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /sys/class/net/eth0/address",
    ]);
    assert!(stdout(&o).contains("10.215.9.200/24"), "{o:?}");
    // --mac-address: that address on the interface.
    assert!(stdout(&o).contains("\n92:d0:c6:0a:29:33\n"), "{o:?}");
    let srv_mac = e.inspect("srv")["NetworkSettings"]["MacAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(srv_mac.starts_with("02:42:0a:d7:09:"), "{srv_mac}");
    for (args, want) in [
        (
            vec!["--network", &net, "--mac-address", &srv_mac],
            format!("--mac-address {srv_mac}: already used on network {net} by container srv"),
        ),
        (
            vec!["--network", &net, "--mac-address", "01:00:5e:00:00:01"],
            "--mac-address 01:00:5e:00:00:01: a multicast address".into(),
        ),
        (
            vec!["--network", "none", "--mac-address", "92:d0:c6:0a:29:33"],
            "--network none gives the container no interface of its own".into(),
        ),
        (
            vec!["--network", &net, "--ip", &ip],
            "is taken by container srv".to_string(),
        ),
        (
            vec!["--network", &net, "--ip", "10.215.10.5"],
            format!("not an address for containers in network {net}'s subnet 10.215.9.0/24"),
        ),
        (
            vec!["--network", &net, "--ip", "10.215.9.1"],
            "taken by the network's gateway".into(),
        ),
        (
            vec!["--ip", "10.215.9.9"],
            "on a user-defined network only".into(),
        ),
        (
            vec!["--network", &net, "--ip", "10.215.9"],
            "not an IPv4 address".into(),
        ),
    ] {
        let mut a = vec!["run", "--name", "bad-ip"];
        a.extend(args.iter().copied());
        a.extend(["busybox", "true"]);
        let o = e.run(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{a:?}: {err}");
        assert!(
            err.contains(&want) && err.lines().count() == 1,
            "{a:?}: {err}"
        );
        assert!(!e.ps_names().contains(&"bad-ip".to_string()), "{a:?}");
    }
    // network connect --ip: a second NIC at that address; disconnected,
    // it is gone.
    let net2 = format!("{net}b");
    e.networks.push(net2.clone());
    e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.215.10.0/24",
        "--bridge",
        &net2,
        &net2,
    ]);
    let o = e.run(&["network", "connect", "--ip", "10.215.9.9", &net2, "srv"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not an address for containers"),
        "{o:?}"
    );
    e.ok(&["network", "connect", "--ip", "10.215.10.9", &net2, "srv"]);
    let eth1 = e.out(&["exec", "srv", "ip", "-4", "-o", "addr", "show", "eth1"]);
    assert!(eth1.contains("10.215.10.9/24"), "{eth1}");
    assert!(e
        .out(&["ps", "--format", "{{.Names}} {{.Networks}}"])
        .lines()
        .any(|l| l == format!("srv {net},{net2}")));
    e.ok(&["network", "disconnect", &net2, "srv"]);
    let links = e.out(&["exec", "srv", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    e.ok(&["network", "rm", &net2]);
    e.networks.retain(|n| *n != net2);
    e.ok(&["rm", "-f", "srv"]);
    // A `run --rm` has left nothing another command could trip on by the
    // time it returns, although the kernel may still be unregistering its
    // veth (taken off the bridge under the network store's lock, then
    // deleted in the background):
    // its published port is free again, its lease gone, its network
    // removable; and the veth goes soon after.
    for _ in 0..2 {
        let o = e.ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "-p",
            &publish,
            "busybox",
            "echo",
            "once",
        ]);
        assert_eq!(stdout(&o), "once\n");
    }
    assert_eq!(attached(&e), "0\n");
    poll(10, "the bridge's veths gone", || {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "master", &net])
            .output()
            .unwrap();
        (o.status.success() && o.stdout.is_empty()).then_some(())
    });
    e.ok(&["network", "rm", &net]);
    e.networks.clear();
}

#[test]
#[ignore = "needs root"]
fn time_namespace_offset() {
    need_root!();
    let e = Engine::new("time");
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--time-offset",
        "864000",
        "busybox",
        "cat",
        "/proc/uptime",
    ]);
    let up: f64 = stdout(&o)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(up > 864_000.0, "{up}");
}

#[test]
#[ignore = "needs root"]
fn userns_maps_container_root_to_a_user() {
    need_root!();
    let e = Engine::new("userns");
    let vol = e.dir.path().join("uvol");
    std::fs::create_dir_all(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(1000), Some(1000)).unwrap();
    let v = format!("{}:/out", vol.display());
    let o = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns",
        "1000:1",
        "-v",
        &v,
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; touch /out/made-by-root",
    ]);
    let s = stdout(&o);
    let map: Vec<&str> = s.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "1000", "1"], "{s}");
    assert_eq!(s.lines().nth(1), Some("0"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(vol.join("made-by-root")).unwrap().uid(),
        1000
    );
}

/// The `hako` ranges of /etc/subuid and /etc/subgid (the `--userns auto`
/// pool) for one test, when the host has none; removed again on drop.
struct AutoPool {
    added: bool,
}

impl AutoPool {
    fn ensure() -> AutoPool {
        let has = |f: &str| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("hako:"))
        };
        if has("/etc/subuid") && has("/etc/subgid") {
            return AutoPool { added: false };
        }
        for f in ["/etc/subuid", "/etc/subgid"] {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
            writeln!(file, "hako:3000000000:1000000000").unwrap();
        }
        AutoPool { added: true }
    }
}

impl Drop for AutoPool {
    fn drop(&mut self) {
        if !self.added {
            return;
        }
        for f in ["/etc/subuid", "/etc/subgid"] {
            let s = std::fs::read_to_string(f).unwrap_or_default();
            let kept: String = s
                .lines()
                .filter(|l| *l != "hako:3000000000:1000000000")
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(f, kept);
        }
    }
}

/// `--userns auto`: each container its own range from the pool, the
/// image owned by its root (idmapped layers, or a shifted copy where the
/// filesystem cannot be idmapped), its writes owned by its range on the
/// host, and the data root untouched.
#[test]
#[ignore = "needs root"]
fn userns_auto_gives_each_container_its_own_range() {
    need_root!();
    let _pool = AutoPool::ensure();
    let e = Engine::new("uauto");
    let mut maps = Vec::new();
    for name in ["a1", "a2"] {
        e.run_sh(
            name,
            &["--userns", "auto"],
            "echo written > /etc/by-root && echo ok; sleep 600",
        );
        let i = e.inspect(name);
        let m = i["HostConfig"]["IDMappings"]["UidMap"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no IDMappings: {i}"))
            .to_string();
        let f: Vec<u64> = m.split(':').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[0], 0, "{m}");
        assert!(f[2] >= 1024, "{m}");
        assert!(
            i["GraphDriver"]["Name"]
                .as_str()
                .unwrap()
                .starts_with("overlay on "),
            "{i}"
        );
        poll(30, "the container to write /etc", || {
            e.out(&["logs", name]).contains("ok").then_some(())
        });
        // Inside: the image is root's, and the container's map is its own.
        let ls = e.out(&[
            "exec",
            name,
            "sh",
            "-c",
            "ls -lnd /bin /etc/passwd /etc/by-root",
        ]);
        for l in ls.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((f[2], f[3]), ("0", "0"), "{ls}");
        }
        let uid_map = e.out(&["exec", name, "cat", "/proc/self/uid_map"]);
        let got: Vec<u64> = uid_map
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(got, f, "{uid_map}");
        // On the host, its write belongs to its range.
        let upper = Path::new(i["Rootfs"].as_str().unwrap())
            .parent()
            .unwrap()
            .join("upper/etc/by-root");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(u64::from(std::fs::metadata(&upper).unwrap().uid()), f[1]);
        maps.push((f[1], f[2]));
    }
    let (a, b) = (maps[0], maps[1]);
    assert!(
        a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
        "overlapping ranges {maps:?}"
    );
    // The data root and the store stay owner-only.
    use std::os::unix::fs::PermissionsExt;
    for d in [e.data(), e.data().join("image")] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    // A removed container's range is free again: the next one gets it.
    e.ok(&["rm", "-f", "a1"]);
    e.run_sh("a3", &["--userns", "auto"], "sleep 600");
    let m3 = e.inspect("a3")["HostConfig"]["IDMappings"]["UidMap"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        m3.starts_with(&format!("0:{}:", a.0)),
        "{m3} after {maps:?}"
    );
    e.fails(
        &["run", "--userns", "auto:size=0", "busybox", "true"],
        "--userns",
    );
    e.ok(&["rm", "-f", "a2", "a3"]);
}

/// `run -it` and `exec -it` on a real terminal (a pseudo-terminal made
/// here): the shell sees a tty, and the exit code comes back.
#[test]
#[ignore = "needs root"]
fn interactive_tty_run_and_exec() {
    need_root!();
    let e = Engine::new("tty");
    let mut p = Pty::spawn(
        e.cmd(&["run", "-it", "--rm", "--network", "none", "busybox", "sh"]),
        24,
        80,
    );
    p.send(b"echo tty=$(tty)\r");
    p.expect("tty=/dev/pts/0");
    p.send(b"exit 4\r");
    assert_eq!(p.wait(), 4);
    e.run_sh("t", &[], "sleep 100");
    let mut p = Pty::spawn(e.cmd(&["exec", "-it", "t", "sh"]), 24, 80);
    p.send(b"echo exec-tty=$(tty)\r");
    p.expect("exec-tty=/dev/pts/");
    p.send(b"exit 6\r");
    assert_eq!(p.wait(), 6);
}

#[test]
#[ignore = "needs root"]
fn create_start_attached_wait() {
    need_root!();
    let e = Engine::new("attach");
    e.ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo attached; exit 9",
    ]);
    assert!(e.out(&["ps", "-a"]).contains("Created"));
    let o = e.run(&["start", "-a", "c"]);
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    assert_eq!(stdout(&o), "attached\n");
    assert_eq!(e.out(&["wait", "c"]).trim(), "9");
    assert_eq!(e.out(&["logs", "c"]), "attached\n");
    // Detached start of the same container, then wait for it.
    e.ok(&["start", "c"]);
    assert_eq!(e.out(&["wait", "c"]).trim(), "9");
    assert_eq!(e.out(&["logs", "c"]), "attached\nattached\n");
}

/// Poll `f` until it returns Some, failing after `secs`.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_alive(pid: i64) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
}

fn ps_rows(e: &Engine) -> Vec<Value> {
    e.out(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn corrupt_record_is_listed_keeps_its_name_and_is_removable() {
    need_root!();
    let e = Engine::new("corrupt");
    let id = e
        .out(&[
            "run",
            "-d",
            "--name",
            "samename",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let pid = e.inspect("samename")["State"]["Pid"].as_i64().unwrap();
    assert!(pid_alive(pid));
    // A crash half-way through a non-atomic write: half the JSON.
    let rec = e.data().join("containers").join(&id).join("record.json");
    let full = std::fs::read(&rec).unwrap();
    std::fs::write(&rec, &full[..full.len() / 2]).unwrap();
    let rows = ps_rows(&e);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["State"], "corrupt");
    assert_eq!(rows[0]["Names"], "samename");
    assert!(id.starts_with(rows[0]["ID"].as_str().unwrap()));
    // The name stays reserved while the container may be running.
    let o = e.run(&[
        "run",
        "-d",
        "--name",
        "samename",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{o:?}"
    );
    assert!(!e.run(&["rm", &id]).status.success(), "rm needs -f");
    e.ok(&["rm", "-f", &id[..12]]);
    assert!(ps_rows(&e).is_empty());
    assert!(!e.data().join("containers").join(&id).exists());
    poll(10, "the init is killed", || (!pid_alive(pid)).then_some(()));
    // And the name is free again.
    e.ok(&[
        "run",
        "--rm",
        "--name",
        "samename",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
}

/// The parent of `pid` (from /proc/PID/stat), 0 when unknown.
fn ppid(pid: i64) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn comm(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The container's init, its monitor and the monitor's keeper (the
/// monitor's parent when that is a hako process), as inspect shows them.
fn engine_pids(e: &Engine, name: &str) -> (i64, i64, i64) {
    let st = e.inspect(name)["State"].clone();
    let init = st["Pid"].as_i64().unwrap_or(0);
    let mon = st["MonitorPid"].as_i64().unwrap_or(0);
    let p = if mon > 0 { ppid(mon) } else { 0 };
    let keeper = if p > 1 && comm(p) == "hako" { p } else { 0 };
    (init, mon, keeper)
}

fn sigkill(pids: &[i64]) {
    for &p in pids.iter().filter(|p| **p > 0) {
        // SAFETY: kill with integers.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    poll(10, "killed processes are gone", || {
        pids.iter().all(|p| !pid_alive(*p)).then_some(())
    });
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.starts_with(&root))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.len()));
    v
}

/// What a reboot does to hako: every process gone (SIGKILL, keepers and
/// monitors first so nobody records anything), mounts gone, the bridge and
/// the nft table gone, cgroups gone, the run root (a tmpfs) empty; the
/// data root stays.
fn simulate_reboot(e: &Engine, bridge: &str) {
    let rows = ps_rows(e);
    let mut all = Vec::new();
    for r in &rows {
        let (init, mon, keeper) = engine_pids(e, r["Names"].as_str().unwrap());
        sigkill(&[keeper, mon]);
        all.push(init);
    }
    sigkill(&all);
    // And the networks' name servers (their pid files are in the run dir).
    if let Ok(rd) = std::fs::read_dir(e.dir.path().join("run/dns")) {
        for f in rd.flatten() {
            if f.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                {
                    sigkill(&[pid]);
                    poll(10, "the name server to die", || {
                        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
                    });
                }
            }
        }
    }
    for p in mounts_under(e.dir.path()) {
        let c = std::ffi::CString::new(p.clone()).unwrap();
        // SAFETY: a NUL-terminated path; umount2 has no memory effects.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        assert_eq!(rc, 0, "umount {p}");
    }
    // A reboot empties cgroupfs: remove the containers' cgroups in every
    // hierarchy (v1 controllers, the hybrid unified tree, or cgroup2 alone),
    // once their killed processes are gone.
    let mut groups = Vec::new();
    if let Ok(rd) = std::fs::read_dir(e.data().join("containers")) {
        for d in rd.flatten() {
            groups.push(Path::new("/sys/fs/cgroup/hako").join(d.file_name()));
            for h in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                groups.push(h.path().join("hako").join(d.file_name()));
            }
        }
    }
    poll(10, "the killed containers' cgroups to be removable", || {
        for g in &groups {
            let _ = std::fs::remove_dir(g);
        }
        groups.iter().all(|g| !g.exists()).then_some(())
    });
    let st = Command::new("ip")
        .args(["link", "del", bridge])
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("nft")
        .args(["delete", "table", "inet", &e.nft])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(e.dir.path().join("run")).unwrap();
}

#[test]
#[ignore = "needs root"]
fn after_a_reboot_containers_start_and_networks_work_again() {
    need_root!();
    let mut e = Engine::new("reboot");
    let net = "t10net";
    let bridge = format!("t10br{}", std::process::id() % 10_000);
    e.networks.push(net.into());
    e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.216.10.0/24",
        "--bridge",
        &bridge,
        net,
    ]);
    let id_a = e
        .out(&[
            "run",
            "-d",
            "--network",
            net,
            "--name",
            "a",
            "busybox",
            "sh",
            "-c",
            "while true; do echo hello-a | nc -l -p 8080; done",
        ])
        .trim()
        .to_string();
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "b",
        "busybox",
        "sleep",
        "1000",
    ]);
    // A change in a's writable layer must survive the remount.
    e.ok(&["exec", "a", "sh", "-c", "echo kept > /kept"]);

    simulate_reboot(&e, &bridge);

    // Recorded as running, processes gone: exited, with an unknown code.
    let rows = ps_rows(&e);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["State"], "exited", "{r}");
        assert!(
            r["Status"]
                .as_str()
                .unwrap()
                .starts_with("Exited (unknown)"),
            "{r}"
        );
    }
    e.ok(&["start", "a"]);
    assert_eq!(e.inspect("a")["State"]["Status"], "running");
    assert_eq!(e.out(&["exec", "a", "cat", "/kept"]).trim(), "kept");
    // Reachable on its network, by name, from a new container there.
    poll(20, "a answers on t10net", || {
        let o = e.run(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "nc",
            "-w",
            "2",
            "a",
            "8080",
        ]);
        stdout(&o).contains("hello-a").then_some(())
    });
    e.ok(&["run", "--rm", "--network", net, "busybox", "true"]);
    // Only a holds a lease: the stale one of its first start is freed.
    let info: Value = serde_json::from_str(&e.out(&["network", "inspect", net])).unwrap();
    let members = info[0]["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(members.contains_key(&id_a), "{members:?}");
    let rows = ps_rows(&e);
    let states: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["Names"].as_str().unwrap().to_string(),
                r["State"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Newest first, as Docker lists them.
    assert_eq!(
        states,
        vec![
            ("b".to_string(), "exited".to_string()),
            ("a".to_string(), "running".to_string())
        ]
    );

    // Removing everything leaves nothing behind.
    e.ok(&["rm", "-f", "a", "b"]);
    e.ok(&["network", "rm", net]);
    e.networks.clear();
    assert!(ps_rows(&e).is_empty());
    assert!(mounts_under(e.dir.path()).is_empty());
    let leases_dir = e.data().join("net").join("leases");
    if let Ok(rd) = std::fs::read_dir(&leases_dir) {
        for f in rd.flatten() {
            let s = std::fs::read_to_string(f.path()).unwrap();
            assert!(s.trim().is_empty() || s.trim() == "[]", "{s}");
        }
    }
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(!link.success(), "bridge {bridge} left behind");
    let table = Command::new("nft")
        .args(["list", "table", "inet", &e.nft])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(!table.success(), "nft table {} left behind", e.nft);
}

/// Runs until `/tmp/go` appears in its rootfs, then exits 3.
const EXIT3_ON_GO: &str = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3";

fn release(e: &Engine, name: &str) {
    let rootfs = e.inspect(name)["Rootfs"].as_str().unwrap().to_string();
    std::fs::write(Path::new(&rootfs).join("tmp/go"), b"").unwrap();
}

#[test]
#[ignore = "needs root"]
fn exit_code_survives_a_killed_monitor_or_reads_unknown() {
    need_root!();
    let e = Engine::new("keeper");
    for name in ["kept", "lost"] {
        e.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            EXIT3_ON_GO,
        ]);
    }
    // The monitor alone dies: its keeper collects the real code.
    let (init, mon, keeper) = engine_pids(&e, "kept");
    assert!(init > 0 && mon > 0, "{init} {mon}");
    sigkill(&[mon]);
    assert!(pid_alive(init));
    release(&e, "kept");
    let o = e.run(&["wait", "kept"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "3");
    let st = e.inspect("kept")["State"].clone();
    assert_eq!(st["Status"], "exited");
    assert_eq!(st["ExitCode"], 3, "{st}");
    let row = ps_rows(&e)
        .into_iter()
        .find(|r| r["Names"] == "kept")
        .unwrap();
    assert!(
        row["Status"].as_str().unwrap().starts_with("Exited (3)"),
        "{row}"
    );
    assert!(keeper > 0, "the monitor runs under a keeper");
    poll(10, "the keeper exits", || {
        (!pid_alive(keeper)).then_some(())
    });

    // Monitor and keeper both die: the code is lost and reads as unknown,
    // never as a false 0.
    let (init, mon, keeper) = engine_pids(&e, "lost");
    sigkill(&[keeper, mon]);
    release(&e, "lost");
    poll(10, "the init exits", || (!pid_alive(init)).then_some(()));
    let o = e.run(&["wait", "lost"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exit code unknown"),
        "{o:?}"
    );
    let st = e.inspect("lost")["State"].clone();
    assert_eq!(st["Status"], "exited");
    assert_eq!(st["ExitCode"], -1, "{st}");
    assert!(st["Error"].as_str().unwrap().contains("unknown"), "{st}");
    let row = ps_rows(&e)
        .into_iter()
        .find(|r| r["Names"] == "lost")
        .unwrap();
    assert!(
        row["Status"]
            .as_str()
            .unwrap()
            .starts_with("Exited (unknown)"),
        "{row}"
    );
}

#[test]
#[ignore = "needs root"]
fn foreground_run_rm_stays_supervised_when_its_cli_is_killed() {
    need_root!();
    let e = Engine::new("fgrm");
    let mut fg = e
        .cmd(&[
            "run",
            "--rm",
            "--name",
            "fg",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            EXIT3_ON_GO,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(20, "fg runs", || {
        let o = e.run(&["inspect", "fg"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v[0]["State"]["Status"] == "running").then_some(())
    });
    let id = e.inspect("fg")["Id"].as_str().unwrap().to_string();
    fg.kill().unwrap();
    fg.wait().unwrap();
    // Still supervised by its monitor, which outlived the CLI.
    let (init, mon, _) = engine_pids(&e, "fg");
    assert!(pid_alive(init), "{init}");
    release(&e, "fg");
    // The monitor records the exit and does the --rm cleanup.
    poll(20, "fg is removed", || ps_rows(&e).is_empty().then_some(()));
    assert!(!e.data().join("containers").join(&id).exists());
    assert!(mounts_under(e.dir.path()).is_empty());
    assert!(mon > 0, "a monitor outlived the CLI");
    poll(10, "the monitor exits", || (!pid_alive(mon)).then_some(()));
}

/// An image made of busybox plus `extra` (path inside, host file, mode).
fn import_image_with(e: &Engine, name: &str, extra: &[(&str, &Path, u32)]) {
    use std::os::unix::fs::PermissionsExt;
    let d = e.dir.path().join(format!("img-{name}"));
    let st = Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    for (inside, src, mode) in extra {
        let dst = d.join(inside.trim_start_matches('/'));
        std::fs::copy(src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    e.ok(&["import", d.to_str().unwrap(), name]);
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Run `argv` as `nobody` (uid/gid 65534, no groups).
fn as_nobody(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .output()
        .expect("run setpriv")
}

/// Issue 10, hole 1: one `--userns` container used to loosen the data
/// root, the store and the container directories to 0711 for good, with
/// the rootfs mounted on the host without nosuid: any local user ran the
/// image's setuid-root programs through the host path as uid 0, and read
/// every container's config.json (its `-e` secrets) and log. Now the
/// directories stay owner-only, configs and logs are 0600, every rootfs
/// mount is nosuid,nodev, and `nobody` reaches none of it; setuid programs
/// still work inside the container, with and without a user namespace.
#[test]
#[ignore = "needs root"]
fn userns_leaves_the_store_owner_only_and_rootfs_nosuid() {
    use std::os::unix::fs::PermissionsExt;
    need_root!();
    let e = Engine::new("perms");
    // Open the test's own directory as /var/lib is, so that only hako's
    // modes stand between other users and the data root.
    std::fs::set_permissions(e.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    import_image_with(&e, "suidimg", &[("/euid", &fixture_binary("euid"), 0o4755)]);

    // setuid still works inside (given --privileged: hako sets
    // no_new_privs by default). In a user namespace the image's files are
    // not remapped yet, so their owner is unmapped and the kernel ignores
    // the bit there.
    let o = e.out(&[
        "run",
        "--rm",
        "--privileged",
        "--network",
        "none",
        "-u",
        "1000",
        "suidimg",
        "/euid",
    ]);
    assert_eq!(o.trim(), "0", "setuid inside");

    e.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--network",
        "none",
        "--userns",
        "100000:65536",
        "-e",
        "SECRET=hunter2",
        "suidimg",
        "sh",
        "-c",
        "echo started; sleep 1000",
    ]);
    let id = e.inspect("u")["Id"].as_str().unwrap().to_string();
    let data = e.data();
    let ctr = data.join("containers").join(&id);
    let store_ctr = data.join("image/containers").join(&id);
    for d in [
        data.clone(),
        data.join("containers"),
        ctr.clone(),
        data.join("image"),
        data.join("image/containers"),
        store_ctr.clone(),
    ] {
        assert_eq!(
            mode_of(&d) & 0o077,
            0,
            "{} is {:o}",
            d.display(),
            mode_of(&d)
        );
    }
    for f in ["config.json", "container.log"] {
        let p = ctr.join(f);
        assert_eq!(
            mode_of(&p) & 0o077,
            0,
            "{} is {:o}",
            p.display(),
            mode_of(&p)
        );
    }
    // Every mount under the data root is nosuid,nodev on the host.
    let root = data.to_string_lossy().into_owned();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mi
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&root)))
        .collect();
    assert!(!ours.is_empty(), "no rootfs mount under {root}");
    for l in &ours {
        let opts = l.split(' ').nth(5).unwrap();
        assert!(opts.contains("nosuid") && opts.contains("nodev"), "{l}");
    }
    // The attack, as `nobody`: the setuid program through the host path,
    // the config with the secret, the log.
    let merged = store_ctr.join("merged");
    // (through a shell: setpriv itself may resolve its program as root)
    let o = as_nobody(&["sh", "-c", merged.join("euid").to_str().unwrap()]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stdout).trim() != "0",
        "nobody ran the image's setuid program: {o:?}"
    );
    for f in [ctr.join("config.json"), ctr.join("container.log")] {
        let o = as_nobody(&["cat", f.to_str().unwrap()]);
        assert!(!o.status.success(), "nobody read {}: {o:?}", f.display());
    }
    e.ok(&["rm", "-f", "u"]);

    // An older store (dirs 0711, config 0644) is repaired on the next command.
    e.ok(&[
        "create",
        "--name",
        "old",
        "--network",
        "none",
        "suidimg",
        "true",
    ]);
    let id = e.inspect("old")["Id"].as_str().unwrap().to_string();
    let ctr = data.join("containers").join(&id);
    for d in [data.clone(), data.join("containers"), ctr.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(
        ctr.join("config.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _ = std::fs::remove_file(data.join(".permissions-v2"));
    e.ok(&["ps", "-a"]);
    for d in [data.clone(), data.join("containers"), ctr.clone()] {
        assert_eq!(mode_of(&d), 0o700, "{} not repaired", d.display());
    }
    assert_eq!(mode_of(&ctr.join("config.json")), 0o600);
}

/// CVE-2019-5736 through the engine, with CAP_SYS_PTRACE given to the
/// container: its process holds /proc/PID/exe of `hako exec` (and of a
/// `hako run --pid container:…` joining it) while hako is inside, and
/// reopens it for writing once hako has exited. hako runs those verbs from
/// a read-only mount of its binary, so the write fails with EROFS. A copy
/// of hako is the target, and no monitor runs from it, so nothing but that
/// defence keeps it from being overwritten.
#[test]
#[ignore = "needs root"]
fn ptrace_capable_container_cannot_overwrite_hako() {
    need_root!();
    let e = Engine::new("ptrace");
    let hako = e.dir.path().join("hako-copy");
    std::fs::copy(bin(), &hako).unwrap();
    let before = std::fs::read(&hako).unwrap();
    let tramp = e.dir.path().join("trampoline");
    std::fs::write(&tramp, "#!/proc/self/exe\n").unwrap();
    import_image_with(
        &e,
        "atk",
        &[
            ("/attacker", &fixture_binary("exe_attacker"), 0o755),
            ("/trampoline", &tramp, 0o755),
        ],
    );
    // The trampoline, through run and exec, with and without
    // CAP_SYS_PTRACE: /proc/self/exe is the sealed helper, which refuses
    // (127), never hako.
    for caps in [&[][..], &["--cap-add", "SYS_PTRACE"][..]] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(caps);
        args.extend(["atk", "/trampoline"]);
        let o = e.cmd_with(&hako, &args).output().unwrap();
        assert_eq!(o.status.code(), Some(127), "run {caps:?}: {o:?}");
    }
    e.ok(&[
        "run",
        "-d",
        "--name",
        "tramp",
        "--network",
        "none",
        "--cap-add",
        "SYS_PTRACE",
        "atk",
        "sleep",
        "1000",
    ]);
    let o = e
        .cmd_with(&hako, &["exec", "tramp", "/trampoline"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "exec: {o:?}");
    e.ok(&["rm", "-f", "tramp"]);
    let run_attacker = |name: &str| -> PathBuf {
        e.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--cap-add",
            "SYS_PTRACE",
            "atk",
            "/attacker",
            "/attack.log",
            "60",
        ]);
        let id = e.inspect(name)["Id"].as_str().unwrap().to_string();
        e.data()
            .join("image/containers")
            .join(id)
            .join("merged/attack.log")
    };
    let attack = |log: &Path, victim: &dyn Fn(usize)| -> String {
        let t0 = Instant::now();
        let mut i = 0;
        while !std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("opened")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(40),
                "the attacker never caught hako inside the container ({i} tries)"
            );
            victim(i);
            i += 1;
        }
        attacker_verdict(log, Duration::from_secs(40))
    };

    let log = run_attacker("victim-exec");
    let v = attack(&log, &|_| {
        let _ = e.cmd_with(&hako, &["exec", "victim-exec", "true"]).output();
    });
    assert!(
        v.contains("refused") && v.contains("Read-only file system"),
        "exec: {v}"
    );
    assert_eq!(std::fs::read(&hako).unwrap(), before, "exec: hako changed");

    let log = run_attacker("victim-pid");
    let v = attack(&log, &|_| {
        let _ = e
            .cmd_with(
                &hako,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--pid",
                    "container:victim-pid",
                    "atk",
                    "true",
                ],
            )
            .output();
    });
    assert!(
        v.contains("refused") && v.contains("Read-only file system"),
        "run --pid: {v}"
    );
    assert_eq!(std::fs::read(&hako).unwrap(), before, "run: hako changed");
}

/// Wait for `child` with a deadline; kill it and fail if it does not end.
fn ends_within(mut child: Child, what: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end after its reader closed the pipe");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 11, bug 4: a closed stdout ends the command quietly, as in every
/// Unix tool: `inspect | head` panicked, `logs -f | head`, `start -a | head`
/// and `run | head` never ended.
#[test]
#[ignore = "needs root"]
fn closed_stdout_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    need_root!();
    let e = Engine::new("pipes");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo first; echo second; exec sleep 1000",
    ]);
    // inspect: the reader is gone before anything is written.
    let mut c = e
        .cmd(&["inspect", "talker", "talker", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() || o.status.signal() == Some(libc::SIGPIPE),
        "inspect: {o:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );

    // logs -f: one line read, then the reader goes; nothing more is logged.
    let mut c = e
        .cmd(&["logs", "-f", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut c), "first\n");
    ends_within(c, "logs -f");

    // run (and start -a): the container's next write fails as in a pipeline.
    for args in [
        vec!["run", "--rm", "--network", "none", "busybox", "yes"],
        vec!["start", "-a", "yesman"],
    ] {
        if args[0] == "start" {
            e.ok(&[
                "create",
                "--name",
                "yesman",
                "--network",
                "none",
                "busybox",
                "yes",
            ]);
        }
        let mut c = e
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "y\n");
        ends_within(c, args[0]);
    }
    assert_eq!(e.ps_names().iter().filter(|n| *n == "yesman").count(), 1);
    assert!(!e.ps_names().iter().any(|n| n != "yesman" && n != "talker"));
}

impl Engine {
    /// A copy of the busybox rootfs, changed by `edit`, imported as `name`.
    fn hostile_image(&self, name: &str, edit: impl FnOnce(&Path)) {
        let dir = self.dir.path().join(format!("img-{name}"));
        let st = Command::new("cp")
            .arg("-a")
            .arg(busybox_rootfs())
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        edit(&dir);
        self.ok(&["import", dir.to_str().unwrap(), name]);
    }

    /// `run` under a 20 s timeout and a 1 GiB address-space limit (a hang
    /// or a runaway read fails the test instead of the machine); also the
    /// peak RSS of the hako process in KiB, from wait4.
    fn run_measured(&self, args: &[&str]) -> (Output, i64) {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::os::unix::process::ExitStatusExt;
        let mut c = self.cmd(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            c.pre_exec(|| {
                let l = libc::rlimit {
                    rlim_cur: 1 << 30,
                    rlim_max: 1 << 30,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Reaped below by wait4, which also gives its rusage.
        #[allow(clippy::zombie_processes)]
        let mut child = c.spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        }
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let t0 = Instant::now();
        let (status, maxrss) = loop {
            let mut st = 0;
            // SAFETY: zeroed rusage is a valid out value.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child with valid out pointers.
            let r = unsafe { libc::wait4(pid, &mut st, libc::WNOHANG, &mut ru) };
            assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
            if r == pid {
                break (std::process::ExitStatus::from_raw(st), ru.ru_maxrss);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                // SAFETY: kill our own, not yet reaped, child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("hako {args:?} timed out");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let o = Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        };
        (o, maxrss)
    }

    fn run_bounded(&self, args: &[&str]) -> Output {
        self.run_measured(args).0
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Hole 3: `-u NAME` reads the image's /etc/passwd inside the rootfs, only
/// as a bounded regular file. A symlink to /dev/zero, a FIFO and a symlink
/// to a host file each fail at once with one clear error.
#[test]
#[ignore = "needs root"]
fn hostile_passwd_is_read_inside_the_image_only() {
    need_root!();
    let e = Engine::new("passwd");
    // A host file standing in for /etc/shadow, with a line that would match.
    let host = e.dir.path().join("host-shadow");
    std::fs::write(&host, "someuser:x:4242:4242:HOSTSECRET:/:/bin/sh\n").unwrap();
    e.hostile_image("zero", |d| {
        std::fs::remove_file(d.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("etc/passwd")).unwrap();
    });
    e.hostile_image("fifo", |d| {
        std::fs::remove_file(d.join("etc/passwd")).unwrap();
        let p = std::ffi::CString::new(d.join("etc/passwd").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
    });
    e.hostile_image("hostfile", |d| {
        std::fs::remove_file(d.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(&host, d.join("etc/passwd")).unwrap();
    });
    for img in ["zero", "fifo", "hostfile"] {
        let (o, rss_kib) = e.run_measured(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "someuser",
            img,
            "id",
            "-u",
        ]);
        assert!(rss_kib < 200 << 10, "{img}: hako grew to {rss_kib} KiB");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{img}: {o:?}");
        assert!(
            !stdout(&o).contains("4242"),
            "{img}: host file parsed: {o:?}"
        );
        assert!(
            !err.contains("HOSTSECRET") && !err.contains("4242"),
            "{img}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{img}: one line: {err}");
        assert!(err.contains("passwd"), "{img}: names the file: {err}");
        if img == "fifo" {
            assert!(
                err.contains("/etc/passwd: not a regular file (a FIFO)"),
                "{err}"
            );
        }
    }
    // The image's `User` takes the same path: exec -u too.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "none",
        "hostfile",
        "sleep",
        "30",
    ]);
    let o = e.run_bounded(&["exec", "-u", "someuser", "c", "id", "-u"]);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    assert!(!stdout(&o).contains("4242"), "{o:?}");
}

/// Mount points are made inside the rootfs: an image's `data ->
/// /abs/outside` symlink leads to the image's own path, never the host's.
#[test]
#[ignore = "needs root"]
fn volume_mount_point_through_image_symlink_stays_in_rootfs() {
    need_root!();
    let e = Engine::new("mntlink");
    let outside = e.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.clone();
    // And one into a host directory only root may write, for the userns run.
    let etc_link = format!("/etc/hako-test-mp-{}", std::process::id());
    let etc_target = etc_link.clone();
    e.hostile_image("lnk", move |d| {
        std::os::unix::fs::symlink(&target, d.join("data")).unwrap();
        std::os::unix::fs::symlink(&etc_target, d.join("etcdata")).unwrap();
    });
    let o = e.run_bounded(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol:/data/sub/deeper",
        "--tmpfs",
        "/data/tmp",
        "lnk",
        "sh",
        "-c",
        "touch /data/sub/deeper/x /data/tmp/y && echo ok",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "ok\n");
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(left.is_empty(), "created on the host: {left:?}");
    assert!(e.data().join("volumes/vol/_data/x").is_file());
    // With a user namespace the container's root cannot make the mount
    // point in the image itself: the engine must have made it, through
    // the link, inside the rootfs.
    let o = e.run_bounded(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns",
        "1000:1",
        "-v",
        "vol2:/etcdata/a/b",
        "lnk",
        "sh",
        "-c",
        "test -d /etcdata/a/b && echo ok",
    ]);
    assert_eq!(stdout(&o), "ok\n", "{o:?}");
    assert!(
        !Path::new(&etc_link).exists(),
        "created {etc_link} on the host"
    );
}

/// `-v FILE:/path` binds a single host file (it used to fail with "Not a
/// directory": the engine made a directory as its mount point).
#[test]
#[ignore = "needs root"]
fn single_file_bind() {
    need_root!();
    let e = Engine::new("filebind");
    let f = e.dir.path().join("file.txt");
    std::fs::write(&f, "hello from a file\n").unwrap();
    let v = format!("{}:/etc/motd:ro", f.display());
    let o = e.run_bounded(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &v,
        "busybox",
        "cat",
        "/etc/motd",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello from a file\n");
    // Also onto a path whose directory does not exist in the image.
    let v = format!("{}:/new/dir/f", f.display());
    let o = e.run_bounded(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &v,
        "busybox",
        "cat",
        "/new/dir/f",
    ]);
    assert_eq!(stdout(&o), "hello from a file\n", "{o:?}");
}

/// An error's cause is printed once, not once per layer that carries it.
#[test]
#[ignore = "needs root"]
fn error_cause_printed_once() {
    need_root!();
    let e = Engine::new("errmsg");
    let missing = e.dir.path().join("no-such-env-file");
    let o = e.run_bounded(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--env-file",
        missing.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// The default network is what the settings file says (issue 14: the
/// default subnet is configurable), and a bad settings file is one line
/// naming the key, exit 125, with nothing made.
#[test]
#[ignore = "needs root"]
fn default_network_comes_from_the_settings_file() {
    need_root!();
    let e = Engine::new("conf");
    let o = e.ok(&[
        "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(
        stdout(&o).contains(&format!("inet {}", e.subnet_prefix)),
        "{}",
        stdout(&o)
    );
    let net: Value = serde_json::from_str(&e.out(&["network", "inspect", "hako"])).unwrap();
    let settings = std::fs::read_to_string(e.dir.path().join("hako.toml")).unwrap();
    assert!(
        settings.contains(&format!(
            "\"{}\"",
            net[0]["Options"]["com.docker.network.bridge.name"]
                .as_str()
                .unwrap()
        )),
        "{net} vs {settings}"
    );

    std::fs::write(
        e.dir.path().join("hako.toml"),
        "[network]\ndefault_subnet = \"10.1.0.0/16\"\nbridge = \"x\"\n",
    )
    .unwrap();
    let o = e.run(&["run", "--rm", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("hako.toml: line 3: unknown field `bridge`"),
        "{err}"
    );
    std::fs::write(e.dir.path().join("hako.toml"), settings).unwrap();
    assert_eq!(e.out(&["ps", "-a", "-q"]), "");
}

/// Run flags behave as Docker's (issue 14, item 4), each as a user sees it.
#[test]
#[ignore = "needs root"]
fn run_flags_behave_as_docker() {
    need_root!();
    let e = Engine::new("flags");
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        e.run(&a)
    };
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    // Refused with one line naming what is wrong, exit 125, nothing left.
    let refused = |args: &[&str], what: &str| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    };

    // A volume on /etc: the name files are mounted inside it.
    assert_eq!(
        ok(&["-v", "etcvol:/etc", "busybox", "cat", "/etc/hostname"]).len(),
        13
    );
    // no_new_privs: on by default (hako), off when asked.
    let nnp = |extra: &[&str]| {
        let mut a = extra.to_vec();
        a.extend_from_slice(&["busybox", "grep", "NoNewPrivs", "/proc/self/status"]);
        ok(&a).split_whitespace().last().unwrap().to_string()
    };
    assert_eq!(nnp(&[]), "1");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges=false"]), "0");
    // --privileged has the host's devices; a plain container does not.
    assert!(Path::new("/dev/kmsg").exists());
    ok(&["--privileged", "busybox", "test", "-c", "/dev/kmsg"]);
    assert_eq!(
        run(&["busybox", "test", "-e", "/dev/kmsg"]).status.code(),
        Some(1)
    );
    // HOME, users and groups as Docker resolves them.
    assert_eq!(ok(&["busybox", "sh", "-c", "echo $HOME"]), "/root\n");
    assert_eq!(
        ok(&["-u", "user", "busybox", "sh", "-c", "echo $HOME"]),
        "/home/user\n"
    );
    assert_eq!(ok(&["-u", "4242", "busybox", "id", "-u"]), "4242\n");
    assert_eq!(ok(&["-u", "4242", "busybox", "id", "-g"]), "0\n");
    let groups = ok(&["-u", "user", "busybox", "id", "-G"]);
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["1000", "5"],
        "{groups}"
    );

    refused(
        &["-v", "/tmp:/x:bogus", "busybox", "true"],
        "unknown option \"bogus\"",
    );
    refused(
        &["--security-opt", "bogus=1", "busybox", "true"],
        "--security-opt \"bogus=1\"",
    );
    refused(
        &["--cap-add", "BOGUS", "busybox", "true"],
        "unknown capability \"CAP_BOGUS\"",
    );
    refused(
        &["--memory", "1k", "busybox", "true"],
        "minimum memory limit is 6MB",
    );
    // The imported image has no CMD: Docker refuses to guess `sh`.
    refused(&["busybox"], "no command specified");
    assert_eq!(e.out(&["ps", "-a", "-q"]), "");
    assert!(!e.data().join("volumes/bogus").exists());
}

/// A cgroup limit file of process `pid`'s cgroup: `v2` on a cgroup2-only
/// host, else `v1` in the controller's v1 hierarchy.
fn cgroup_limit(pid: i64, controller: &str, v2: &str, v1: &str) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            if unified && ctrls.is_empty() {
                Some(format!("/sys/fs/cgroup{path}/{v2}"))
            } else if !unified && ctrls.split(',').any(|c| c == controller) {
                Some(format!("/sys/fs/cgroup/{controller}{path}/{v1}"))
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {cg}"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs root"]
fn update_changes_limits_and_the_cgroup_manager_is_chosen_as_podman_does() {
    need_root!();
    let e = Engine::new("upd");
    let mem = |pid| cgroup_limit(pid, "memory", "memory.max", "memory.limit_in_bytes");
    let pids = |pid| cgroup_limit(pid, "pids", "pids.max", "pids.max");
    // Default: systemd where systemd runs a cgroup2-only host (the VM
    // stage), else cgroupfs (the development machine).
    let systemd_host = Path::new("/run/systemd/system").is_dir()
        && Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let default = if systemd_host { "systemd" } else { "cgroupfs" };
    // Without systemd, asking for it is one line naming why, and nothing
    // is made.
    if !systemd_host {
        let o = e.run(&[
            "--cgroup-manager",
            "systemd",
            "run",
            "--name",
            "sd",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(
            err.contains("--cgroup-manager systemd") && err.contains("not running"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(e.ps_names().is_empty());
    }
    let o = e.run(&["--cgroup-manager", "bogus", "ps"]);
    assert!(
        !o.status.success() && stderr(&o).contains("bogus"),
        "{}",
        stderr(&o)
    );
    // The default here.
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "u1", "--network", "none", "--memory", "64m", "busybox",
        "sleep", "1000",
    ]);
    let i = e.inspect("u1");
    assert_eq!(i["HostConfig"]["CgroupManager"], default);
    let pid = i["State"]["Pid"].as_i64().unwrap();
    assert_eq!(mem(pid), (64u64 << 20).to_string());
    // A running container: the cgroup at once, and inspect.
    let o = e.ok(&["update", "--memory", "32m", "--pids-limit", "30", "u1"]);
    assert_eq!(stdout(&o), "u1\n");
    assert_eq!(mem(pid), (32u64 << 20).to_string());
    assert_eq!(pids(pid), "30");
    let i = e.inspect("u1");
    assert_eq!(i["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(i["HostConfig"]["PidsLimit"], 30);
    // Bad input changes nothing.
    let o = e.run(&["update", "--memory", "1k", "u1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("minimum memory limit"),
        "{}",
        stderr(&o)
    );
    let o = e.run(&["update", "u1"]);
    assert!(
        stderr(&o).contains("you must provide one or more flags"),
        "{}",
        stderr(&o)
    );
    let o = e.run(&["update", "--memory", "48m", "nosuch"]);
    assert!(
        !o.status.success() && stderr(&o).contains("nosuch"),
        "{}",
        stderr(&o)
    );
    assert_eq!(mem(pid), (32u64 << 20).to_string());
    // A stopped container: kept for its next start.
    e.ok(&["stop", "-t", "1", "u1"]);
    e.ok(&["update", "--memory", "48m", "u1"]);
    e.ok(&["start", "u1"]);
    let pid = e.inspect("u1")["State"]["Pid"].as_i64().unwrap();
    assert_eq!(mem(pid), (48u64 << 20).to_string());
    assert_eq!(pids(pid), "30");
    e.ok(&["rm", "-f", "u1"]);

    // The other cgroup flags, in the kernel's files (v1 here, v2 in the VM:
    // shares become a weight by crun's log-scale fit, 512 -> 59 and
    // 1024 -> 100; the reservation becomes memory.low).
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "u2", "--network", "none", "--memory", "64m",
        "--memory-reservation", "32m", "--cpu-shares", "512", "--cpuset-cpus", "0",
        "busybox", "sleep", "1000",
    ]);
    let pid = e.inspect("u2")["State"]["Pid"].as_i64().unwrap();
    let shares = |pid| cgroup_limit(pid, "cpu", "cpu.weight", "cpu.shares");
    assert_eq!(shares(pid), if unified { "59" } else { "512" });
    assert_eq!(
        cgroup_limit(pid, "cpuset", "cpuset.cpus", "cpuset.cpus"),
        "0"
    );
    assert_eq!(
        cgroup_limit(pid, "memory", "memory.low", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    e.ok(&["update", "--cpu-shares", "1024", "u2"]);
    assert_eq!(shares(pid), if unified { "100" } else { "1024" });
    // What update did not name stays.
    assert_eq!(
        cgroup_limit(pid, "memory", "memory.low", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    let o = e.run(&["update", "--cpuset-cpus", "0-x", "u2"]);
    assert!(stderr(&o).contains("--cpuset-cpus"), "{}", stderr(&o));
    let o = e.run(&["run", "--memory-swap", "1g", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("set --memory too"), "{}", stderr(&o));
    e.ok(&["rm", "-f", "u2"]);

    // --memory-swappiness and --oom-kill-disable: in the v1 memory
    // cgroup; discarded with a warning where cgroup v2 has no such knobs.
    #[rustfmt::skip]
    let o = e.ok(&[
        "run", "-d", "--name", "u5", "--network", "none", "--memory", "64m",
        "--memory-swappiness", "10", "--oom-kill-disable", "busybox", "sleep", "1000",
    ]);
    let i = e.inspect("u5");
    assert_eq!(i["HostConfig"]["MemorySwappiness"], 10);
    assert_eq!(i["HostConfig"]["OomKillDisable"], true);
    let pid = i["State"]["Pid"].as_i64().unwrap();
    if unified {
        let err = stderr(&o);
        assert!(
            err.contains("--memory-swappiness is discarded")
                && err.contains("--oom-kill-disable is discarded"),
            "{err}"
        );
    } else {
        let swappiness = cgroup_limit(pid, "memory", "-", "memory.swappiness");
        assert_eq!(swappiness, "10");
        let oom = cgroup_limit(pid, "memory", "-", "memory.oom_control");
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    }
    e.ok(&["rm", "-f", "u5"]);
    let o = e.run(&["run", "--memory-swappiness", "101", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("the range is 0 to 100"),
        "{}",
        stderr(&o)
    );

    // Per-device IO limits, in blkio's files (v1) or io.max (v2), on the
    // first block device the host has.
    let (dev, numbers) = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .find_map(|d| {
            let numbers = std::fs::read_to_string(d.path().join("dev")).ok()?;
            let node = Path::new("/dev").join(d.file_name());
            node.exists()
                .then(|| (node.display().to_string(), numbers.trim().to_string()))
        })
        .expect("a block device");
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "u6", "--network", "none",
        "--device-read-bps", &format!("{dev}:1mb"), "--device-write-iops", &format!("{dev}:100"),
        "busybox", "sleep", "1000",
    ]);
    let pid = e.inspect("u6")["State"]["Pid"].as_i64().unwrap();
    if unified {
        let max = cgroup_limit(pid, "io", "io.max", "-");
        assert!(
            max.lines()
                .any(|l| l.starts_with(&format!("{numbers} rbps=1048576 "))
                    && l.ends_with(" wiops=100")),
            "{max}"
        );
    } else {
        let rbps = cgroup_limit(pid, "blkio", "-", "blkio.throttle.read_bps_device");
        assert_eq!(rbps, format!("{numbers} 1048576"));
        let wiops = cgroup_limit(pid, "blkio", "-", "blkio.throttle.write_iops_device");
        assert_eq!(wiops, format!("{numbers} 100"));
    }
    e.ok(&["rm", "-f", "u6"]);
    // --device-cgroup-rule: a device the default rules keep out becomes
    // usable (here the loop-control node, made in the container).
    let open_loop_control = |rule: Option<&str>| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        if let Some(r) = rule {
            a.extend(["--device-cgroup-rule", r]);
        }
        a.extend([
            "busybox",
            "sh",
            "-c",
            "mknod /tmp/lc c 10 237; exec 3</tmp/lc && echo opened",
        ]);
        stdout(&e.run(&a))
    };
    assert_eq!(open_loop_control(None), "");
    assert_eq!(open_loop_control(Some("c 10:237 rwm")), "opened\n");

    // --cgroup-parent: a path with cgroupfs, a slice with systemd; the
    // container's cgroup is made there, limits and all.
    let tag = format!("hakotest{}", std::process::id());
    let (parent, expect) = if systemd_host {
        (format!("{tag}.slice"), format!("/{tag}.slice/hako-"))
    } else {
        (format!("/{tag}/jobs"), format!("/{tag}/jobs/"))
    };
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "u3", "--network", "none", "--memory", "64m",
        "--cgroup-parent", &parent, "busybox", "sleep", "1000",
    ]);
    let i = e.inspect("u3");
    assert_eq!(i["HostConfig"]["CgroupParent"], parent.as_str());
    let pid = i["State"]["Pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let id = i["Id"].as_str().unwrap();
    assert!(
        cg.lines().any(|l| l.contains(&expect) && l.contains(id)),
        "{cg}"
    );
    assert_eq!(mem(pid), (64u64 << 20).to_string());
    e.ok(&["rm", "-f", "u3"]);
    // Left in place, as Docker leaves it: a parent may be shared.
    if !systemd_host {
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = std::fs::remove_dir(h.path().join(&tag).join("jobs"));
            let _ = std::fs::remove_dir(h.path().join(&tag));
        }
    }
    // The wrong kind for the manager, or a path out of the hierarchy: one
    // line, 125, nothing made.
    let wrong = if systemd_host {
        "/jobs"
    } else {
        "/a/../../etc"
    };
    let o = e.run(&[
        "create",
        "--name",
        "u4",
        "--cgroup-parent",
        wrong,
        "busybox",
        "true",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.starts_with(&format!("hako: --cgroup-parent {wrong:?}")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(e.ps_names().is_empty());
}

#[test]
#[ignore = "needs root"]
fn volumes_live_apart_from_containers() {
    need_root!();
    let e = Engine::new("vol");
    let vols = || -> Vec<String> {
        e.out(&["volume", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    // One line on stderr naming the problem, and exit 125.
    let refused = |args: &[&str], says: &str| {
        let o = e.run(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    let bg = |name: &str, args: &[&str]| {
        let mut a = vec!["run", "-d", "--name", name, "--network", "none"];
        a.extend_from_slice(args);
        e.ok(&a);
    };
    let run_out = |args: &[&str]| -> String {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        stdout(&e.ok(&a))
    };
    // An image with content where volumes will go.
    e.hostile_image("seeded", |d| {
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("data/seed"), "from-image\n").unwrap();
        std::os::unix::fs::chown(d.join("data/seed"), Some(33), Some(33)).unwrap();
    });

    // create (idempotent), ls, inspect.
    assert_eq!(
        stdout(&e.ok(&["volume", "create", "--label", "a=b", "v1"])),
        "v1\n"
    );
    assert_eq!(stdout(&e.ok(&["volume", "create", "v1"])), "v1\n");
    assert!(vols().contains(&"v1".to_string()));
    let i: Value = serde_json::from_str(&e.out(&["volume", "inspect", "v1"])).unwrap();
    assert_eq!(i[0]["Name"], "v1");
    assert_eq!(i[0]["Driver"], "local");
    assert_eq!(i[0]["Labels"]["a"], "b");
    let mp = PathBuf::from(i[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(mp, e.data().join("volumes/v1/_data"));
    assert!(mp.is_dir());
    assert_eq!(
        e.out(&["volume", "inspect", "-f", "{{.Name}} {{.Labels.a}}", "v1"]),
        "v1 b\n"
    );
    // Maps print as Go prints them; ls has the labels as one string.
    assert_eq!(
        e.out(&["volume", "inspect", "-f", "{{.Labels}} {{.Options}}", "v1"]),
        "map[a:b] map[]\n"
    );
    assert!(e
        .out(&["volume", "ls", "--format", "{{.Name}} {{.Labels}}"])
        .lines()
        .any(|l| l == "v1 a=b"));
    // Bad names and unknown volumes: one line, exit 125, nothing made.
    refused(&["volume", "create", "../x"], "not a volume name");
    assert!(!e.data().join("x").exists() && !e.data().join("volumes/../x").exists());
    refused(&["volume", "inspect", "nosuch"], "no such volume: nosuch");

    // Copy-up: a new volume gets the image's content, owners included;
    // what a container writes stays; a non-empty volume is not refilled.
    let s = run_out(&[
        "-v",
        "seedvol:/data",
        "seeded",
        "sh",
        "-c",
        "cat /data/seed; stat -c %u /data/seed; echo mine > /data/mine",
    ]);
    assert_eq!(s, "from-image\n33\n");
    let s = run_out(&[
        "-v",
        "seedvol:/data",
        "seeded",
        "sh",
        "-c",
        "rm /data/seed; ls /data",
    ]);
    assert_eq!(s, "mine\n");
    let s = run_out(&["-v", "seedvol:/data", "seeded", "ls", "/data"]);
    assert_eq!(s, "mine\n");
    // volume-nocopy: empty.
    let s = run_out(&[
        "--mount",
        "type=volume,source=nc,target=/data,volume-nocopy",
        "seeded",
        "ls",
        "-A",
        "/data",
    ]);
    assert_eq!(s, "");

    // Anonymous volumes: kept by rm, gone with rm -v, --rm and prune.
    let before = vols();
    bg("a1", &["-v", "/data", "seeded", "sleep", "100"]);
    let anon: Vec<String> = vols().into_iter().filter(|v| !before.contains(v)).collect();
    assert_eq!(anon.len(), 1, "{anon:?}");
    let i: Value = serde_json::from_str(&e.out(&["volume", "inspect", &anon[0]])).unwrap();
    assert_eq!(i[0]["Anonymous"], true);
    assert_eq!(
        run_out(&[
            "-v",
            &format!("{}:/d", anon[0]),
            "busybox",
            "cat",
            "/d/seed"
        ]),
        "from-image\n"
    );
    e.ok(&["rm", "-f", "a1"]);
    assert!(vols().contains(&anon[0]), "rm without -v keeps it");
    let o = e.out(&["volume", "prune", "-f"]);
    assert!(
        o.contains(&anon[0]) && o.contains("Total volumes deleted: 1"),
        "{o}"
    );
    assert_eq!(vols(), before, "prune leaves named volumes");
    bg("a2", &["-v", "/data", "seeded", "sleep", "100"]);
    assert_eq!(vols().len(), before.len() + 1);
    e.ok(&["rm", "-f", "-v", "a2"]);
    assert_eq!(vols(), before);
    run_out(&["-v", "/data", "seeded", "true"]);
    assert_eq!(vols(), before, "--rm takes its anonymous volumes");

    // A volume in use stays; --volumes-from shares it, ro when asked.
    bg("u1", &["-v", "v1:/s", "busybox", "sleep", "100"]);
    refused(&["volume", "rm", "v1"], "in use by container u1");
    run_out(&[
        "--volumes-from",
        "u1",
        "busybox",
        "sh",
        "-c",
        "echo shared > /s/f",
    ]);
    assert_eq!(stdout(&e.ok(&["exec", "u1", "cat", "/s/f"])), "shared\n");
    let s = run_out(&[
        "--volumes-from",
        "u1:ro",
        "busybox",
        "sh",
        "-c",
        "touch /s/g 2>/dev/null || echo read-only",
    ]);
    assert_eq!(s, "read-only\n");
    e.ok(&["rm", "-f", "u1"]);
    assert_eq!(stdout(&e.ok(&["volume", "rm", "v1"])), "v1\n");
    assert!(!e.data().join("volumes/v1").exists());
    e.ok(&["volume", "rm", "-f", "v1"]);

    // --mount bind and tmpfs.
    let host = e.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("h"), "host-file\n").unwrap();
    let bind = format!("type=bind,source={},target=/h,readonly", host.display());
    let s = run_out(&[
        "--mount",
        &bind,
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "cat /h/h; touch /h/x 2>/dev/null || echo ro; grep ' /t ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(s, "host-file\nro\ntmpfs\n");

    // Bad mounts: one line, 125, no container left.
    let names = e.ps_names();
    for (args, says) in [
        (
            vec!["-v", "a:/x", "-v", "b:/x"],
            "duplicate mount point: /x",
        ),
        (
            vec!["--mount", "type=bind,source=/nonexistent-hako,target=/x"],
            "does not exist",
        ),
        (vec!["--volumes-from", "nosuch"], "nosuch"),
        // Refused after the volume is made: the run's new volume goes too.
        (
            vec!["-v", "fresh-vol:/x", "--memory-swappiness", "101"],
            "the range is 0 to 100",
        ),
    ] {
        let mut a = vec!["run", "--network", "none"];
        a.extend_from_slice(&args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    }
    assert_eq!(e.ps_names(), names);
    assert!(!e
        .out(&["volume", "ls", "-q"])
        .lines()
        .any(|v| v == "fresh-vol"));
}

#[test]
#[ignore = "needs root"]
fn process_and_namespace_flags_reach_the_container() {
    need_root!();
    let e = Engine::new("tune");
    // ulimits, OOM score, groups, /dev/shm size, a sysctl of its own netns.
    #[rustfmt::skip]
    let o = e.ok(&[
        "run", "--rm", "--network", "none", "--ulimit", "nofile=100:200", "--ulimit", "nproc=77",
        "--oom-score-adj", "500", "--group-add", "tty", "--group-add", "1234", "--shm-size", "8m",
        "--sysctl", "net.ipv4.ip_forward=1", "busybox", "sh", "-c",
        "ulimit -n; ulimit -Hn; ulimit -u; cat /proc/self/oom_score_adj; id -G; \
         df -k /dev/shm | tail -1 | awk '{print $2}'; cat /proc/sys/net/ipv4/ip_forward",
    ]);
    assert_eq!(stdout(&o), "100\n200\n77\n500\n0 5 1234\n8192\n1\n");
    // --cgroupns: its own (the default: its cgroup is its root) or the
    // host's (the whole path shows); anything else is refused.
    let own = |ns: Option<&str>| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        if let Some(n) = ns {
            a.extend(["--cgroupns", n]);
        }
        a.extend(["busybox", "cat", "/proc/self/cgroup"]);
        stdout(&e.ok(&a))
    };
    for ns in [None, Some("private")] {
        let c = own(ns);
        assert!(c.lines().all(|l| l.ends_with(":/")), "{ns:?}: {c}");
    }
    let c = own(Some("host"));
    assert!(
        c.lines().any(|l| l.len() > 20 && !l.ends_with(":/")),
        "host: {c}"
    );
    let o = e.run(&["run", "--rm", "--cgroupns", "both", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    // Labels (flags over files) and the stop settings, in inspect.
    let lf = e.dir.path().join("labels");
    std::fs::write(&lf, "team=core\ntier=file\n").unwrap();
    let cid = e.dir.path().join("cid");
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "t1", "--network", "none", "--label", "tier=flag",
        "--label-file", lf.to_str().unwrap(), "--stop-signal", "SIGUSR1", "--stop-timeout", "30",
        "--cidfile", cid.to_str().unwrap(), "busybox", "sh", "-c",
        "trap 'exit 7' USR1; while :; do sleep 0.1; done",
    ]);
    let i = e.inspect("t1");
    assert_eq!(i["Config"]["Labels"]["team"], "core");
    assert_eq!(i["Config"]["Labels"]["tier"], "flag");
    assert_eq!(i["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(i["Config"]["StopTimeout"], 30);
    assert_eq!(
        std::fs::read_to_string(&cid).unwrap(),
        i["Id"].as_str().unwrap()
    );
    // stop sends the container's signal: the trap's exit code, not 137.
    e.ok(&["stop", "t1"]);
    assert_eq!(e.inspect("t1")["State"]["ExitCode"], 7);
    e.ok(&["rm", "t1"]);
    // --device: the host's node at the container's path (the cgroup rule
    // with its PERMS is checked in device_flag's unit test: /dev/zero is
    // also in the default rules, which allow it whole).
    #[rustfmt::skip]
    let o = e.ok(&[
        "run", "--rm", "--network", "none", "--device", "/dev/zero:/dev/myzero:r", "busybox",
        "sh", "-c", "stat -c '%t %T' /dev/myzero; head -c 2 /dev/myzero | wc -c",
    ]);
    assert_eq!(stdout(&o), "1 5\n2\n");
    // Bad input: one line, 125, nothing left.
    let names = e.ps_names();
    for (args, says) in [
        (vec!["--cidfile", cid.to_str().unwrap()], "the file exists"),
        (vec!["--sysctl", "vm.swappiness=1"], "not namespaced"),
        (
            vec!["--sysctl", "net.ipv4.ip_forward=1"],
            "host's network namespace",
        ),
        (vec!["--ulimit", "nofile=10:5"], "soft limit"),
        (vec!["--oom-score-adj", "2000"], "-1000 to 1000"),
        (
            vec!["--group-add", "nogroupnamed"],
            "unable to find group nogroupnamed",
        ),
        (vec!["--stop-signal", "SIGNOPE"], "--stop-signal"),
        (vec!["--shm-size", "0"], "--shm-size"),
        (vec!["--pull", "bogus"], "always, missing or never"),
        (
            vec!["--device", "/etc/passwd"],
            "not a character or block device",
        ),
        (vec!["--device", "/dev/nosuch-hako"], "No such file"),
        (vec!["--device", "/dev/zero:rel"], "absolute"),
        (vec!["--device", "/dev/zero:/dev/z:rwx"], "letters of rwm"),
    ] {
        // The sysctl case runs on the host's network, the others on none.
        let net = if args.contains(&"net.ipv4.ip_forward=1") {
            "host"
        } else {
            "none"
        };
        let mut a = vec!["run", "--network", net];
        a.extend_from_slice(&args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = e.run(&a);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(e.ps_names(), names);
    // --pull never: the local image, or an error without a pull.
    e.ok(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let o = e.run(&[
        "run",
        "--pull",
        "never",
        "--network",
        "none",
        "nosuch-hako-img",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--pull never"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("pulling"), "{}", stderr(&o));
}

#[test]
#[ignore = "needs root"]
fn publish_all_and_free_host_ports_as_docker() {
    need_root!();
    let e = Engine::new("ports");
    // An image that EXPOSEs two ports (import --change).
    #[rustfmt::skip]
    e.ok(&[
        "import", "--change", "EXPOSE 8080", "--change", "EXPOSE 9090/udp",
        "--change", r#"CMD ["sh"]"#, busybox_rootfs().to_str().unwrap(), "exposed",
    ]);
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "p1", "-P", "-p", "127.0.0.1::7070", "exposed", "sh", "-c",
        "while true; do echo hello-from-P | nc -l -p 8080; done",
    ]);
    // Every EXPOSEd port and the port without a host port got one.
    let lines = e.out(&["port", "p1"]);
    let mapped: Vec<(&str, &str)> = lines
        .lines()
        .map(|l| l.split_once(" -> ").unwrap())
        .collect();
    let ctr: Vec<&str> = mapped.iter().map(|m| m.0).collect();
    assert_eq!(ctr, ["7070/tcp", "8080/tcp", "9090/udp"], "{lines}");
    // --expose adds to what -P publishes (a range, another protocol).
    #[rustfmt::skip]
    e.ok(&[
        "run", "-d", "--name", "p2", "-P", "--expose", "6060-6061", "--expose", "5353/udp",
        "busybox", "sleep", "60",
    ]);
    let p2 = e.out(&["port", "p2"]);
    let ctr2: Vec<&str> = p2.lines().filter_map(|l| l.split(" -> ").next()).collect();
    assert_eq!(ctr2, ["5353/udp", "6060/tcp", "6061/tcp"], "{p2}");
    e.ok(&["rm", "-f", "p2"]);
    // A bad --expose, and --platform other than the host's: one line, 125.
    for args in [
        vec!["--expose", "70000"],
        vec!["--platform", "linux/riscv64"],
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}: {o:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{o:?}"
        );
    }
    let host = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--platform",
        &format!("linux/{host}"),
        "busybox",
        "true",
    ]);
    assert!(mapped[0].1.starts_with("127.0.0.1:"), "{lines}");
    assert!(mapped[1].1.starts_with("0.0.0.0:"), "{lines}");
    let host = e.out(&["port", "p1", "8080"]);
    assert_eq!(host.trim(), mapped[1].1);
    let hp = host.trim().rsplit(':').next().unwrap().to_string();
    assert_ne!(hp, "8080");
    // The container answers on it, from the host.
    let mut got = String::new();
    for _ in 0..25 {
        let o = Command::new("busybox")
            .args(["nc", "-w", "2", "127.0.0.1", &hp])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        got = stdout(&o);
        if got.contains("hello-from-P") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(got.contains("hello-from-P"), "{got}");
    // A port that is not published: one line, 125.
    let o = e.run(&["port", "p1", "1234"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("no public port \"1234\""),
        "{}",
        stderr(&o)
    );
    // A bad change to import: one line, 125, no image.
    let o = e.run(&[
        "import",
        "--change",
        "RUN true",
        busybox_rootfs().to_str().unwrap(),
        "bad",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("--change \"RUN true\""),
        "{}",
        stderr(&o)
    );
    // (By name: "bad" is also hex, and an image id may hold it.)
    assert!(!e
        .out(&["images", "--format", "{{.Repository}}"])
        .lines()
        .any(|l| l == "bad"));
    e.ok(&["rm", "-f", "p1"]);
}

#[test]
#[ignore = "needs root"]
fn rename_prune_and_version() {
    need_root!();
    let mut e = Engine::new("ren");
    let net = format!("hkren{}", std::process::id() % 100_000);
    e.ok(&["network", "create", &net]);
    // Removed by the engine's drop too, should an assertion fail first.
    e.networks.push(net.clone());
    e.ok(&[
        "run",
        "-d",
        "--name",
        "old",
        "--network",
        &net,
        "busybox",
        "sleep",
        "100",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        &net,
        "busybox",
        "sleep",
        "100",
    ]);
    // Renamed while running: ps, inspect, exec by the new name; the old
    // one is free; peers resolve the new name.
    assert_eq!(stdout(&e.ok(&["rename", "old", "new"])), "");
    assert!(e.ps_names().contains(&"new".to_string()));
    assert!(!e.ps_names().contains(&"old".to_string()));
    assert_eq!(
        e.inspect("new")["Name"]
            .as_str()
            .map(|n| n.trim_start_matches('/')),
        Some("new")
    );
    assert_eq!(stdout(&e.ok(&["exec", "new", "echo", "hi"])), "hi\n");
    let hosts = stdout(&e.ok(&["exec", "peer", "cat", "/etc/hosts"]));
    let has = |n: &str| hosts.split_whitespace().any(|w| w == n);
    assert!(has("new") && !has("old"), "{hosts}");
    // Bad renames: one line, 125, nothing changed.
    for (args, says) in [
        (vec!["rename", "new", "peer"], "already in use"),
        (vec!["rename", "new", "bad/name"], "bad/name"),
        (vec!["rename", "nosuch", "x"], "no such container"),
    ] {
        let o = e.run(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    e.ok(&[
        "run",
        "--name",
        "old",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    // container prune: the stopped ones go, the running ones stay.
    e.ok(&[
        "create",
        "--name",
        "fresh",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let old_id = e.inspect("old")["Id"].as_str().unwrap().to_string();
    let out = e.out(&["container", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Containers:\n") && out.contains(&old_id),
        "{out}"
    );
    assert!(out.contains("Total containers deleted: 2"), "{out}");
    let mut names = e.ps_names();
    names.sort();
    assert_eq!(names, ["new", "peer"]);
    e.ok(&["rm", "-f", "new", "peer"]);
    e.ok(&["network", "rm", &net]);
    // inspect finds containers, images, volumes and networks, or one kind.
    e.ok(&["volume", "create", "iv"]);
    let kinds = |args: &[&str]| -> Value { serde_json::from_str(&e.out(args)).unwrap() };
    let v = kinds(&["inspect", "busybox", "iv"]);
    assert!(
        v[0]["config"].is_object() || v[0]["Config"].is_object(),
        "{v}"
    );
    assert_eq!(v[1]["Name"], "iv");
    assert_eq!(
        kinds(&["inspect", "--type", "volume", "iv"])[0]["Driver"],
        "local"
    );
    let o = e.run(&["inspect", "--type", "container", "iv"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("no such container: iv"),
        "{}",
        stderr(&o)
    );
    let o = e.run(&["inspect", "nothing-here"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("no such object: nothing-here"),
        "{}",
        stderr(&o)
    );
    e.ok(&["volume", "rm", "iv"]);
    // version
    let v: Value = serde_json::from_str(&e.out(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert!(e.out(&["version"]).contains("Kernel:"));
}

#[test]
#[ignore = "needs root"]
fn ps_filters_and_log_windows() {
    need_root!();
    let e = Engine::new("filt");
    let none = ["--network", "none"];
    let run = |args: &[&str]| {
        let mut a = vec!["run"];
        a.extend_from_slice(&none);
        a.extend_from_slice(args);
        e.ok(&a);
    };
    run(&[
        "-d", "--name", "c1", "--label", "team=a", "-v", "fv:/data", "busybox", "sleep", "100",
    ]);
    run(&[
        "--name", "c2", "--label", "team=b", "busybox", "sh", "-c", "exit 0",
    ]);
    let o = e.run(&[
        "run",
        "--network",
        "none",
        "--name",
        "c3",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let names = |filters: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "json"];
        for f in filters {
            a.extend_from_slice(&["--filter", f]);
        }
        let mut v: Vec<String> = e
            .out(&a)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["Names"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&["label=team=a"]), ["c1"]);
    assert_eq!(names(&["label=team"]), ["c1"], "running only without -a");
    // A status filter shows stopped ones without -a; exited by code.
    assert_eq!(names(&["status=exited"]), ["c2", "c3"]);
    assert_eq!(names(&["exited=3"]), ["c3"]);
    // One key: alternatives; different keys: all must match.
    assert_eq!(names(&["name=c1", "name=c3", "status=exited"]), ["c3"]);
    assert_eq!(names(&["ancestor=busybox", "status=running"]), ["c1"]);
    let o = e.run(&["ps", "--filter", "colour=red"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("unknown filter \"colour\""),
        "{}",
        stderr(&o)
    );
    // Newest first; -n/-l: the last created, of every state, after the
    // filters; before/since a container, network, volume, health.
    let lines =
        |args: &[&str]| -> Vec<String> { e.out(args).lines().map(str::to_string).collect() };
    let f = ["--format", "{{.Names}}"];
    assert_eq!(lines(&[&["ps", "-a"], &f[..]].concat()), ["c3", "c2", "c1"]);
    assert_eq!(lines(&[&["ps", "-n", "2"], &f[..]].concat()), ["c3", "c2"]);
    assert_eq!(lines(&[&["ps", "-l"], &f[..]].concat()), ["c3"]);
    assert_eq!(
        lines(&[&["ps", "-n", "0"], &f[..]].concat()),
        ["c3", "c2", "c1"]
    );
    assert_eq!(
        lines(&[&["ps", "-n", "1", "--filter", "name=c1"], &f[..]].concat()),
        ["c1"]
    );
    assert_eq!(
        lines(&[&["ps", "-a", "--filter", "before=c3"], &f[..]].concat()),
        ["c2", "c1"]
    );
    assert_eq!(
        lines(&[&["ps", "-a", "--filter", "since=c1"], &f[..]].concat()),
        ["c3", "c2"]
    );
    assert_eq!(names(&["network=none"]), ["c1"]);
    assert_eq!(names(&["volume=fv"]), ["c1"]);
    assert_eq!(names(&["volume=/data"]), ["c1"]);
    assert_eq!(names(&["health=none"]), ["c1"]);
    assert!(names(&["health=healthy"]).is_empty());
    for (filter, says) in [
        ("before=nosuch", "nosuch"),
        (
            "health=fine",
            "health is starting, healthy, unhealthy or none",
        ),
    ] {
        let o = e.run(&["ps", "--filter", filter]);
        assert_eq!(o.status.code(), Some(125), "{filter}");
        assert!(stderr(&o).contains(says), "{filter}: {}", stderr(&o));
    }
    let full = e.out(&["ps", "-q", "--no-trunc"]);
    assert_eq!(full.trim().len(), 64, "{full}");
    assert_eq!(full.trim(), e.inspect("c1")["Id"].as_str().unwrap());

    // logs --since/--until around one line's own timestamp.
    run(&[
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "echo first; sleep 0.2; echo second",
    ]);
    let t = e.out(&["logs", "-t", "lg"]);
    let second = t
        .lines()
        .find(|l| l.ends_with(" second"))
        .and_then(|l| l.split_once(' '))
        .map(|(ts, _)| ts.to_string())
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(e.out(&["logs", "--since", &second, "lg"]), "second\n");
    assert_eq!(e.out(&["logs", "--until", &second, "lg"]), "first\n");
    assert_eq!(e.out(&["logs", "--since", "1h", "lg"]), "first\nsecond\n");
    assert_eq!(e.out(&["logs", "--until", "1h", "lg"]), "");
    let o = e.run(&["logs", "--since", "yesterday", "lg"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("--since \"yesterday\""),
        "{}",
        stderr(&o)
    );

    // --log-opt max-size/max-file: the log rotates, at most that many
    // files stay, `logs` reads them oldest first, and `logs -f` follows
    // across rotations to the last line.
    #[rustfmt::skip]
    run(&[
        "-d", "--name", "rot", "--log-opt", "max-size=4k", "--log-opt", "max-file=3", "busybox",
        "sh", "-c", "sleep 0.5; i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line-$i; \
         usleep 5000; done",
    ]);
    let follow = e
        .cmd(&["logs", "-f", "rot"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_output(follow, Duration::from_secs(60), &["logs", "-f"]);
    let got: Vec<u32> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("line-")?.parse().ok())
        .collect();
    assert_eq!(got.last(), Some(&300), "{got:?}");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost: {got:?}"
    );
    let all: Vec<u32> = e
        .out(&["logs", "rot"])
        .lines()
        .filter_map(|l| l.strip_prefix("line-")?.parse().ok())
        .collect();
    assert!(all.len() < 300 && all.last() == Some(&300), "{all:?}");
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
    let id = e.out(&["inspect", "-f", "{{.Id}}", "rot"]);
    let files = std::fs::read_dir(e.data().join("containers").join(id.trim()))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("container.log")
        })
        .count();
    assert_eq!(files, 3);
    // The none driver keeps nothing; other drivers and options are refused.
    run(&["--rm", "--log-driver", "none", "busybox", "true"]);
    for bad in [
        ["--log-driver", "syslog"],
        ["--log-opt", "max-file=2"],
        ["--log-opt", "compress=true"],
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend(bad);
        a.extend(["busybox", "true"]);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(125), "{bad:?}: {o:?}");
    }
}

/// The numbers a counter container printed so far (its log).
fn counted(e: &Engine, name: &str) -> Vec<u64> {
    e.out(&["logs", name])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn checkpoint_and_restore_a_counter_on_the_bridge() {
    need_root!();
    let e = Engine::new("ckpt");
    let script = "exec 3>>/count.log; i=0; \
                  while :; do i=$((i+1)); echo $i; echo $i >&3; sleep 0.05; done";
    // A first container takes the network's lowest address, so that ctr's
    // is not the one any new lease would get.
    e.ok(&["run", "-d", "--name", "sib", "busybox", "sleep", "600"]);
    e.ok(&["run", "-d", "--name", "ctr", "busybox", "sh", "-c", script]);
    poll(10, "the counter to count", || {
        (counted(&e, "ctr").len() >= 5).then_some(())
    });
    let ip = e.inspect("ctr")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(ip.starts_with(&e.subnet_prefix), "{ip}");

    if !criu_works() {
        let o = e.run(&["container", "checkpoint", "ctr"]);
        assert_eq!(o.status.code(), Some(125));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("criu failed") && err.contains("criu check"),
            "{err}"
        );
        assert_eq!(e.inspect("ctr")["State"]["Status"], "running");
        let n = counted(&e, "ctr").len();
        poll(10, "the counter to go on", || {
            (counted(&e, "ctr").len() > n).then_some(())
        });
        let o = e.run(&["container", "restore", "ctr"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("is running"));
        return;
    }

    // Checkpointed, it shows as exited 0 and its network is released.
    assert_eq!(e.out(&["container", "checkpoint", "ctr"]).trim(), "ctr");
    let st = e.inspect("ctr")["State"].clone();
    assert_eq!(st["Status"], "exited", "{st}");
    assert_eq!(st["ExitCode"], 0, "{st}");
    assert_eq!(st["Checkpointed"], true, "{st}");
    let last = *counted(&e, "ctr").last().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(*counted(&e, "ctr").last().unwrap(), last, "it stopped");

    // Restored, it counts on from there, in the same log, with its open
    // file, and on the network again, at its address from before (free
    // still, though lower ones are free now too).
    e.ok(&["rm", "-f", "sib"]);
    assert_eq!(e.out(&["container", "restore", "ctr"]).trim(), "ctr");
    assert_eq!(e.inspect("ctr")["State"]["Status"], "running");
    let after = poll(10, "the counter to go on", || {
        let c = counted(&e, "ctr");
        (c.len() > c.iter().position(|n| *n == last)? + 3).then_some(c)
    });
    let at = after.iter().position(|n| *n == last).unwrap();
    assert_eq!(after[at + 1], last + 1, "continues from the checkpoint");
    let in_file: u64 = e
        .out(&["exec", "ctr", "tail", "-n1", "/count.log"])
        .trim()
        .parse()
        .unwrap();
    assert!(in_file > last, "the open file grows: {in_file} vs {last}");
    let ip2 = e.inspect("ctr")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(ip2, ip, "the address from before the checkpoint");
    let addr = e.out(&["exec", "ctr", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("{ip2}/")), "{addr}");

    // --leave-running keeps it going.
    assert_eq!(
        e.out(&["container", "checkpoint", "--leave-running", "ctr"])
            .trim(),
        "ctr"
    );
    assert_eq!(e.inspect("ctr")["State"]["Status"], "running");
    let n = counted(&e, "ctr").len();
    poll(10, "the counter to go on", || {
        (counted(&e, "ctr").len() > n).then_some(())
    });
    let o = e.run(&["container", "restore", "ctr"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is running"));

    // --export: the archive makes the container again after it is gone,
    // and it counts on from there in its new log.
    let archive = e.dir.path().join("ctr.tar");
    let a = archive.to_str().unwrap();
    e.ok(&["container", "checkpoint", "--export", a, "ctr"]);
    let last = *counted(&e, "ctr").last().unwrap();
    e.ok(&["rm", "ctr"]);
    let id = e.out(&["container", "restore", "--import", a]);
    assert_eq!(id.trim().len(), 64, "{id}");
    assert_eq!(e.inspect("ctr")["State"]["Status"], "running");
    let c = poll(10, "the imported counter to count", || {
        let c = counted(&e, "ctr");
        (c.len() >= 3).then_some(c)
    });
    assert_eq!(c[0], last + 1, "continues from the exported checkpoint");
    let in_file: u64 = e
        .out(&["exec", "ctr", "tail", "-n1", "/count.log"])
        .trim()
        .parse()
        .unwrap();
    assert!(in_file > last, "its root filesystem came along");
    // The name is taken now: a second import says so and makes nothing;
    // --name makes a second copy; a file that is not an archive is refused.
    let before = e.ps_names();
    let o = e.run(&["container", "restore", "--import", a]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(e.ps_names(), before);
    e.ok(&["container", "restore", "--import", a, "--name", "ctr2"]);
    assert_eq!(e.inspect("ctr2")["State"]["Status"], "running");
    let junk = e.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar").unwrap();
    let o = e.run(&["container", "restore", "--import", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("junk.tar"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(e.ps_names().len(), before.len() + 1);
    e.ok(&["rm", "-f", "ctr2"]);

    // A container that was never checkpointed has nothing to restore, and
    // an exited one cannot be checkpointed.
    e.ok(&["run", "--name", "plain", "busybox", "true"]);
    let o = e.run(&["container", "restore", "plain"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no checkpoint"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run(&["container", "checkpoint", "plain"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not running"));
    e.ok(&["rm", "-f", "ctr", "plain"]);
}

#[test]
#[ignore = "needs root"]
fn commit_diff_export_tag_and_history() {
    need_root!();
    let e = Engine::new("commit");
    e.ok(&[
        "run",
        "--name",
        "c",
        "-e",
        "GREETING=hi",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; rm /bin/ls; mkdir /data; echo x > /data/x",
    ]);
    // diff: Docker's A/C/D lines.
    let d = e.out(&["diff", "c"]);
    for want in ["A /made", "D /bin/ls", "C /bin", "A /data", "A /data/x"] {
        assert!(d.lines().any(|l| l == want), "{want} not in:\n{d}");
    }
    // commit: the changes and the container's settings make an image.
    let id = e.out(&[
        "commit",
        "-m",
        "made it",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "c",
        "committed:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(e.out(&["run", "--rm", "committed:v1"]).trim(), "made");
    assert_eq!(
        e.out(&[
            "run",
            "--rm",
            "committed:v1",
            "sh",
            "-c",
            "echo $GREETING; ls /data"
        ])
        .trim(),
        "hi\nx"
    );
    let o = e.run(&["run", "--rm", "committed:v1", "ls", "/bin/ls"]);
    assert_ne!(o.status.code(), Some(0), "the deletion is in the image");
    // history: the commit on top, with its message.
    let h = e.out(&["history", "committed:v1"]);
    let first = h.lines().nth(1).unwrap();
    assert!(
        first.contains("hako commit") && first.contains("made it"),
        "{h}"
    );
    assert!(h.lines().count() >= 3, "{h}");
    // tag: another name for the same image.
    e.ok(&["tag", "committed:v1", "other:v2"]);
    let images = e.out(&["images"]);
    assert!(
        images.contains("other") && images.contains("v2"),
        "{images}"
    );
    assert_eq!(e.out(&["run", "--rm", "other:v2"]).trim(), "made");
    // export: the container's filesystem as a tar that import takes back.
    let tar = e.dir.path().join("c.tar");
    e.ok(&["export", "-o", tar.to_str().unwrap(), "c"]);
    e.ok(&["import", tar.to_str().unwrap(), "exported"]);
    assert_eq!(
        e.out(&["run", "--rm", "exported", "cat", "/made"]).trim(),
        "made"
    );
    // ps --size: what it wrote (/made is 5 bytes, /data/x 2), and with
    // its image.
    let sizes = e.out(&["ps", "-a", "--size", "--format", "{{.Names}} {{.SizeRw}}"]);
    let rw: u64 = sizes
        .lines()
        .find_map(|l| l.strip_prefix("c "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{sizes}"));
    assert!(rw >= 7, "{sizes}");
    let table = e.out(&["ps", "-a", "--size"]);
    assert!(table.lines().next().unwrap().ends_with("SIZE"), "{table}");
    assert!(table.contains("(virtual "), "{table}");
    // Bad input: one line, exit 125.
    let o = e.run(&["commit", "nosuch", "x"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such container"));
    let o = e.run(&["export", "nosuch"]);
    assert_eq!(o.status.code(), Some(125));
    e.ok(&["rm", "c"]);
}

#[test]
#[ignore = "needs root"]
fn cp_both_ways_running_and_stopped() {
    need_root!();
    let e = Engine::new("cp");
    let h = e.dir.path().join("h");
    std::fs::create_dir_all(h.join("dir")).unwrap();
    std::fs::write(h.join("file"), "host-file").unwrap();
    std::fs::write(h.join("dir/a"), "A").unwrap();
    let hp = |p: &str| h.join(p).to_string_lossy().into_owned();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--tmpfs",
        "/scratch",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sleep",
        "600",
    ]);
    let cat = |p: &str| e.out(&["exec", "c", "cat", p]);
    // Host to a running container: a file to a new name, a directory into
    // a tmpfs the container mounted, a directory's contents into a volume.
    e.ok(&["cp", &hp("file"), "c:/newfile"]);
    assert_eq!(cat("/newfile"), "host-file");
    e.ok(&["cp", &hp("dir"), "c:/scratch"]);
    assert_eq!(cat("/scratch/dir/a"), "A");
    e.ok(&["cp", &format!("{}/.", hp("dir")), "c:/vol"]);
    assert_eq!(cat("/vol/a"), "A");
    // Container to host: a directory to a new name (its symlink kept as
    // one), a file into a directory.
    e.ok(&[
        "exec",
        "c",
        "sh",
        "-c",
        "mkdir /out && echo O > /out/o && ln -s / /out/root",
    ]);
    e.ok(&["cp", "c:/out", &hp("copied")]);
    assert_eq!(std::fs::read_to_string(h.join("copied/o")).unwrap(), "O\n");
    assert_eq!(
        std::fs::read_link(h.join("copied/root")).unwrap(),
        Path::new("/")
    );
    e.ok(&["cp", "c:/out/o", &hp("")]);
    assert_eq!(std::fs::read_to_string(h.join("o")).unwrap(), "O\n");
    // A path through the container's symlink to / stays in the container.
    e.ok(&["cp", "c:/out/root/etc/hostname", &hp("hn")]);
    assert_eq!(
        std::fs::read_to_string(h.join("hn")).unwrap(),
        cat("/etc/hostname")
    );
    // `-`: a tar on stdout, and back in from stdin.
    let tar = e.run(&["cp", "c:/out", "-"]);
    assert!(tar.status.success());
    assert!(
        tar.stdout.windows(5).any(|w| w == b"out/o"),
        "a tar with out/o"
    );
    let mut child = e
        .cmd(&["cp", "-", "c:/scratch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    }
    let o = wait_output(child, Duration::from_secs(60), &["cp", "-"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cat("/scratch/out/o"), "O\n");
    // A stopped container: its root filesystem both ways.
    e.ok(&["kill", "c"]);
    poll(10, "c to stop", || {
        (e.inspect("c")["State"]["Status"] == "exited").then_some(())
    });
    e.ok(&["cp", &hp("file"), "c:/after"]);
    e.ok(&["cp", "c:/after", &hp("after")]);
    assert_eq!(
        std::fs::read_to_string(h.join("after")).unwrap(),
        "host-file"
    );
    // Bad input: one line, 125.
    for (args, want) in [
        (vec!["cp", "nosuch:/x", "/tmp"], "no such container"),
        (vec!["cp", "c:/nope", "/tmp/x"], "No such file"),
        (
            vec!["cp", "/etc/hostname", "/tmp/x"],
            "one side must be a container",
        ),
    ] {
        let err = e.fails(&args, want);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    e.ok(&["rm", "-f", "c"]);
    e.ok(&["volume", "rm", "cpvol"]);
}

#[test]
#[ignore = "needs root"]
fn go_templates_format_the_listings() {
    need_root!();
    let e = Engine::new("fmt");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "f1",
        "--label",
        "tier=web",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    e.ok(&["volume", "create", "fmtvol"]);
    assert_eq!(e.out(&["ps", "--format", "{{.Names}}"]).trim(), "f1");
    assert_eq!(
        e.out(&["ps", "--format", "{{.Names}} {{.Networks}} {{.Image}}"])
            .trim(),
        "f1 none busybox"
    );
    assert_eq!(
        e.out(&["inspect", "-f", "{{.Config.Image}}", "f1"]).trim(),
        "busybox"
    );
    // Docker's management forms name the same verbs.
    assert_eq!(
        e.out(&["container", "ls", "--format", "{{.Names}}"]).trim(),
        "f1"
    );
    assert_eq!(
        e.out(&["container", "inspect", "-f", "{{.Name}}", "f1"])
            .trim(),
        "f1"
    );
    assert!(e.out(&["image", "history", "busybox"]).starts_with("IMAGE"));
    let o = e.run(&["container", "frobnicate"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    let t = e.out(&["ps", "--format", "table {{.ID}}\\t{{.Names}}"]);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("NAMES"),
        "{t}"
    );
    assert!(lines[1].ends_with("f1"), "{t}");
    assert_eq!(
        e.out(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "f1"])
            .trim(),
        "running f1"
    );
    assert_eq!(
        e.out(&["inspect", "--format", "{{json .Config.Labels}}", "f1"])
            .trim(),
        r#"{"tier":"web"}"#
    );
    let images = e.out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.lines().any(|l| l.ends_with("busybox:latest")),
        "{images}"
    );
    // --filter: reference by Docker's familiar name, per tag; dangling.
    e.ok(&["tag", "busybox", "example.com/team/bb:v1"]);
    let tags = |f: &str| e.out(&["images", "-f", f, "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags("reference=busy*").trim().ends_with("busybox:latest"));
    assert_eq!(tags("reference=*/team/*").trim(), "example.com/team/bb:v1");
    assert_eq!(tags("dangling=true"), "");
    let o = e.run(&["images", "-f", "size=big"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    e.ok(&["rmi", "example.com/team/bb:v1"]);
    assert_eq!(
        e.out(&["volume", "ls", "--format", "{{.Name}}"]).trim(),
        "fmtvol"
    );
    e.ok(&["network", "create", "fmtnet"]);
    let nets = e.out(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    e.ok(&["network", "rm", "fmtnet"]);
    assert!(nets.lines().any(|l| l == "fmtnet bridge"), "{nets}");
    let stats = e.out(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "f1",
    ]);
    assert_eq!(stats.trim(), "f1 1", "{stats}");
    // A bad template: one line, 125, before anything runs.
    for args in [
        vec!["ps", "--format", "{{.Names"],
        vec!["inspect", "-f", "{{.Nope", "f1"],
    ] {
        let o = e.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--format"), "{err}");
    }
    e.ok(&["rm", "-f", "f1"]);
    e.ok(&["volume", "rm", "fmtvol"]);
}

#[test]
#[ignore = "needs root"]
fn stats_stream_until_the_containers_stop() {
    need_root!();
    let e = Engine::new("stats");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    // --no-stream: one table, with a CPU figure from two samples.
    let one = e.out(&["stats", "--no-stream", "busy"]);
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines.len(), 2, "{one}");
    assert!(
        lines[0].contains("CPU %") && lines[0].contains("MEM %"),
        "{one}"
    );
    // Memory as Docker shows it: binary units, and without a limit the
    // host's memory as the limit.
    let mem = e.out(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "busy"]);
    let (used, limit) = mem.trim().split_once(" / ").unwrap();
    let binary = |s: &str| ["B", "KiB", "MiB", "GiB"].iter().any(|u| s.ends_with(u));
    assert!(binary(used) && binary(limit), "{mem}");
    let host_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    let shown_kib = ["KiB", "MiB", "GiB"]
        .iter()
        .enumerate()
        .find_map(|(i, u)| {
            let n: f64 = limit.strip_suffix(u)?.parse().ok()?;
            Some(n * 1024f64.powi(i as i32))
        })
        .unwrap();
    assert!(
        (shown_kib / host_kib - 1.0).abs() < 0.01,
        "{mem} vs {host_kib} KiB"
    );
    // Streaming: a line a second, busy using CPU; it ends by itself when
    // the container stops.
    let mut child = e
        .cmd(&["stats", "--format", "{{.Name}} {{.CPUPerc}}", "busy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let mut l = String::new();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut l).unwrap() > 0,
            "stats ended early: {seen:?}"
        );
        seen.push(l.trim().to_string());
    }
    for l in &seen {
        let pct: f64 = l
            .strip_prefix("busy ")
            .and_then(|p| p.strip_suffix('%'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{l}"));
        assert!(pct > 0.0, "a busy loop uses CPU: {l}");
    }
    e.ok(&["kill", "busy"]);
    let o = wait_output(child, Duration::from_secs(30), &["stats"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    e.ok(&["rm", "busy"]);
}

/// A usage error (unknown flag or verb, a missing argument) is bad input:
/// Docker's exit code 125 and the error on stderr; --help and --version
/// succeed on stdout. (No root needed: nothing is run.)
#[test]
fn usage_errors_exit_125_and_help_exits_0() {
    let hako = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .args(args)
            .env("HAKO_DATA_DIR", "/nonexistent/hako-usage-test")
            .output()
            .unwrap()
    };
    for bad in [
        &["volume", "create", "--bogus"][..],
        &["run"],
        &["nosuchverb"],
        &["ps", "--format"],
    ] {
        let o = hako(bad);
        assert_eq!(o.status.code(), Some(125), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{bad:?}: {err}");
        assert!(o.stdout.is_empty(), "{bad:?}");
    }
    for good in [&["--help"][..], &["--version"], &["run", "--help"]] {
        let o = hako(good);
        assert_eq!(o.status.code(), Some(0), "{good:?}");
        assert!(!o.stdout.is_empty(), "{good:?}");
    }
    assert!(!std::path::Path::new("/nonexistent/hako-usage-test").exists());
}

/// A container's processes start with no signal blocked, whatever the
/// process that started them blocks (the monitor reads its signals from a
/// signalfd): detached, in the foreground, exec'd and restarted. A blocked
/// SIGTERM would make every `stop` wait for its timeout.
#[test]
#[ignore = "needs root"]
fn containers_start_with_no_signal_blocked() {
    need_root!();
    let e = Engine::new("sigmask");
    let unblocked = |out: &str| {
        let masks: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("SigBlk:"))
            .map(str::trim)
            .collect();
        assert!(!masks.is_empty(), "{out}");
        for m in masks {
            assert_eq!(m, "0000000000000000", "{out}");
        }
    };
    let grep = "grep SigBlk /proc/self/status";
    e.run_sh("det", &[], &format!("{grep}; sleep 600"));
    poll(30, "the detached container's line", || {
        e.out(&["logs", "det"]).contains("SigBlk").then_some(())
    });
    unblocked(&e.out(&["logs", "det"]));
    unblocked(&e.out(&["exec", "det", "grep", "SigBlk", "/proc/self/status"]));
    unblocked(&e.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "grep",
        "SigBlk",
        "/proc/self/status",
    ]));
    // Started again by its monitor, which has blocked its signals by then.
    e.run_sh(
        "again",
        &["--restart", "on-failure:1"],
        &format!("{grep}; exit 1"),
    );
    let out = poll(60, "the restarted container's line", || {
        let l = e.out(&["logs", "again"]);
        (l.matches("SigBlk").count() == 2).then_some(l)
    });
    unblocked(&out);
    e.ok(&["rm", "-f", "det", "again"]);
}

#[test]
#[ignore = "needs root"]
fn restart_policies_as_docker() {
    need_root!();
    let e = Engine::new("restart");
    let done = |name: &str| {
        poll(60, &format!("{name} to stay exited"), || {
            let i = e.inspect(name);
            let s = &i["State"];
            (s["Status"] == "exited" && s["Restarting"] == false && s["MonitorPid"] == 0)
                .then_some(i)
        })
    };
    // A container whose monitor is gone shows as exited at once (inspect
    // asks whether the monitor lives); when the monitor died without
    // recording the end, its keeper records it, with why, a moment later:
    // the record then, or as it is after 30 s.
    let recorded = |name: &str| {
        let t0 = Instant::now();
        loop {
            let i = e.inspect(name);
            if !i["State"]["Error"].as_str().unwrap_or("").is_empty()
                || t0.elapsed() > Duration::from_secs(30)
            {
                return i;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // on-failure:3: exactly three restarts, then it stays exited.
    e.run_sh("of", &["--restart", "on-failure:3"], "echo run; exit 3");
    let mut i = done("of");
    if i["State"]["ExitCode"] != 3 {
        i = recorded("of");
    }
    let log = e.monitor_log("of");
    assert_eq!(i["RestartCount"], 3, "{i}\nmonitor.log: {log}");
    assert_eq!(i["State"]["ExitCode"], 3, "{i}\nmonitor.log: {log}");
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(
        e.out(&["logs", "of"])
            .lines()
            .filter(|l| *l == "run")
            .count(),
        4
    );
    // update --restart: the policy a created container then runs with;
    // bad policies and --rm containers refused in one line.
    #[rustfmt::skip]
    e.ok(&["create", "--name", "upd", "--network", "none", "busybox", "sh", "-c", "echo run; exit 2"]);
    e.ok(&["update", "--restart", "on-failure:2", "upd"]);
    assert_eq!(
        e.inspect("upd")["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2})
    );
    e.ok(&["start", "upd"]);
    let i = done("upd");
    assert_eq!(i["RestartCount"], 2, "{i}");
    for (args, says) in [
        (vec!["update", "--restart", "sometimes", "upd"], "sometimes"),
        (vec!["update", "--restart", "always", "rmd"], "(--rm)"),
    ] {
        if args[3] == "rmd" {
            e.run_sh("rmd", &["--rm"], "sleep 600");
        }
        let o = e.run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    e.ok(&["rm", "-f", "upd", "rmd"]);
    // A monitor killed while it waits to restart: its keeper records the
    // end, with why, instead of leaving a container that never restarts.
    e.run_sh("orphan", &["--restart", "always"], "exit 1");
    // The monitor is stopped (SIGSTOP) while its record says it waits to
    // restart, so the record cannot move on before the kill (a slow host
    // could otherwise see the wait end between the look and the kill).
    let mon = poll(
        60,
        "orphan's monitor stopped while it waits to restart",
        || {
            let i = e.inspect("orphan");
            let mon = i["State"]["MonitorPid"].as_i64().filter(|p| *p > 0)?;
            if i["State"]["Restarting"] != true {
                return None;
            }
            // SAFETY: kill with integers.
            unsafe { libc::kill(mon as i32, libc::SIGSTOP) };
            let i = e.inspect("orphan");
            if i["State"]["Restarting"] == true && i["State"]["MonitorPid"].as_i64() == Some(mon) {
                return Some(mon);
            }
            // SAFETY: kill with integers.
            unsafe { libc::kill(mon as i32, libc::SIGCONT) };
            None
        },
    );
    sigkill(&[mon]);
    done("orphan");
    let i = recorded("orphan");
    let err = i["State"]["Error"].as_str().unwrap_or("").to_string();
    assert!(
        err.contains("the monitor was killed by signal 9"),
        "{i}\nmonitor.log: {}",
        e.monitor_log("orphan")
    );
    assert_eq!(i["State"]["ExitCode"], 1, "{i}");
    e.ok(&["rm", "orphan"]);
    // always: back after every exit, "Restarting" in ps while it waits;
    // a stop ends it for good, and start brings the policy back.
    e.run_sh("al", &["--restart", "always"], "echo up; exit 1");
    poll(60, "a Restarting status in ps", || {
        e.out(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .lines()
            .any(|l| l.starts_with("al Restarting (1)"))
            .then_some(())
    });
    poll(60, "al to be restarted", || {
        (e.inspect("al")["RestartCount"].as_u64().unwrap() >= 1).then_some(())
    });
    e.ok(&["stop", "al"]);
    let n = done("al")["RestartCount"].clone();
    assert_eq!(
        e.inspect("al")["RestartCount"],
        n,
        "no restart after the stop"
    );
    // start (the user's) applies the policy again; kill is a user's stop.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "up",
        "--restart",
        "always",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    e.ok(&["kill", "up"]);
    done("up");
    e.ok(&["start", "up"]);
    assert_eq!(e.inspect("up")["State"]["Status"], "running");
    // start --all (boot): always even after a user's stop, unless-stopped
    // only if not stopped.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "us",
        "--restart",
        "unless-stopped",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    e.ok(&["stop", "-t", "0", "up", "us"]);
    let started = e.out(&["start", "--all"]);
    assert_eq!(started.lines().count(), 2, "al and up: {started}");
    assert_eq!(e.inspect("up")["State"]["Status"], "running");
    assert_eq!(e.inspect("us")["State"]["Status"], "exited");
    // rm of a container waiting to restart needs -f.
    e.ok(&["stop", "-t", "0", "up"]);
    // Bad input: one line, 125, nothing made.
    let before = e.ps_names();
    for (args, want) in [
        (
            vec!["run", "-d", "--restart", "sometimes", "busybox", "true"],
            "--restart \"sometimes\"",
        ),
        (
            vec![
                "run",
                "-d",
                "--rm",
                "--restart",
                "always",
                "busybox",
                "true",
            ],
            "conflict",
        ),
        (
            vec!["run", "--restart", "always", "busybox", "true"],
            "needs -d",
        ),
    ] {
        e.fails(&args, want);
    }
    assert_eq!(e.ps_names(), before);
    e.ok(&["rm", "-f", "of", "al", "up", "us"]);
}

#[test]
#[ignore = "needs root"]
fn health_checks_show_in_ps_and_inspect() {
    need_root!();
    let e = Engine::new("health");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--health-cmd",
        "test -e /ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    let status = || {
        e.out(&["ps", "--format", "{{.Names}} {{.Status}}"])
            .lines()
            .find(|l| l.starts_with("h "))
            .unwrap_or("")
            .to_string()
    };
    // Failing checks: unhealthy after two in a row, in ps and inspect.
    poll(30, "h to be unhealthy", || {
        status().ends_with("(unhealthy)").then_some(())
    });
    let h = e.inspect("h")["State"]["Health"].clone();
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"].as_array().unwrap().last().unwrap()["ExitCode"], 1);
    // The check passes once /ready exists.
    e.ok(&["exec", "h", "touch", "/ready"]);
    poll(30, "h to be healthy", || {
        status().ends_with("(healthy)").then_some(())
    });
    // healthcheck run: now, with its verdict and exit code.
    assert_eq!(e.out(&["healthcheck", "run", "h"]).trim(), "healthy");
    // A check that outlives its timeout fails and is killed.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "--health-interval",
        "1h",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    let o = e.run(&["healthcheck", "run", "slow"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "unhealthy");
    let h = e.inspect("slow")["State"]["Health"].clone();
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    let procs = e.out(&["exec", "slow", "ps", "-o", "args"]);
    assert!(!procs.contains("sleep 30"), "the check was killed: {procs}");
    // No check: no Health; bad flags: one line, 125.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(e.inspect("none")["State"]["Health"].is_null());
    let o = e.run(&["healthcheck", "run", "none"]);
    assert_eq!(o.status.code(), Some(125));
    let before = e.ps_names();
    let o = e.run(&[
        "run",
        "-d",
        "--health-cmd",
        "true",
        "--health-interval",
        "often",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--health-interval"));
    assert_eq!(e.ps_names(), before);
    e.ok(&["rm", "-f", "h", "slow", "none"]);
}

#[test]
#[ignore = "needs root"]
fn dns_flags_and_extra_hosts() {
    need_root!();
    let e = Engine::new("dns");
    let out = e.out(&[
        "run",
        "--rm",
        "--dns",
        "198.51.100.7",
        "--dns-search",
        "a.test",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "db:192.0.2.9",
        "--add-host",
        "gw:host-gateway",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts",
    ]);
    for want in [
        "nameserver 198.51.100.7",
        "search a.test",
        "options ndots:2",
        "192.0.2.9\tdb",
    ] {
        assert!(out.lines().any(|l| l == want), "{want:?} not in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l == format!("{}1\tgw", e.subnet_prefix)),
        "gw is the bridge's gateway:\n{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("nameserver")).count(),
        1,
        "{out}"
    );
    // Without a network too.
    let out = e.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--dns",
        "198.51.100.7",
        "--add-host",
        "db:192.0.2.9",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts",
    ]);
    assert!(
        out.contains("nameserver 198.51.100.7") && out.contains("192.0.2.9\tdb"),
        "{out}"
    );
    // Bad values: one line naming the flag, 125, nothing made.
    let before = e.ps_names();
    for (args, flag) in [
        (vec!["run", "--dns", "nine", "busybox", "true"], "--dns"),
        (
            vec!["run", "--add-host", "justaname", "busybox", "true"],
            "--add-host",
        ),
        (
            vec!["run", "--add-host", "x:1.2.3", "busybox", "true"],
            "--add-host",
        ),
        (
            vec![
                "run",
                "--network",
                "none",
                "--add-host",
                "gw:host-gateway",
                "busybox",
                "true",
            ],
            "--add-host gw:host-gateway: --network none has no gateway",
        ),
    ] {
        e.fails(&args, flag);
    }
    assert_eq!(e.ps_names(), before);
}

/// A stand-in upstream resolver on `addr`: every A query gets `ip`.
fn fake_upstream(addr: &str, ip: [u8; 4]) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind(addr).unwrap();
    let t = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = t.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The header (id kept; a response, recursion available, one
            // answer), the question as asked, then an A record pointing at
            // the question's name (0xc00c).
            let mut r = buf[..n].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6] = 0;
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            r.extend_from_slice(&ip);
            let _ = t.send_to(&r, from);
        }
    });
    s
}

#[test]
#[ignore = "needs root"]
fn containers_resolve_each_other_by_name_on_a_user_network() {
    need_root!();
    let mut e = Engine::new("dnsr");
    let _upstream = fake_upstream("127.0.0.99:53", [203, 0, 113, 5]);
    e.ok(&["network", "create", "--dns", "127.0.0.99", "appnet"]);
    e.networks.push("appnet".into());
    e.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "600",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "600",
    ]);
    let db_ip = e.inspect("db")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let resolv = e.out(&["exec", "web", "cat", "/etc/resolv.conf"]);
    let gw = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .unwrap()
        .to_string();
    assert!(gw.ends_with(".1"), "the gateway serves names: {resolv}");
    let look = |name: &str| e.run(&["exec", "web", "nslookup", name]);
    for name in ["db", "database", "DB"] {
        let o = look(name);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.lines().any(|l| l.trim() == format!("Address: {db_ip}")),
            "{name}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Other names go to the network's upstream.
    let out = String::from_utf8_lossy(&look("example.org").stdout).into_owned();
    assert!(out.contains("203.0.113.5"), "{out}");
    // Over TCP too (where clients retry after a truncated answer).
    assert_eq!(
        tcp_dns_a(&gw, "database"),
        vec![db_ip.parse::<std::net::Ipv4Addr>().unwrap()]
    );
    // Disconnected, db is no longer a name on the network.
    e.ok(&["network", "disconnect", "appnet", "db"]);
    let o = look("db");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!out.contains(&db_ip), "{out}");
    e.ok(&["rm", "-f", "web", "db"]);
    // The network's name server goes with the network.
    e.ok(&["network", "rm", "appnet"]);
    e.networks.clear();
    let servers = std::process::Command::new("pgrep")
        .args(["-f", "__dns appnet"])
        .output()
        .unwrap();
    assert!(servers.stdout.is_empty(), "a name server is left");
}

/// The A records for `name` from the name server at `server`:53 over TCP
/// (RFC 7766: a two-byte length before each message), the query and the
/// answer's records read by hand.
fn tcp_dns_a(server: &str, name: &str) -> Vec<std::net::Ipv4Addr> {
    use std::io::{Read, Write};
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut s = std::net::TcpStream::connect((server, 53)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut r).unwrap();
    assert_eq!(&r[..2], &[0x12, 0x34], "the answer to our query");
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Past the header and the question (as sent), each answer: a name
    // (a 2-byte pointer from this server), type, class, TTL, length, data.
    let mut at = q.len();
    let mut ips = Vec::new();
    for _ in 0..answers {
        at += 2;
        let typ = u16::from_be_bytes([r[at], r[at + 1]]);
        let rdlen = u16::from_be_bytes([r[at + 8], r[at + 9]]) as usize;
        at += 10;
        if typ == 1 && rdlen == 4 {
            ips.push(std::net::Ipv4Addr::new(
                r[at],
                r[at + 1],
                r[at + 2],
                r[at + 3],
            ));
        }
        at += rdlen;
    }
    ips
}

#[test]
#[ignore = "needs root"]
fn system_df_info_and_prune() {
    need_root!();
    let mut e = Engine::new("sys");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    e.ok(&[
        "run",
        "--name",
        "gone",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo x > /f",
    ]);
    let dangling = e.out(&["commit", "gone"]).trim().to_string();
    e.ok(&["network", "create", "sysnet"]);
    e.networks.push("sysnet".into());
    e.ok(&["volume", "create", "sysvol"]);
    let df = e.out(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert_eq!(
        df.lines().collect::<Vec<_>>(),
        ["Images 2 1", "Containers 2 1", "Local Volumes 1 0"],
        "{df}"
    );
    assert!(e.out(&["system", "df"]).starts_with("TYPE"));
    assert_eq!(
        e.out(&[
            "info",
            "--format",
            "{{.ContainersRunning}} {{.ContainersStopped}} {{.Images}}"
        ])
        .trim(),
        "1 1 2"
    );
    assert!(e.out(&["info"]).contains("CgroupVersion: "));
    // Listing filters (Docker's): an unused network and volume.
    assert!(e
        .out(&[
            "network",
            "ls",
            "-q",
            "-f",
            "dangling=true",
            "-f",
            "name=sysn"
        ])
        .lines()
        .eq(["sysnet"]));
    assert_eq!(
        e.out(&["volume", "ls", "-q", "-f", "dangling=true"]).trim(),
        "sysvol"
    );
    assert_eq!(e.out(&["volume", "ls", "-q", "-f", "name=nope"]), "");
    let o = e.run(&["volume", "ls", "-f", "size=1"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    // prune: the stopped container, the unused network, the image without
    // a name; not the running container, its image, or the volume.
    let out = e.out(&["system", "prune", "-f"]);
    assert!(out.contains("sysnet"), "{out}");
    assert!(out.contains(&dangling), "{out}");
    assert_eq!(e.ps_names(), ["keep"]);
    assert!(!e.out(&["network", "ls"]).contains("sysnet"));
    // network prune alone: a new unused network goes.
    e.ok(&["network", "create", "sysnet2"]);
    e.networks.push("sysnet2".into());
    let out = e.out(&["network", "prune", "-f"]);
    assert!(out.contains("sysnet2"), "{out}");
    assert_eq!(e.out(&["network", "ls", "-q", "-f", "name=sysnet"]), "");
    e.networks.clear();
    assert_eq!(e.out(&["images", "-q"]).lines().count(), 1);
    assert_eq!(e.out(&["volume", "ls", "-q"]).trim(), "sysvol");
    // --volumes -a: every unused volume too; the image in use stays.
    e.ok(&["system", "prune", "-f", "-a", "--volumes"]);
    assert_eq!(e.out(&["volume", "ls", "-q"]).trim(), "");
    assert_eq!(e.out(&["images", "-q"]).lines().count(), 1);
    e.ok(&["rm", "-f", "keep"]);
    // image prune -a: the image nothing uses now.
    let out = e.out(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(e.out(&["images", "-q"]).trim(), "");
}

#[test]
#[ignore = "needs root"]
fn events_past_and_following() {
    need_root!();
    let e = Engine::new("events");
    let secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let t0 = (secs() - 1).to_string();
    e.ok(&[
        "run",
        "--name",
        "ev1",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let until = (secs() + 1).to_string();
    let past = e.out(&[
        "events",
        "--since",
        &t0,
        "--until",
        &until,
        "--filter",
        "container=ev1",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(
        past.lines().collect::<Vec<_>>(),
        ["create", "start", "die"],
        "{past}"
    );
    let lines = e.out(&[
        "events",
        "--since",
        &t0,
        "--until",
        &until,
        "--filter",
        "event=die",
    ]);
    assert!(
        lines.contains(" container die ")
            && lines.contains("exitCode=0")
            && lines.contains("name=ev1"),
        "{lines}"
    );
    // Following: what comes next.
    let mut child = e
        .cmd(&[
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    e.ok(&[
        "run",
        "--name",
        "ev2",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let mut l = String::new();
    std::io::BufRead::read_line(&mut out, &mut l).unwrap();
    assert_eq!(l.trim(), "ev2");
    let _ = child.kill();
    let _ = child.wait();
    // Bad input: one line, 125.
    let o = e.run(&["events", "--filter", "colour=red", "--until", "1"]);
    assert_eq!(o.status.code(), Some(125));
    e.ok(&["rm", "ev1", "ev2"]);
}

/// A process on a new pseudo-terminal (its controlling terminal), as a
/// user at a terminal runs it: what it writes is read from the master,
/// keys are typed into it.
struct Pty {
    master: std::fs::File,
    child: Child,
    seen: String,
}

impl Pty {
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        let (mut m, mut s) = (0, 0);
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers to two ints and a valid winsize.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: openpty returned two fresh descriptors we own.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(m),
                std::os::fd::OwnedFd::from_raw_fd(s),
            )
        };
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        Pty {
            master,
            child,
            seen: String::new(),
        }
    }

    /// The user resizes the window (the kernel signals SIGWINCH).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our master with a valid winsize.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.master),
                libc::TIOCSWINSZ,
                &ws,
            )
        };
        assert_eq!(rc, 0);
    }

    fn send(&mut self, keys: &[u8]) {
        use std::io::Write;
        self.master.write_all(keys).unwrap();
    }

    /// Read until `want` shows (after what earlier calls consumed).
    fn expect(&mut self, want: &str) {
        use std::io::Read;
        use std::os::fd::AsFd;
        let t0 = Instant::now();
        while !self.seen.contains(want) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{want:?} never came; the terminal showed {:?}",
                self.seen
            );
            if hako_runtime::os::poll_in(self.master.as_fd(), 200).unwrap_or(false) {
                let mut buf = [0u8; 4096];
                match self.master.read(&mut buf) {
                    Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        let at = self.seen.find(want).unwrap() + want.len();
        self.seen.drain(..at);
    }

    fn wait(&mut self) -> i32 {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the process never ended"
            );
            // Keep the master drained, so the process never blocks on it.
            let _ = hako_runtime::os::poll_in(std::os::fd::AsFd::as_fd(&self.master), 50);
            let mut buf = [0u8; 4096];
            if hako_runtime::os::poll_in(std::os::fd::AsFd::as_fd(&self.master), 0).unwrap_or(false)
            {
                let _ = std::io::Read::read(&mut self.master, &mut buf);
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn attach_detach_keys_and_signals_as_docker() {
    need_root!();
    let e = Engine::new("attach");
    let status = |name: &str| {
        e.inspect(name)["State"]["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Output and the exit code of a running container, stdout and stderr
    // apart.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "out",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "read go < /dev/null; i=0; while [ $i -lt 40 ]; do echo o$i; echo e$i >&2; i=$((i+1)); \
         sleep 0.05; done; exit 7",
    ]);
    let o = e.run(&["attach", "--no-stdin", "out"]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert!(stdout(&o).contains("o39\n"), "{o:?}");
    assert!(!stdout(&o).contains("e39"), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("e39\n"),
        "{o:?}"
    );

    // run -a: only the streams named meet the terminal; the logs keep
    // both. Bad streams, and -a with -d, are one line and 125.
    let sh = "echo out; echo err >&2";
    #[rustfmt::skip]
    let o = e.run(&["run", "--name", "aout", "--network", "none", "-a", "stdout", "busybox", "sh", "-c", sh]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("out\n", ""),
        "{o:?}"
    );
    let logs = e.run(&["logs", "aout"]);
    assert_eq!(
        (stdout(&logs), stderr(&logs)),
        ("out\n".into(), "err\n".into())
    );
    #[rustfmt::skip]
    let o = e.run(&["run", "--rm", "--network", "none", "-a", "STDERR", "busybox", "sh", "-c", sh]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("", "err\n"),
        "{o:?}"
    );
    #[rustfmt::skip]
    let mut c = e.cmd(&["run", "--rm", "-i", "-a", "stdin", "-a", "stdout", "--network", "none", "busybox", "cat"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    }
    let o = wait_output(child, Duration::from_secs(30), &["run", "-a", "stdin"]);
    assert_eq!(stdout(&o), "hi\n", "{o:?}");
    for (args, says) in [
        (
            vec!["-a", "bogus"],
            "-a bogus: valid streams are STDIN, STDOUT and STDERR",
        ),
        (vec!["-d", "-a", "stdout"], "conflicting options: -a and -d"),
    ] {
        let mut a = vec!["run", "--network", "none"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let o = e.run(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}: {o:?}");
        assert!(
            stderr(&o).contains(says) && stderr(&o).trim().lines().count() == 1,
            "{o:?}"
        );
    }

    // stdin of a -i container; the detach keys leave it running, with
    // Docker's message and code.
    e.run_sh("in", &["-i"], "while read l; do echo got:$l; done");
    let mut c = e.cmd(&["attach", "in"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::{BufRead, BufReader, Write};
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"hello\n").unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "got:hello\n");
        // The sequence held back while it may still match goes on once
        // broken; the container reads it in the next line.
        i.write_all(b"\x10x\n\x10\x11").unwrap();
    }
    let o = wait_output(child, Duration::from_secs(30), &["attach", "in"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "read escape sequence\n");
    assert_eq!(status("in"), "running");
    poll(30, "the line with the broken sequence", || {
        e.out(&["logs", "in"]).contains("got:\u{10}x").then_some(())
    });

    // A terminal container: its size, a resize, and custom detach keys.
    e.ok(&[
        "run",
        "-d",
        "-it",
        "--name",
        "tty",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    let mut p = Pty::spawn(
        e.cmd(&["attach", "--detach-keys", "ctrl-a,d", "tty"]),
        30,
        100,
    );
    p.send(b"stty size\r");
    p.expect("30 100");
    p.resize(40, 120);
    p.send(b"stty size\r");
    p.expect("40 120");
    p.send(b"echo \x01x-\x01d");
    p.expect("read escape sequence");
    assert_eq!(p.wait(), 1);
    assert_eq!(status("tty"), "running");
    // A tty container cannot be attached from a pipe (Docker's rule).
    e.fails(&["attach", "tty"], "the input device is not a TTY");

    // `run -it` then ctrl-p ctrl-q: back to the shell with 0, the
    // container runs on; attach later and end it.
    let mut p = Pty::spawn(
        e.cmd(&[
            "run",
            "-it",
            "--name",
            "fg",
            "--network",
            "none",
            "busybox",
            "sh",
        ]),
        24,
        80,
    );
    p.send(b"echo $((6*7))\r");
    p.expect("42");
    p.send(b"\x10\x11");
    assert_eq!(p.wait(), 0);
    assert_eq!(status("fg"), "running");
    let mut p = Pty::spawn(e.cmd(&["attach", "fg"]), 24, 80);
    p.send(b"echo back-$((1+1)); exit 5\r");
    p.expect("back-2");
    assert_eq!(p.wait(), 5);
    poll(30, "fg to be recorded as exited", || {
        let s = e.inspect("fg")["State"].clone();
        (s["Status"] == "exited").then_some(s)
    });
    assert_eq!(e.inspect("fg")["State"]["ExitCode"], 5);

    // `exec -it` detaches too; the process runs on.
    let mut p = Pty::spawn(
        e.cmd(&[
            "exec",
            "-it",
            "--detach-keys",
            "ctrl-x",
            "tty",
            "sh",
            "-c",
            "echo started; sleep 600",
        ]),
        24,
        80,
    );
    p.expect("started");
    p.send(b"\x18");
    assert_eq!(p.wait(), 0);
    assert!(e.out(&["top", "tty"]).contains("sleep 600"));

    // Signals: passed on to the container (it traps TERM), or with
    // --sig-proxy=false, ending the client alone.
    let trap = "trap 'echo caught; exit 9' TERM; echo ready; while :; do sleep 0.1; done";
    for (name, proxy) in [("sig", true), ("nosig", false)] {
        e.run_sh(name, &[], trap);
        poll(30, "the trap to be set", || {
            e.out(&["logs", name]).contains("ready").then_some(())
        });
        let flag = format!("--sig-proxy={proxy}");
        let mut child = e
            .cmd(&["attach", &flag, name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Attached once the monitor has the client: poll its socket's peers.
        poll(30, "the client to connect", || {
            attach_clients(&e, name).then_some(())
        });
        // SAFETY: kill with integers.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().unwrap();
        if proxy {
            assert_eq!(st.code(), Some(9), "{name}");
            assert!(e.out(&["logs", name]).contains("caught"));
        } else {
            assert_eq!(st.code(), Some(143), "{name}");
            assert_eq!(status(name), "running");
        }
    }
    // run --sig-proxy=false: a TERM ends `run`, not the container.
    let mut child = e
        .cmd(&[
            "run",
            "--sig-proxy=false",
            "--name",
            "fgsig",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            trap,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut child), "ready\n");
    // SAFETY: kill with integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(status("fgsig"), "running");
    e.ok(&["stop", "-t", "1", "fgsig"]);
    assert_eq!(e.inspect("fgsig")["State"]["ExitCode"], 9);

    // Bad input: one clear line, nothing made.
    e.fails(
        &[
            "run",
            "-it",
            "--detach-keys",
            "ctrl-1",
            "--name",
            "bad",
            "busybox",
            "true",
        ],
        "--detach-keys",
    );
    assert!(!e.ps_names().contains(&"bad".to_string()));
    e.fails(&["attach", "out"], "is not running");
    e.fails(&["attach", "nosuch"], "nosuch");
    e.ok(&["rm", "-f", "in", "tty", "nosig", "fgsig"]);
}

/// The first line a child writes to its piped stdout (the rest unread).
fn first_line(c: &mut Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// Does the monitor of `name` have an attach client? Its sockets are
/// the attach listener and one per client.
fn attach_clients(e: &Engine, name: &str) -> bool {
    let mon = e.inspect(name)["State"]["MonitorPid"].as_i64().unwrap_or(0);
    let Ok(rd) = std::fs::read_dir(format!("/proc/{mon}/fd")) else {
        return false;
    };
    let sockets = rd
        .flatten()
        .filter(|f| {
            std::fs::read_link(f.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count();
    sockets >= 2
}
