//! hako-runc driven by the clients it exists for (needs root): containerd 1.6
//! through `ctr run --runc-binary`, and podman 4.3 through `--runtime`.
//!
//! scripts/clients-setup.sh installs both from Debian and builds a busybox
//! image offline. Each test has its own daemon or store under a temp dir and
//! a guard that, on drop (so also after a failed assertion), removes its
//! containers, kills what is left of its processes by PID, and removes the
//! mounts and cgroups it made. A passing test ends with `finish()`, which
//! also asserts that the clients' own cleanup left nothing for the guard.

use std::fs;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The image clients-setup.sh builds: make-bundle.sh's busybox rootfs.
const IMAGE: &str = "localhost/hako-busybox:latest";
/// containerd namespace of every test; containers are named per test.
const NS: &str = "hako-test";
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            panic!("needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
        }
    };
}

/// The runtime under test: hako-runc, or HAKO_CLIENTS_RUNTIME (e.g. runc,
/// to tell a harness or client problem from a hako-runc one).
fn runtime() -> &'static str {
    static R: OnceLock<String> = OnceLock::new();
    R.get_or_init(|| {
        std::env::var("HAKO_CLIENTS_RUNTIME")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hako-runc").to_string())
    })
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The busybox image as a docker-archive, built once per test binary.
fn image_tar() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = std::env::var_os("HAKO_CLIENTS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/hako-clients"));
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/clients-setup.sh"))
            .arg(&out)
            .stdin(Stdio::null())
            .status()
            .expect("run scripts/clients-setup.sh");
        assert!(st.success(), "scripts/clients-setup.sh failed");
        out.join("busybox.tar")
    })
}

// ---------------------------------------------------------------------------
// Running commands

/// A finished command: what it was, its exit code (None: killed or timed
/// out) and its output.
struct Run {
    cmdline: String,
    code: Option<i32>,
    out: String,
    err: String,
}

impl Run {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Assert success and return stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert!(self.success(), "{self}");
        &self.out
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\nstdout: {}\nstderr: {}",
            self.cmdline, self.code, self.out, self.err
        )
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A command running in the background. Output goes to files, not pipes: a
/// container or shim inherits them, and a pipe would stay open until it
/// exits.
struct Bg {
    cmdline: String,
    child: Child,
    out: fs::File,
    err: fs::File,
}

impl Bg {
    fn spawn(mut cmd: Command) -> Result<Bg, String> {
        let cmdline = cmdline(&cmd);
        let out = tempfile::tempfile().map_err(|e| e.to_string())?;
        let err = tempfile::tempfile().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(err.try_clone().map_err(|e| e.to_string())?);
        let child = cmd.spawn().map_err(|e| format!("{cmdline}: {e}"))?;
        Ok(Bg {
            cmdline,
            child,
            out,
            err,
        })
    }

    /// Whether it has exited (it is not reaped: `wait` still reports it).
    fn exited(&mut self) -> bool {
        // SAFETY: waitid on our own unreaped child with WNOWAIT only reads
        // its state; siginfo is a plain C struct, zeroed is valid.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    /// Wait up to `t`; on timeout kill it and report code None. Never
    /// panics: cleanup code runs this from Drop.
    fn wait(mut self, t: Duration) -> Run {
        let start = Instant::now();
        let mut code = None;
        let mut timed_out = false;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    code = st.code();
                    break;
                }
                Ok(None) if start.elapsed() < t => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    timed_out = true;
                    break;
                }
            }
        }
        let mut err = read_all(&mut self.err);
        if timed_out {
            err.push_str(&format!("\n(timed out after {t:?})"));
        }
        Run {
            cmdline: self.cmdline,
            code,
            out: read_all(&mut self.out),
            err,
        }
    }
}

fn read_all(f: &mut fs::File) -> String {
    let mut v = Vec::new();
    let _ = f.rewind();
    let _ = f.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

fn run(cmd: Command, t: Duration) -> Run {
    let line = cmdline(&cmd);
    match Bg::spawn(cmd) {
        Ok(bg) => bg.wait(t),
        Err(e) => Run {
            cmdline: line,
            code: None,
            out: String::new(),
            err: e,
        },
    }
}

/// Run `cmd` with a pseudo-terminal as its stdin/stdout (util-linux
/// `script`): `ctr -t` wants a console of its own. Exit code is `cmd`'s.
fn run_in_pty(cmd: &Command, t: Duration) -> Run {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect();
    let mut sc = Command::new("script");
    sc.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
    let mut r = run(sc, t);
    r.out = r.out.replace('\r', "");
    r
}

/// Poll `f` until it returns Some, for at most `t`.
fn poll<T>(t: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > t {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The counter file of a container's rootfs, read from the host through
/// /proc/PID/root (works while the container is frozen). It may be empty:
/// the shell truncates it before each write.
fn read_counter(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/root/tmp/n")).ok()
}

/// A counter the container's init advances every 50ms, for pause tests.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";

#[track_caller]
fn wait_counter(pid: i32) {
    let started = poll(Duration::from_secs(10), || {
        read_counter(pid).filter(|c| !c.trim().is_empty())
    });
    assert!(started.is_some(), "the container never wrote its counter");
}

/// Check that `pid`'s counter stands still, then (after `resume`) moves.
fn assert_frozen_then_moving(pid: i32, resume: impl FnOnce()) {
    let a = read_counter(pid).expect("counter file");
    std::thread::sleep(Duration::from_millis(400));
    let b = read_counter(pid).expect("counter file");
    assert_eq!(a, b, "the counter moved while paused");
    resume();
    let moved = poll(Duration::from_secs(10), || {
        read_counter(pid).filter(|c| *c != b).map(|_| ())
    });
    assert!(moved.is_some(), "the counter did not move after resume");
}

// ---------------------------------------------------------------------------
// Processes, mounts, cgroups: what the guards look for and remove

struct Proc {
    pid: i32,
    ppid: i32,
    cmdline: String,
}

fn procs() -> Vec<Proc> {
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may hold spaces and parentheses: fields start after the last ')'.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        v.push(Proc { pid, ppid, cmdline });
    }
    v
}

/// Processes whose command line mentions `needle` (a test's temp dir: the
/// shims and conmons of that test carry it in their arguments).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    procs()
        .into_iter()
        .filter(|p| p.pid != me && p.cmdline.contains(needle))
        .map(|p| p.pid)
        .collect()
}

/// SIGKILL `roots` and all their descendants (containers reparent to their
/// shim or conmon, which are subreapers).
fn kill_trees(roots: &[i32]) {
    let table = procs();
    let mut set: Vec<i32> = roots.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for p in &table {
            if set.contains(&p.ppid) && !set.contains(&p.pid) {
                set.push(p.pid);
                grew = true;
            }
        }
    }
    for pid in set {
        // SAFETY: kill with a pid we just read from /proc; at worst it is
        // gone (ESRCH), which we ignore.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = octal {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `dir`, in mount order.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect()
}

/// Detach every mount under `dir`, innermost (latest) first.
fn umount_under(dir: &Path) {
    for _ in 0..4 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            return;
        }
        for m in ms.iter().rev() {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: c is a valid NUL-terminated path; MNT_DETACH only
            // detaches a mount this test's clients made under its temp dir.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The hierarchies mounted under /sys/fs/cgroup (v1 controllers and the
/// unified v2 tree), or /sys/fs/cgroup itself on a pure v2 host.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `rel`'s directory and all below it, parents first, in every hierarchy.
fn cgroup_tree(rel: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        out.push(d.to_path_buf());
        if let Ok(rd) = fs::read_dir(d) {
            let mut subs: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            subs.sort();
            for s in subs {
                walk(&s, out);
            }
        }
    }
    let mut out = Vec::new();
    for h in hierarchies() {
        let d = h.join(rel.trim_start_matches('/'));
        if d.is_dir() {
            walk(&d, &mut out);
        }
    }
    out
}

/// Thaw, kill the members of, and remove `rel` and everything below it.
fn remove_cgroup_tree(rel: &str) {
    let tree = cgroup_tree(rel);
    for d in &tree {
        // Parents first: a v1 child cannot thaw under a frozen parent.
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
    for d in &tree {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            let pids: Vec<i32> = s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            kill_trees(&pids);
        }
    }
    for d in tree.iter().rev() {
        let _ = poll(Duration::from_secs(3), || {
            fs::remove_dir(d)
                .ok()
                .or_else(|| (!d.exists()).then_some(()))
        });
    }
}

/// Processes in `rel` or below, in any hierarchy.
fn cgroup_members(rel: &str) -> Vec<i32> {
    let mut v: Vec<i32> = cgroup_tree(rel)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A short tag unique to this test process and name, for container ids,
/// cgroups and temp dirs.
fn tag(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn set_pdeathsig(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe. If the test process dies without running
    // its guards, the daemon gets SIGTERM instead of living on.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// containerd

/// A private containerd (root, state, sockets under a temp dir) with the
/// busybox image imported. Dropping it deletes its tasks and containers,
/// stops the daemon by PID, kills leftover shims and container processes,
/// and removes leftover mounts and cgroups.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    /// Prefix of this test's container ids (and so of their cgroups,
    /// `/hako-test/<id>`).
    prefix: String,
    cleaned: bool,
}

impl Containerd {
    fn start(name: &str) -> Containerd {
        let tar = image_tar();
        // In /tmp, not $TMPDIR: socket paths must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("hako-ctrd-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path().to_string_lossy().into_owned();
        // Version 2 is containerd 1.6's schema. No CRI (it wants CNI and a
        // network), no snapshotters this host cannot use, no metrics socket.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
  level = "debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
        let log = fs::File::create(dir.path().join("containerd.log")).expect("containerd.log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        set_pdeathsig(&mut cmd);
        let daemon = cmd
            .spawn()
            .expect("start containerd (scripts/clients-setup.sh installs it)");
        // The guard exists from here on: a failed wait or import cleans up.
        let c = Containerd {
            dir,
            daemon: Some(daemon),
            prefix: tag(name),
            cleaned: false,
        };
        let up = poll(Duration::from_secs(20), || {
            c.ctr(&["version"]).success().then_some(())
        });
        assert!(up.is_some(), "containerd did not come up\n{}", c.log_tail());
        c.ctr(&["image", "import", &tar.to_string_lossy()]).ok();
        c
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.sock()).args(["-n", NS]);
        // ctr leaves the fifos of a detached process in /run/containerd/fifo
        // (also when a test fails): keep them in the temp dir instead.
        let fifo = self.dir.path().join("fifo");
        match args {
            ["run", rest @ ..] => cmd.arg("run").arg("--fifo-dir").arg(fifo).args(rest),
            ["task", "exec", rest @ ..] => cmd
                .args(["task", "exec", "--fifo-dir"])
                .arg(fifo)
                .args(rest),
            _ => cmd.args(args),
        };
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Run {
        run(self.ctr_cmd(args), CMD_TIMEOUT)
    }

    /// `ctr run` with hako-runc as the shim's runtime binary.
    fn run_cmd(&self, opts: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self.ctr_cmd(&["run", "--runc-binary", runtime()]);
        cmd.arg("--runc-root").arg(self.runc_root());
        cmd.args(opts).arg(IMAGE).arg(id).args(args);
        cmd
    }

    fn run(&self, opts: &[&str], id: &str, args: &[&str]) -> Run {
        run(self.run_cmd(opts, id, args), CMD_TIMEOUT)
    }

    /// (pid, status) of a task, from `ctr task ls`.
    fn task(&self, id: &str) -> Option<(i32, String)> {
        let r = self.ctr(&["task", "ls"]);
        r.out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    #[track_caller]
    fn wait_status(&self, id: &str, want: &str) -> i32 {
        let got = poll(Duration::from_secs(20), || {
            self.task(id).filter(|(_, s)| s == want).map(|(p, _)| p)
        });
        match got {
            Some(pid) => pid,
            None => panic!(
                "task {id} never became {want}: now {:?}\n{}",
                self.task(id),
                self.log_tail()
            ),
        }
    }

    /// containerd's warnings and errors (the shim's runtime errors land
    /// here), for failure messages.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warn"))
            .collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "containerd.log (warnings, errors):\n{}",
            lines[start..].join("\n")
        )
    }

    fn list(&self, what: &str) -> Vec<String> {
        self.ctr(&[what, "ls", "-q"])
            .out
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Remove everything this test made; return what containerd itself
    /// left behind (empty when its own cleanup worked). Never panics.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut leaks = Vec::new();
        let dir = self.dir.path().to_path_buf();
        let daemon_alive = self
            .daemon
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        if daemon_alive {
            for id in self.list("task") {
                leaks.push(format!("task {id} still there at the end"));
                // A paused task: containerd's resume, else thaw it directly
                // (a frozen process cannot even die of SIGKILL).
                if !self.ctr(&["task", "resume", &id]).success() {
                    thaw_cgroup_tree(&format!("{NS}/{id}"));
                }
                let _ = self.ctr(&["task", "kill", "-a", "-s", "SIGKILL", &id]);
                let _ = poll(Duration::from_secs(5), || {
                    (self.task(&id).map(|t| t.1) != Some("RUNNING".into())).then_some(())
                });
                let _ = self.ctr(&["task", "delete", "-f", &id]);
            }
            for id in self.list("container") {
                let _ = self.ctr(&["container", "delete", &id]);
            }
        }
        // A shim exits once its last task is deleted; give it a moment.
        // The daemon mentions the dir too (--config): it is stopped below.
        let needle = dir.to_string_lossy().into_owned();
        let daemon_pid = self.daemon.as_ref().map(|c| c.id() as i32);
        let shims = || -> Vec<i32> {
            pids_mentioning(&needle)
                .into_iter()
                .filter(|p| Some(*p) != daemon_pid)
                .collect()
        };
        if poll(Duration::from_secs(5), || shims().is_empty().then_some(())).is_none() {
            let left = shims();
            leaks.push(format!("processes left (shims): {left:?}"));
            for id in list_dir(&cgroup_ns_dirs()) {
                if id.starts_with(&self.prefix) {
                    thaw_cgroup_tree(&format!("{NS}/{id}"));
                }
            }
            kill_trees(&left);
        }
        if let Some(mut d) = self.daemon.take() {
            let pid = d.id() as i32;
            // SAFETY: pid is our own child, not yet reaped, so it cannot
            // have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let exited = poll(Duration::from_secs(10), || d.try_wait().ok().flatten());
            if exited.is_none() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        kill_trees(&pids_mentioning(&needle));
        let ms = mounts_under(&dir);
        if !ms.is_empty() {
            leaks.push(format!("mounts left: {ms:?}"));
            umount_under(&dir);
        }
        for id in list_dir(&cgroup_ns_dirs()) {
            if id.starts_with(&self.prefix) {
                let rel = format!("{NS}/{id}");
                leaks.push(format!(
                    "cgroup left: {rel} (members {:?})",
                    cgroup_members(&rel)
                ));
                remove_cgroup_tree(&rel);
            }
        }
        // The namespace's parent cgroup is shared by concurrent tests: it
        // goes when the last one is done (rmdir fails while it has children).
        for d in cgroup_ns_dirs() {
            let _ = fs::remove_dir(d);
        }
        let state = self.runc_root().join(NS);
        for id in list_dir(std::slice::from_ref(&state)) {
            leaks.push(format!("runtime state left: {}", state.join(&id).display()));
            let _ = run(
                {
                    let mut c = Command::new(runtime());
                    c.arg("--root").arg(&state).args(["delete", "--force", &id]);
                    c
                },
                Duration::from_secs(20),
            );
        }
        leaks
    }

    /// Clean up and assert that containerd's own cleanup left nothing.
    #[track_caller]
    fn finish(mut self) {
        let leaks = self.cleanup();
        assert!(leaks.is_empty(), "left behind: {leaks:#?}");
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The temp dir goes with the guard: keep containerd's log (the
            // shim's and the runtime's errors are in it) for the report.
            let keep = std::env::temp_dir().join(format!("hako-clients-{}.log", self.prefix));
            if fs::copy(self.dir.path().join("containerd.log"), &keep).is_ok() {
                eprintln!("containerd log kept in {}", keep.display());
            }
        }
        let leaks = self.cleanup();
        if !leaks.is_empty() {
            eprintln!("cleanup removed: {leaks:#?}");
        }
    }
}

/// `/sys/fs/cgroup/<hierarchy>/hako-test` in every hierarchy that has it.
fn cgroup_ns_dirs() -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(NS))
        .filter(|d| d.is_dir())
        .collect()
}

/// The names of the subdirectories of `dirs`, deduplicated.
fn list_dir(dirs: &[PathBuf]) -> Vec<String> {
    let mut v: Vec<String> = dirs
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Thaw `rel` and below (a frozen process cannot die, even of SIGKILL).
fn thaw_cgroup_tree(rel: &str) {
    for d in cgroup_tree(rel) {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
}

/// Parse `ctr task metrics` (table): METRIC VALUE lines.
fn metric(table: &str, name: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(name)).then(|| f.collect::<Vec<_>>().join(" "))
    })
}

// `ctr run` and `ctr task exec` return as soon as the exit event arrives
// and then cancel their output copy (containerd 1.6: process.Delete ->
// io.Cancel), so output written right before the exit can be lost under
// load, with runc as well. The containers' scripts pause before exiting.

#[test]
#[ignore = "needs root"]
fn containerd_run_propagates_output_and_exit_codes() {
    need_root!();
    let d = Containerd::start("cexit");
    let r = d.run(
        &["--rm"],
        &d.id("a"),
        &["sh", "-c", "echo hello from $(hostname); sleep 0.3; exit 3"],
    );
    assert_eq!(r.code, Some(3), "{r}\n{}", d.log_tail());
    assert!(r.out.contains("hello from"), "{r}");

    let r = d.run(&["--rm"], &d.id("b"), &["sh", "-c", "test -f /bin/busybox"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.log_tail());

    // -t: create gets --console-socket; the exit code still comes through.
    let r = run_in_pty(
        &d.run_cmd(
            &["--rm", "-t"],
            &d.id("t"),
            &["sh", "-c", "tty; sleep 0.3; exit 2"],
        ),
        CMD_TIMEOUT,
    );
    assert_eq!(r.code, Some(2), "{r}\n{}", d.log_tail());
    assert!(r.out.contains("/dev/pts/0"), "no terminal: {r}");

    // A process that cannot be executed: the client gets an error (from
    // create or start), and `--rm` leaves nothing.
    let r = d.run(&["--rm"], &d.id("c"), &["/no/such/binary"]);
    assert_ne!(r.code, Some(0), "{r}");
    assert!(
        d.list("task").is_empty(),
        "tasks left: {:?}",
        d.list("task")
    );
    d.finish();
}

#[test]
#[ignore = "needs root"]
fn containerd_exec_kill_and_ps() {
    need_root!();
    let d = Containerd::start("cexec");
    let id = d.id("a");
    // Foreground `ctr run`, in the background: its exit code is the task's.
    let fg = Bg::spawn(d.run_cmd(
        &[],
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    ))
    .expect("spawn ctr run");
    let mut fg = Some(fg);
    let running = poll(Duration::from_secs(20), || {
        if fg.as_mut().is_some_and(|f| f.exited()) {
            return Some(false);
        }
        d.task(&id).filter(|(_, s)| s == "RUNNING").map(|_| true)
    });
    if running != Some(true) {
        let r = fg.take().map(|f| f.wait(Duration::from_secs(5)));
        panic!(
            "task {id} never became RUNNING ({:?})\nctr run: {}\n{}",
            d.task(&id),
            r.map(|r| r.to_string()).unwrap_or_default(),
            d.log_tail()
        );
    }
    let fg = fg.take().expect("ctr run");

    let r = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); sleep 0.3; exit 5",
    ]);
    assert_eq!(r.code, Some(5), "{r}\n{}", d.log_tail());
    assert!(
        r.out.contains("pid1=sh -c trap"),
        "exec is not in the container's pid namespace: {r}"
    );

    // exec with a working directory and user of its own.
    let r = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "--cwd",
        "/tmp",
        "--user",
        "1000",
        &id,
        "sh",
        "-c",
        "echo $(id -u) $(pwd); sleep 0.3",
    ]);
    assert_eq!(r.out.trim(), "1000 /tmp", "{r}\n{}", d.log_tail());

    // exec -t: the runtime hands the pty master to the shim through
    // --console-socket.
    let r = run_in_pty(
        &d.ctr_cmd(&[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "e3",
            &id,
            "sh",
            "-c",
            "tty; sleep 0.3; exit 4",
        ]),
        CMD_TIMEOUT,
    );
    assert_eq!(r.code, Some(4), "{r}\n{}", d.log_tail());
    assert!(r.out.contains("/dev/pts/"), "no terminal: {r}");

    // ps: the shim asks the runtime (`ps --format json`).
    let r = d.ctr(&["task", "ps", &id]);
    assert!(r.success(), "{r}\n{}", d.log_tail());
    assert!(r.out.lines().count() >= 2, "no processes listed: {r}");

    // SIGTERM reaches the init's trap, and its exit code reaches `ctr run`.
    d.ctr(&["task", "kill", &id]).ok();
    let r = fg.wait(Duration::from_secs(30));
    assert_eq!(r.code, Some(7), "{r}\n{}", d.log_tail());
    // A foreground `ctr run` deletes its task; without --rm it keeps the
    // container.
    assert!(d.task(&id).is_none(), "task left: {:?}", d.task(&id));
    d.ctr(&["container", "delete", &id]).ok();

    // A detached task killed with SIGKILL (`kill --all`).
    let id = d.id("b");
    d.run(&["-d"], &id, &["sleep", "1000"]).ok();
    d.wait_status(&id, "RUNNING");
    d.ctr(&["task", "kill", "-a", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    let r = d.ctr(&["task", "delete", &id]);
    assert!(r.success(), "{r}");
    assert!(
        r.err.contains("exit code 137"),
        "SIGKILL not reported as 137: {r}"
    );
    d.ctr(&["container", "delete", &id]).ok();
    d.finish();
}

#[test]
#[ignore = "needs root"]
fn containerd_pause_resume_and_metrics() {
    need_root!();
    let d = Containerd::start("cpause");
    let id = d.id("a");
    d.run(
        &["-d", "--memory-limit", "67108864"],
        &id,
        &["sh", "-c", COUNTER],
    )
    .ok();
    let pid = d.wait_status(&id, "RUNNING");
    wait_counter(pid);

    // Metrics: the shim reads the task's cgroups (v1 here) by the init's pid.
    let r = d.ctr(&["task", "metrics", &id]);
    assert!(r.success(), "{r}\n{}", d.log_tail());
    // v1 names, else v2's.
    let limit =
        metric(&r.out, "memory.limit_in_bytes").or_else(|| metric(&r.out, "memory.usage_limit"));
    assert_eq!(limit.as_deref(), Some("67108864"), "{r}");
    let pids: u64 = metric(&r.out, "pids.current")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(pids >= 1, "pids.current {pids}: {r}");
    let usage: u64 = metric(&r.out, "memory.usage_in_bytes")
        .or_else(|| metric(&r.out, "memory.usage"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(usage > 0, "memory usage {usage}: {r}");

    d.ctr(&["task", "pause", &id]).ok();
    d.wait_status(&id, "PAUSED");
    assert_frozen_then_moving(pid, || {
        d.ctr(&["task", "resume", &id]).ok();
        d.wait_status(&id, "RUNNING");
    });

    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "delete", &id]).ok();
    d.finish();
}

// ---------------------------------------------------------------------------
// podman

/// A private podman store (root, runroot, tmpdir, containers.conf) with the
/// busybox image loaded; containers go under the cgroup parent
/// `/hako-podman-<tag>`. Dropping it removes every container, kills
/// leftover conmons and container processes, and removes leftover mounts
/// and the cgroup parent.
struct Podman {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    cleaned: bool,
}

impl Podman {
    fn new(name: &str) -> Podman {
        let tar = image_tar();
        let dir = tempfile::Builder::new()
            .prefix("hako-podman-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path().to_string_lossy().into_owned();
        // This host's hard RLIMIT_NOFILE is below podman's default 1048576
        // (and RLIMIT_NPROC below its default), and without
        // CAP_SYS_RESOURCE they cannot be raised: ask for less.
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_config_dir = "{d}/networks"
"#
        );
        fs::write(dir.path().join("containers.conf"), conf).expect("containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
        );
        fs::write(dir.path().join("storage.conf"), storage).expect("storage.conf");
        let p = Podman {
            dir,
            cgroup_parent: format!("/hako-podman-{}", tag(name)),
            cleaned: false,
        };
        p.podman(&["load", "-i", &tar.to_string_lossy()]).ok();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(["--runtime", runtime()])
            .args(args);
        cmd
    }

    fn podman(&self, args: &[&str]) -> Run {
        run(self.cmd(args), CMD_TIMEOUT)
    }

    /// `podman run <opts> IMAGE <args>` in this test's cgroup parent.
    fn run(&self, opts: &[&str], args: &[&str]) -> Run {
        let mut cmd = self.cmd(&[
            "run",
            "--cgroup-parent",
            &self.cgroup_parent,
            "--network",
            "none",
        ]);
        cmd.args(opts).arg(IMAGE).args(args);
        run(cmd, CMD_TIMEOUT)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.podman(&["inspect", "--format", format, name])
            .ok()
            .trim()
            .to_string()
    }

    #[track_caller]
    fn wait_state(&self, name: &str, want: &str) {
        let got = poll(Duration::from_secs(20), || {
            (self.inspect(name, "{{.State.Status}}") == want).then_some(())
        });
        assert!(
            got.is_some(),
            "{name} never became {want}: {}",
            self.inspect(name, "{{.State.Status}}")
        );
    }

    fn containers(&self) -> Vec<String> {
        self.podman(&["ps", "-aq"])
            .out
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Remove everything this test made; return what podman itself left
    /// behind. Never panics.
    fn cleanup(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut leaks = Vec::new();
        let dir = self.dir.path().to_path_buf();
        let needle = dir.to_string_lossy().into_owned();
        let left = self.containers();
        if !left.is_empty() {
            leaks.push(format!("containers still there at the end: {left:?}"));
            let r = self.podman(&["rm", "--all", "--force", "--time", "0"]);
            if !r.success() {
                leaks.push(format!("podman rm failed: {r}"));
                thaw_cgroup_tree(&self.cgroup_parent);
                let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
            }
        }
        // conmon exits once its container is gone.
        let gone = poll(Duration::from_secs(5), || {
            pids_mentioning(&needle).is_empty().then_some(())
        });
        if gone.is_none() {
            let left = pids_mentioning(&needle);
            leaks.push(format!("processes left (conmon): {left:?}"));
            thaw_cgroup_tree(&self.cgroup_parent);
            kill_trees(&left);
        }
        let ms = mounts_under(&dir);
        if !ms.is_empty() {
            leaks.push(format!("mounts left: {ms:?}"));
            umount_under(&dir);
        }
        // The container cgroups are the runtime's to remove (`delete`);
        // the parent and conmon's are podman's and stay, as with runc.
        let ctr_cgroups: Vec<String> = list_dir(
            &hierarchies()
                .iter()
                .map(|h| h.join(self.cgroup_parent.trim_start_matches('/')))
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .filter(|n| n.starts_with("libpod-"))
        .collect();
        if !ctr_cgroups.is_empty() {
            leaks.push(format!(
                "container cgroups left under {}: {ctr_cgroups:?} (members {:?})",
                self.cgroup_parent,
                cgroup_members(&self.cgroup_parent)
            ));
        }
        remove_cgroup_tree(&self.cgroup_parent);
        // podman makes conmon's cgroup in every controller it knows, also
        // where this host mounts none (hugetlb is in the v2 tree here): plain
        // directories on /sys/fs/cgroup's tmpfs.
        for d in stray_cgroup_dirs(&self.cgroup_parent) {
            let _ = fs::remove_dir(&d);
        }
        // podman passes no --root: hako-runc keeps state in its default
        // root, which `delete` empties.
        for (id, root) in runtime_states_mentioning(&needle) {
            leaks.push(format!("runtime state left: {id} in {}", root.display()));
            let mut c = Command::new(runtime());
            c.arg("--root").arg(&root).args(["delete", "--force", &id]);
            let _ = run(c, Duration::from_secs(20));
            let _ = fs::remove_dir_all(root.join(&id));
        }
        leaks
    }

    #[track_caller]
    fn finish(mut self) {
        let leaks = self.cleanup();
        assert!(leaks.is_empty(), "left behind: {leaks:#?}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let leaks = self.cleanup();
        if !leaks.is_empty() {
            eprintln!("cleanup removed: {leaks:#?}");
        }
    }
}

/// `rel` and below in directories of /sys/fs/cgroup that are no cgroup
/// hierarchy, deepest first.
fn stray_cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(CGROUP_ROOT) else {
        return out;
    };
    for e in rd.flatten() {
        let top = e.path();
        if top.join("cgroup.procs").exists() {
            continue;
        }
        let d = top.join(rel.trim_start_matches('/'));
        let mut stack = vec![d];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                out.push(d);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// hako-runc's default state root.
const RUNTIME_ROOT: &str = "/run/hako-runc";

/// (id, root) of hako-runc containers in the default root whose state
/// mentions `needle` (a test's temp dir: their bundle is in its store).
fn runtime_states_mentioning(needle: &str) -> Vec<(String, PathBuf)> {
    let root = PathBuf::from(RUNTIME_ROOT);
    list_dir(std::slice::from_ref(&root))
        .into_iter()
        .filter(|id| {
            fs::read_to_string(root.join(id).join("state.json"))
                .map(|s| s.contains(needle))
                .unwrap_or(false)
        })
        .map(|id| (id, root.clone()))
        .collect()
}

/// The host-side cgroup directory of `pid` for `controller`: its v1
/// hierarchy, or the unified tree on a pure cgroup v2 host.
fn host_cgroup(pid: i32, controller: &str) -> Option<PathBuf> {
    let s = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
    s.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if unified {
            return ctrls.is_empty().then(|| Path::new(CGROUP_ROOT).join(rel));
        }
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| Path::new(CGROUP_ROOT).join(controller).join(rel))
    })
}

/// The first of `files` that exists in `dir` (v1 and v2 names), trimmed.
fn read_first(dir: &Path, files: &[&str]) -> String {
    files
        .iter()
        .find_map(|f| fs::read_to_string(dir.join(f)).ok())
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs root"]
fn podman_run_rm_propagates_output_and_exit_code() {
    need_root!();
    let p = Podman::new("prm");
    let r = p.run(
        &["--rm"],
        &["sh", "-c", "echo hello from $(hostname); exit 4"],
    );
    assert_eq!(r.code, Some(4), "{r}");
    assert!(r.out.contains("hello from"), "{r}");
    let r = p.run(&["--rm"], &["sh", "-c", "ulimit -n"]);
    assert_eq!(r.ok().trim(), "1024");
    assert!(p.containers().is_empty(), "--rm left {:?}", p.containers());
    p.finish();
}

#[test]
#[ignore = "needs root"]
fn podman_detach_exec_stop_rm() {
    need_root!();
    let p = Podman::new("pexec");
    p.run(
        &["-d", "--name", "c1"],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    )
    .ok();
    p.wait_state("c1", "running");

    let r = p.podman(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 6",
    ]);
    assert_eq!(r.code, Some(6), "{r}");
    assert!(r.out.contains("pid1=sh -c trap"), "{r}");
    let r = p.podman(&[
        "exec",
        "-e",
        "HAKO=yes",
        "-w",
        "/tmp",
        "--user",
        "1000",
        "c1",
        "sh",
        "-c",
        "echo $HAKO $(pwd) $(id -u)",
    ]);
    assert_eq!(r.ok().trim(), "yes /tmp 1000");

    let start = Instant::now();
    p.podman(&["stop", "-t", "20", "c1"]).ok();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "stop waited for the timeout: SIGTERM did not reach the trap"
    );
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect("c1", "{{.State.ExitCode}}"), "0");
    p.podman(&["rm", "c1"]).ok();
    assert!(p.containers().is_empty());
    p.finish();
}

#[test]
#[ignore = "needs root"]
fn podman_memory_and_pids_limits() {
    need_root!();
    let p = Podman::new("plim");
    p.run(
        &[
            "-d",
            "--name",
            "c1",
            "--memory",
            "32m",
            "--memory-swap",
            "32m",
            "--pids-limit",
            "16",
        ],
        &["sleep", "1000"],
    )
    .ok();
    p.wait_state("c1", "running");
    let pid: i32 = p.inspect("c1", "{{.State.Pid}}").parse().expect("pid");
    let mem = host_cgroup(pid, "memory").expect("memory cgroup");
    let limit = read_first(&mem, &["memory.limit_in_bytes", "memory.max"]);
    assert_eq!(limit, "33554432", "memory limit in {}", mem.display());
    let pids = host_cgroup(pid, "pids").expect("pids cgroup");
    let max = read_first(&pids, &["pids.max"]);
    assert_eq!(max, "16", "pids.max in {}", pids.display());

    // The limits hold. A process that grows past 32 MiB is OOM-killed
    // (tail keeps a line with no newline in memory)... It makes itself the
    // preferred victim: under load the kernel may pick a second victim while
    // the first still exits, and that must not be the container's init.
    let r = p.podman(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo 1000 > /proc/self/oom_score_adj; head -c 200m /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(r.code, Some(137), "not OOM-killed: {r}");
    // ...and forks fail at 16 tasks.
    let r = p.podman(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 30 & done",
    ]);
    assert!(
        r.err.contains("can't fork"),
        "30 forks under pids.max 16: {r}"
    );
    let n: u32 = read_first(&pids, &["pids.current"]).parse().unwrap_or(99);
    assert!(n <= 16, "pids.current {n} over pids.max 16");

    p.podman(&["rm", "--force", "--time", "0", "c1"]).ok();
    p.finish();
}

#[test]
#[ignore = "needs root"]
fn podman_tty() {
    need_root!();
    let p = Podman::new("ptty");
    let r = p.run(
        &["--rm", "-t"],
        &["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys"],
    );
    let out = r.ok().replace('\r', "");
    assert!(out.contains("/dev/pts/0"), "{r}");
    assert!(out.contains("both-ttys"), "{r}");
    p.finish();
}

#[test]
#[ignore = "needs root"]
fn podman_pause_unpause() {
    need_root!();
    let p = Podman::new("ppause");
    p.run(&["-d", "--name", "c1"], &["sh", "-c", COUNTER]).ok();
    p.wait_state("c1", "running");
    let pid: i32 = p.inspect("c1", "{{.State.Pid}}").parse().expect("pid");
    wait_counter(pid);
    p.podman(&["pause", "c1"]).ok();
    assert_eq!(p.inspect("c1", "{{.State.Status}}"), "paused");
    assert_frozen_then_moving(pid, || {
        p.podman(&["unpause", "c1"]).ok();
        assert_eq!(p.inspect("c1", "{{.State.Status}}"), "running");
    });
    p.podman(&["rm", "--force", "--time", "0", "c1"]).ok();
    p.finish();
}

/// `hako save` in both formats is loadable by `podman load`, and a
/// `podman save` by `hako load`; the images run on either side.
#[test]
#[ignore = "needs root"]
fn podman_and_hako_load_each_others_saves() {
    need_root!();
    let p = Podman::new("psave");
    let d = tempfile::Builder::new()
        .prefix("hako-save-")
        .tempdir()
        .unwrap();
    let hako = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.env("HAKO_DATA_DIR", d.path().join("data"))
            .env("HAKO_RUN_DIR", d.path().join("run"))
            .env("HAKO_CGROUP_MANAGER", "cgroupfs")
            .args(args);
        run(c, CMD_TIMEOUT)
    };
    // podman save -> hako load -> hako run.
    let from_podman = d.path().join("from-podman.tar");
    p.podman(&["save", "-o", from_podman.to_str().unwrap(), IMAGE])
        .ok();
    hako(&["load", "-i", from_podman.to_str().unwrap()]).ok();
    let r = hako(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "echo",
        "from-podman",
    ]);
    assert_eq!(r.ok().trim(), "from-podman");
    // An image hako made (commit), saved both ways -> podman load -> run.
    hako(&[
        "run",
        "--name",
        "m",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo hako-made > /made",
    ])
    .ok();
    hako(&["commit", "m", "localhost/hako-made:1"]).ok();
    for format in ["docker-archive", "oci-archive"] {
        let f = d.path().join(format!("{format}.tar"));
        hako(&[
            "save",
            "--format",
            format,
            "-o",
            f.to_str().unwrap(),
            "localhost/hako-made:1",
        ])
        .ok();
        let loaded = p.podman(&["load", "-i", f.to_str().unwrap()]);
        assert!(loaded.ok().contains("localhost/hako-made:1"), "{loaded}");
        let r = p.podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--cgroup-parent",
            &p.cgroup_parent,
            "localhost/hako-made:1",
            "cat",
            "/made",
        ]);
        assert_eq!(r.ok().trim(), "hako-made", "{format}");
        p.podman(&["rmi", "localhost/hako-made:1"]).ok();
    }
    // Bad input: an unknown image, an unknown format; nothing written.
    let f = d.path().join("bad.tar");
    let r = hako(&["save", "-o", f.to_str().unwrap(), "nope:1"]);
    assert_eq!(r.code, Some(125), "{r}");
    let r = hako(&["save", "--format", "zip", "-o", f.to_str().unwrap(), IMAGE]);
    assert_eq!(r.code, Some(125), "{r}");
    assert!(r.err.contains("--format"), "{r}");
    assert!(!f.exists());
    hako(&["rm", "m"]).ok();
    p.finish();
}

/// A line from a TCP server at `addr` (a published port), polled until it
/// answers.
fn read_from(addr: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{addr} never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// podman (netavark, 10.88.0.0/16) and hako (10.77.0.0/16) each with its
/// default network at once: both publish a port on the host, and from each
/// container the host answers on its network's gateway.
#[test]
#[ignore = "needs root"]
fn podman_and_hako_side_by_side_with_their_default_networks() {
    need_root!();
    let p = Podman::new("side");
    let d = tempfile::Builder::new()
        .prefix("hako-side-")
        .tempdir()
        .unwrap();
    // hako's default subnet, on a bridge of this test's own.
    let bridge = format!("hks{}", std::process::id() % 100_000);
    fs::write(
        d.path().join("hako.toml"),
        format!("[network]\ndefault_bridge = \"{bridge}\"\n"),
    )
    .unwrap();
    let nft = format!("hakos{}", std::process::id() % 100_000);
    let hako = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.env("HAKO_DATA_DIR", d.path().join("data"))
            .env("HAKO_RUN_DIR", d.path().join("run"))
            .env("HAKO_CONFIG", d.path().join("hako.toml"))
            .env("HAKO_NFT_TABLE", &nft)
            .env("HAKO_CGROUP_MANAGER", "cgroupfs")
            .args(args);
        run(c, CMD_TIMEOUT)
    };
    // The host, listening on every address.
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in host.incoming().flatten() {
            let mut s = s;
            let _ = std::io::Write::write_all(&mut s, b"host\n");
        }
    });
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (pp, hp) = (free(), free());
    let serve = |who: &str| format!("while :; do echo from-{who} | nc -l -p 8080; done");
    p.podman(&[
        "run",
        "-d",
        "--name",
        "pweb",
        "--network",
        "bridge",
        "--cgroup-parent",
        &p.cgroup_parent,
        "-p",
        &format!("127.0.0.1:{pp}:8080"),
        IMAGE,
        "sh",
        "-c",
        &serve("podman"),
    ])
    .ok();
    hako(&["load", "-i", &image_tar().to_string_lossy()]).ok();
    hako(&[
        "run",
        "-d",
        "--name",
        "hweb",
        "-p",
        &format!("127.0.0.1:{hp}:8080"),
        IMAGE,
        "sh",
        "-c",
        &serve("hako"),
    ])
    .ok();
    // Each publishes its port on the host.
    assert_eq!(read_from(&format!("127.0.0.1:{pp}")).trim(), "from-podman");
    assert_eq!(read_from(&format!("127.0.0.1:{hp}")).trim(), "from-hako");
    // Each reaches the host through its network's gateway.
    let pgw = p.inspect("pweb", "{{.NetworkSettings.Gateway}}");
    assert!(pgw.starts_with("10.88."), "podman's default network: {pgw}");
    let r = p.podman(&["exec", "pweb", "nc", &pgw, &host_port.to_string()]);
    assert_eq!(r.ok().trim(), "host");
    let hgw = {
        let r = hako(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "hweb"]);
        let ip = r.ok().trim().to_string();
        assert!(ip.starts_with("10.77."), "hako's default network: {ip}");
        format!("{}.1", ip.rsplit_once('.').unwrap().0)
    };
    let r = hako(&["exec", "hweb", "nc", &hgw, &host_port.to_string()]);
    assert_eq!(r.ok().trim(), "host");
    hako(&["rm", "-f", "hweb"]).ok();
    hako(&["network", "rm", "hako"]).ok();
    p.podman(&["rm", "-f", "pweb"]).ok();
    p.finish();
    // netavark leaves its iptables-nft base chains behind (empty once its
    // containers are gone); they are podman's, not the host's: remove the
    // tables when nothing else is in them.
    for table in ["nat", "filter"] {
        let out = Command::new("nft")
            .args(["list", "table", "ip", table])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let chains: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .collect();
        let only_netavark = chains.iter().all(|c| {
            c.starts_with("NETAVARK")
                || ["POSTROUTING {", "PREROUTING {", "OUTPUT {", "FORWARD {"].contains(c)
        });
        if out.status.success() && text.contains("NETAVARK") && only_netavark {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", table])
                .status();
        }
    }
}
