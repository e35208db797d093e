//! Host-side helpers of the tests that drive real clients (Docker,
//! containerd's CRI): the offline images, polling, processes, mounts and
//! cgroups a private daemon leaves behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs the clients (containerd, docker.io, CNI plugins…) and builds
/// the offline images, once per test binary: the directory holding
/// busybox.tar and pause.tar (scripts/clients-setup.sh).
pub fn client_images() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = PathBuf::from("/var/cache/hako-clients");
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/clients-setup.sh"))
            .arg(&out)
            .stdin(Stdio::null())
            .status()
            .expect("run scripts/clients-setup.sh");
        assert!(st.success(), "scripts/clients-setup.sh failed");
        out
    })
}

/// Polls `f` until it returns Some, for at most `t`.
pub fn poll<T>(t: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + t;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids (not ours) whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &d || m.starts_with(&format!("{d}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// Detaches every mount under `dir` (a failed test's leftovers).
pub fn umount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let Ok(c) = std::ffi::CString::new(m) else {
            continue;
        };
        // SAFETY: a valid C string; MNT_DETACH of a mount under a test's dir.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Cgroup directories called `name` within `depth` levels of `dir`.
pub fn cgroups_named(dir: &Path, name: &str, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            out.push(e.path());
        } else if depth > 0 {
            out.extend(cgroups_named(&e.path(), name, depth - 1));
        }
    }
    out
}

/// Child cgroup directories under `dir`, deepest first.
pub fn child_cgroups(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            v.extend(child_cgroups(&e.path()));
            v.push(e.path());
        }
    }
    v
}

/// Removes (children first) every cgroup called `name` near the root.
pub fn remove_cgroups_named(name: &str) {
    for cg in cgroups_named(Path::new("/sys/fs/cgroup"), name, 5) {
        for c in child_cgroups(&cg) {
            let _ = fs::remove_dir(c);
        }
        let _ = fs::remove_dir(cg);
    }
}

/// The daemon a test starts gets SIGTERM if the test process dies without
/// running its guards, instead of living on.
pub fn set_pdeathsig(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
