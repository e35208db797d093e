//! End-to-end tests of the `hako` engine (root only; skipped otherwise).
//!
//! Each test has its own data and run roots (`--data-root/--run-root` via
//! HAKO_DATA_DIR/HAKO_RUN_DIR), its own nft table, and cleans up through a
//! Drop guard: containers, networks, mounts, directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
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
        // Leftovers of earlier runs (their process is gone) go first.
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("hako-engine-bb-") {
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

/// One test's engine: its own roots; everything removed on drop.
struct Engine {
    dir: tempfile::TempDir,
    nft: String,
    networks: Vec<String>,
}

impl Engine {
    fn new(tag: &str) -> Engine {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hako-e-{tag}-"))
            .tempdir()
            .unwrap();
        let e = Engine {
            dir,
            nft: format!("hakot{}", std::process::id() % 100_000),
            networks: Vec::new(),
        };
        let o = e.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("sha256:"));
        e
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("HAKO_DATA_DIR", self.data())
            .env("HAKO_RUN_DIR", self.dir.path().join("run"))
            .env("HAKO_NFT_TABLE", &self.nft)
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

    fn out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.out(&["inspect", name])).unwrap();
        v[0].clone()
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
}

#[test]
fn flags_env_volumes_workdir_readonly_limits() {
    need_root!();
    let e = Engine::new("flags");
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
    std::thread::sleep(Duration::from_millis(800));
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
    let st = e.out(&["stats", "--no-stream", "--format", "json", "ticker"]);
    let st: Value = serde_json::from_str(st.trim()).unwrap();
    assert_eq!(st["Stats"]["memory"]["usage"]["limit"], 32 << 20, "{st}");
    let ps = e.out(&["ps"]);
    assert!(ps.contains("ticker") && ps.contains("Up"), "{ps}");

    let t0 = Instant::now();
    e.ok(&["stop", "-t", "5", "ticker"]);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the trap made it exit on TERM"
    );
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
fn names_are_unique_under_concurrency_and_crashes_are_cleanable() {
    need_root!();
    let e = Engine::new("conc");
    let kids: Vec<Child> = (0..4)
        .map(|_| {
            e.cmd(&[
                "create",
                "--name",
                "same",
                "--network",
                "none",
                "busybox",
                "true",
            ])
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
}

#[test]
fn init_reaps_orphaned_zombies() {
    need_root!();
    let e = Engine::new("init");
    let script = "for i in $(seq 100); do (sleep 0.1 &); done; exec sleep 30";
    let count = "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l";
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
    }
    std::thread::sleep(Duration::from_millis(1500));
    let with = e.out(&["exec", "withinit", "sh", "-c", count]);
    let without = e.out(&["exec", "noinit", "sh", "-c", count]);
    assert_eq!(with.trim(), "0");
    assert!(without.trim().parse::<u32>().unwrap() >= 100, "{without}");
    // The init forwards SIGTERM to the command: stop is quick.
    let t0 = Instant::now();
    e.ok(&["stop", "-t", "10", "withinit"]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(e.inspect("withinit")["State"]["ExitCode"], 143);
}

#[test]
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
    assert_eq!(info[0]["containers"].as_array().unwrap().len(), 1);
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
    e.ok(&["rm", "-f", "srv"]);
    e.ok(&["network", "rm", &net]);
    e.networks.clear();
}

#[test]
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

/// The engine run by an unprivileged user: XDG dirs, a copied rootfs, and a
/// user namespace whose uid 0 is the user.
#[test]
fn rootless_container_uid0_is_the_user() {
    need_root!();
    let dir = tempfile::Builder::new()
        .prefix("hako-rl-")
        .tempdir()
        .unwrap();
    let home = dir.path();
    let st = Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(home.join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(home)
        .status()
        .unwrap();
    assert!(st.success());
    let hako = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=1000", "--regid=1000", "--clear-groups", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("XDG_DATA_HOME={}/data", home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}/run", home.display()))
            .arg(bin())
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_output(c.spawn().unwrap(), Duration::from_secs(60), args)
    };
    let root = home.join("rootfs");
    let o = hako(&["import", root.to_str().unwrap(), "busybox"]);
    assert!(o.status.success(), "{o:?}");
    let o = hako(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u",
    ]);
    assert!(o.status.success(), "{o:?}");
    let s = stdout(&o);
    let map: Vec<&str> = s.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "1000", "1"], "{s}");
}

/// `run -it` and `exec -it` on a real terminal (util-linux `script` gives
/// the CLI a pty): the shell sees a tty, and the exit code comes back.
#[test]
fn interactive_tty_run_and_exec() {
    need_root!();
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: needs util-linux script");
        return;
    }
    let e = Engine::new("tty");
    let through_pty = |cli: &str, input: &'static str| -> Output {
        let mut c = Command::new("script");
        c.args(["-qec", cli, "/dev/null"])
            .env("HAKO_DATA_DIR", e.data())
            .env("HAKO_RUN_DIR", e.dir.path().join("run"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(1000));
            let _ = stdin.write_all(input.as_bytes());
            std::thread::sleep(Duration::from_millis(3000));
        });
        wait_output(child, Duration::from_secs(30), &[cli])
    };
    let o = through_pty(
        &format!("{} run -it --rm --network none busybox sh", bin()),
        "echo tty=$(tty)\nexit 4\n",
    );
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(stdout(&o).contains("tty=/dev/pts/0"), "{o:?}");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let o = through_pty(
        &format!("{} exec -it t sh", bin()),
        "echo exec-tty=$(tty)\nexit 6\n",
    );
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    assert!(stdout(&o).contains("exec-tty=/dev/pts/"), "{o:?}");
}

#[test]
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
