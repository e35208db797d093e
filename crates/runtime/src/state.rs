//! Container state on disk (`<root>/<id>/state.json`) and its status rules.
//!
//! The status is never trusted from the file alone: it is derived from the
//! init process (alive, and the same process by its start time), the exec
//! fifo (present until `start`) and the freezer.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Hook;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::sys;

pub const OCI_VERSION: &str = "1.2.0";
pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What hako-runc keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// As saved: Creating until `create` is done, then Created. Whether a
    /// container is created, running, paused or stopped is derived when it
    /// is read ([`derive_status`]: the init's life, the exec fifo, the
    /// freezer), so `start` does not rewrite the file.
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Start time of the init (field 22 of /proc/PID/stat) to detect pid reuse.
    #[serde(default)]
    pub init_start_time: u64,
    /// The container has its own pid namespace (killing init kills all).
    #[serde(default)]
    pub own_pidns: bool,
    /// The spec's poststart hooks as created, so `start` need not parse
    /// config.json again (runc keeps its whole config in its state). `None`
    /// in a record an older hako-runc wrote: `start` reads the bundle then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poststart: Option<Vec<Hook>>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
    /// Opaque cgroup manager description (set by the cgroup layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<serde_json::Value>,
    /// Parent cgroup directories created for this container (deepest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_parents: Vec<PathBuf>,
}

impl State {
    /// The runtime-spec state JSON (what `state` prints and hooks read).
    pub fn spec_json(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.to_string(),
            "bundle": self.bundle,
        });
        if status != Status::Stopped && self.pid > 0 {
            v["pid"] = self.pid.into();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }

    /// runc's `state` shape: the spec fields plus rootfs, created, owner.
    pub fn runc_json(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status.to_string(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }
}

/// Container ids become directory names: keep them boring.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// `<root>/<id>`.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
    pub id: String,
}

impl StateDir {
    pub fn new(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        Ok(StateDir {
            dir: root.join(id),
            id: id.to_string(),
        })
    }

    /// Create the directory; a duplicate id is an error.
    pub fn create(&self) -> Result<()> {
        if let Some(root) = self.dir.parent() {
            std::fs::create_dir_all(root)
                .ctx(|| format!("create state root {}", root.display()))?;
            let _ = sys::chmod(root, 0o700);
        }
        match std::fs::create_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(self.id.clone()))
            }
            Err(e) => return Err(e).ctx(|| format!("create state dir {}", self.dir.display())),
        }
        sys::chmod(&self.dir, 0o711).ctx(|| format!("chmod {}", self.dir.display()))
    }

    pub fn exists(&self) -> bool {
        self.dir.join(STATE_FILE).exists()
    }

    pub fn load(&self) -> Result<State> {
        let p = self.dir.join(STATE_FILE);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(self.id.clone()))
            }
            Err(e) => return Err(e).ctx(|| format!("read {}", p.display())),
        };
        crate::json::from_slice(&data).map_err(|e| Error::Other(format!("{}: {e}", p.display())))
    }

    /// Atomically replace state.json.
    pub fn save(&self, s: &State) -> Result<()> {
        let data = serde_json::to_vec(s).map_err(|e| Error::Other(e.to_string()))?;
        atomic_write(&self.dir.join(STATE_FILE), &data, 0o600, Durability::Atomic)
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Take the container's lock (flock on the state dir) for a mutation.
    pub fn lock(&self) -> Result<OwnedFd> {
        let fd =
            sys::openat(None, &self.dir, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    Error::NotFound(self.id.clone())
                } else {
                    Error::Io {
                        step: format!("open {}", self.dir.display()),
                        cause: e,
                    }
                }
            })?;
        // SAFETY: flock on a valid fd we own.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("lock {}", self.dir.display()));
        }
        Ok(fd)
    }

    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", self.dir.display())),
        }
    }
}

/// How much an [`atomic_write`] must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers never see half a file; a crash may lose the write. For the
    /// runtime's per-boot state (in /run, gone at reboot anyway; runc does
    /// not sync it either), where a sync would cost ~2 ms per start on a
    /// disk-backed `--root` (bench/interleaved.py). An existing file is
    /// replaced by exchanging the two names and unlinking the old content:
    /// a rename over an existing file makes ext4 start writing the new one
    /// out first (`auto_da_alloc`, the crash safety this mode does not
    /// promise), ~110 µs of wall time per replace on this machine's disk.
    Atomic,
    /// Fsync the file before the rename, not the directory after it: a crash
    /// or power loss leaves the old content or the new, whole, never a
    /// truncated file, but may lose the change. For engine records whose
    /// latest change says only which processes run (none after a crash),
    /// over an older durable version; one disk flush instead of two.
    Whole,
    /// Also fsync the file before the rename and the directory after it, so a
    /// crash or power loss leaves the old or the new content, never a
    /// truncated file (ext4 and xfs may otherwise persist the rename before
    /// the data). For the engine's records on disk.
    Durable,
}

/// Replaces `path` with `data` (file mode `mode`) through a temporary file
/// in the same directory and a rename: the one atomic write of the runtime
/// and the engine.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32, how: Durability) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let durable = how == Durability::Durable;
    let whole = durable || how == Durability::Whole;
    let r = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if whole {
            f.sync_all()?;
        }
        drop(f);
        if whole || !exchange(&tmp, path) {
            std::fs::rename(&tmp, path)?;
        }
        if durable {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.ctx(|| format!("write {}", path.display()))
}

/// Swaps `tmp` and an existing `path` (renameat2 RENAME_EXCHANGE), then
/// unlinks `tmp`, which holds the old content. False, with nothing changed,
/// when `path` does not exist yet or the filesystem cannot exchange: the
/// caller renames then.
fn exchange(tmp: &Path, path: &Path) -> bool {
    let (Ok(a), Ok(b)) = (sys::cstr(tmp), sys::cstr(path)) else {
        return false;
    };
    // SAFETY: two valid C strings relative to the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        return false;
    }
    let _ = std::fs::remove_file(tmp);
    true
}

/// Parsed bits of /proc/PID/stat.
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let s = hako_cgroups::read_kernel_file(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Is the recorded init still the live process it was?
pub fn init_alive(s: &State) -> bool {
    if s.pid <= 0 {
        return false;
    }
    match proc_stat(s.pid) {
        Some(st) => st.state != 'Z' && st.state != 'X' && st.start_time == s.init_start_time,
        None => false,
    }
}

/// Derive the status the runtime-spec defines from the facts on the host.
pub fn derive_status(dir: &StateDir, s: &State, frozen: impl Fn(&State) -> bool) -> Status {
    if s.status == Status::Creating && s.pid <= 0 {
        return Status::Creating;
    }
    if !init_alive(s) {
        return Status::Stopped;
    }
    if s.status == Status::Creating {
        return Status::Creating;
    }
    if dir.fifo().exists() {
        return Status::Created;
    }
    if frozen(s) {
        return Status::Paused;
    }
    Status::Running
}

/// RFC 3339 UTC with nanoseconds, as runc prints `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    use chrono::{Datelike, Timelike};
    // chrono does the calendar; the fixed format is written here, which
    // keeps chrono's format machinery out of hako-runc's start path.
    let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn atomic_writes_create_and_replace_leaving_one_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.json");
        for how in [Durability::Atomic, Durability::Whole, Durability::Durable] {
            for content in ["first", "second, longer", "3"] {
                atomic_write(&p, content.as_bytes(), 0o600, how).unwrap();
                assert_eq!(std::fs::read_to_string(&p).unwrap(), content);
                let names: Vec<_> = std::fs::read_dir(t.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, ["state.json"], "{how:?}");
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn own_process_is_alive_and_stat_parses() {
        let me = std::process::id() as i32;
        let st = proc_stat(me).unwrap();
        let s = State {
            oci_version: OCI_VERSION.into(),
            id: "x".into(),
            status: Status::Running,
            pid: me,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: Default::default(),
            init_start_time: st.start_time,
            own_pidns: true,
            poststart: None,
            poststop: vec![],
            cgroup: None,
            cgroup_parents: vec![],
        };
        assert!(init_alive(&s));
        let s2 = State {
            init_start_time: st.start_time + 1,
            ..s.clone()
        };
        assert!(!init_alive(&s2), "a reused pid must not count as alive");
        let j = s.spec_json(Status::Stopped);
        assert!(j.get("pid").is_none());
        assert_eq!(j["status"], "stopped");
    }
}
