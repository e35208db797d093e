//! Shared helpers for root integration tests: a busybox bundle built by
//! scripts/make-bundle.sh, per-test state roots, and a runner with timeouts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Skip (return early) when not root: these tests start real containers.
#[macro_export]
macro_rules! need_root {
    () => {
        if !common::is_root() {
            panic!("needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
        }
    };
}

/// This run tests the systemd cgroup driver: `HAKO_TEST_CGROUP_DRIVER=systemd`
/// (the VM stage runs the cgroup tests once per driver).
pub fn systemd_driver() -> bool {
    std::env::var("HAKO_TEST_CGROUP_DRIVER").is_ok_and(|v| v == "systemd")
}

/// Where container `id`'s cgroup is in `hierarchy` ("" on cgroup2) when
/// its config.json has no cgroupsPath: the systemd driver's
/// `system.slice/hako-<id>.scope`, else `/<id>` (as runc).
pub fn default_cgroup(hierarchy: &str, id: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup").join(hierarchy);
    if systemd_driver() {
        root.join(format!("system.slice/hako-{id}.scope"))
    } else {
        root.join(id)
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hako-runc")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared template bundle (built once per test binary).
pub fn template() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        // Templates of earlier test processes (gone now) go first: each
        // test binary makes its own, and nothing else removes them.
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("hako-test-bundle-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("hako-test-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/make-bundle.sh"))
            .arg(&dir)
            .status()
            .expect("run make-bundle.sh");
        assert!(st.success(), "make-bundle.sh failed");
        dir
    })
}

/// A bundle of one test: its own dir and config.json; the rootfs is the
/// shared one unless the test asks for a private copy.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub root: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new() -> Bundle {
        let t = template();
        let dir = tempfile::Builder::new()
            .prefix("hako-b-")
            .tempdir()
            .unwrap();
        let root = tempfile::Builder::new()
            .prefix("hako-root-")
            .tempdir()
            .unwrap();
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(t.join("config.json")).unwrap()).unwrap();
        config["root"]["path"] = t.join("rootfs").to_string_lossy().into();
        Bundle { dir, root, config }
    }

    /// Give this bundle its own copy of the rootfs (for tests that write to it).
    pub fn private_rootfs(&mut self) -> PathBuf {
        let dst = self.dir.path().join("rootfs");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template().join("rootfs"))
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success());
        self.config["root"]["path"] = "rootfs".into();
        dst
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = args.iter().map(|s| Value::from(*s)).collect();
        self
    }

    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_root(&self) -> &Path {
        self.root.path()
    }

    /// `hako-runc --root R <args…>`, with a timeout (and
    /// `--systemd-cgroup` when the run is for the systemd driver).
    pub fn runc(&self, args: &[&str]) -> Output {
        run_with_timeout(self.runc_cmd(args), Duration::from_secs(30))
    }

    /// The command [`Bundle::runc`] runs, for a caller that changes it
    /// before it runs (config.json written).
    pub fn runc_cmd(&self, args: &[&str]) -> Command {
        self.write();
        let mut cmd = Command::new(bin());
        cmd.arg("--root").arg(self.root.path());
        if systemd_driver() {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// `run` this bundle in the foreground.
    pub fn run(&self, id: &str) -> Output {
        let b = self.dir.path().to_string_lossy().into_owned();
        self.runc(&["run", "-b", &b, id])
    }

    pub fn create(&self, id: &str) -> Output {
        let b = self.dir.path().to_string_lossy().into_owned();
        self.runc(&["create", "-b", &b, id])
    }

    pub fn state(&self, id: &str) -> Value {
        let o = self.runc(&["state", id]);
        assert!(o.status.success(), "state: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Whatever a failed assertion left: kill and delete every container.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = Command::new(bin())
                    .arg("--root")
                    .arg(self.root.path())
                    .args(["delete", "--force", &id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Run with a timeout. Output goes through files, not pipes: a detached
/// container inherits them, and a pipe would stay open until it exits.
pub fn run_with_timeout(mut cmd: Command, t: Duration) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let mut child = cmd.spawn().expect("spawn hako-runc");
    let start = Instant::now();
    let read = |mut f: &std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: read(&out),
                stderr: read(&err),
            };
        }
        if start.elapsed() > t {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hako-runc timed out after {t:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&read(&out)),
                String::from_utf8_lossy(&read(&err))
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Containers a runtime root still has state for: its entries but the
/// runtime's dot-named caches (.seccomp), which are never container ids.
pub fn state_left(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

pub fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// No mount on the host mentions this path.
pub fn assert_no_mounts_under(p: &Path) {
    let s = p.to_string_lossy().into_owned();
    let m = host_mounts();
    assert!(
        !m.lines().any(|l| l.contains(&s)),
        "mounts left under {s}:\n{}",
        m.lines()
            .filter(|l| l.contains(&s))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

pub fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// tests/fixtures/NAME.c built static, once per test binary.
pub fn fixture_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    // In the target directory's scratch space, not /tmp: kept between runs
    // (rebuilt when the source is newer), and the VM stage's payload
    // carries them built (the VM has no compiler).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let src = repo_root().join(format!("crates/cli/tests/fixtures/{name}.c"));
    let out = dir.join(name);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&out).is_none() || mtime(&out) < mtime(&src) {
        // Another test binary may build it at the same time: build aside,
        // then rename into place.
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run gcc");
        assert!(st.success(), "gcc -static {name}.c failed");
        std::fs::rename(&tmp, &out).unwrap();
    }
    built.push((name.to_string(), out.clone()));
    out
}

/// tests/fixtures/exe_attacker.c built static: a hostile container
/// process that tries to overwrite the runtime's binary through
/// /proc/PID/exe (CVE-2019-5736).
pub fn exe_attacker() -> PathBuf {
    fixture_binary("exe_attacker")
}

/// What an exe attacker logged, once it reached a verdict (or "" if the
/// deadline passed first).
pub fn attacker_verdict(log: &Path, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if s.contains("overwrote") || s.contains("refused") || s.contains("gave up") {
            return s;
        }
        if start.elapsed() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
pub mod criu;
pub mod host;
pub mod registry;

/// The lines a long-running command (`hako-runc events`) prints, as they
/// come: its child, a receiver of its lines, and the reader thread.
pub fn line_stream(
    mut cmd: Command,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx, reader)
}
