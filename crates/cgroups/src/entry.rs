//! A new process's way into a container's cgroup that does not wait on the
//! kernel's migration lock.
//!
//! Writing a pid to `cgroup.procs` takes `cgroup_threadgroup_rwsem` for
//! writing, a per-CPU rwsem whose writer waits for an RCU grace period
//! unless another writer passed within one: 10–15 ms of an isolated start
//! on this machine, whichever hierarchy is written first, the largest
//! single step of the engine's `run` (docs/benchmarks.md). Two ways in take
//! no such lock:
//! - cgroup2: clone3(CLONE_INTO_CGROUP) starts the process inside;
//! - v1: a thread that writes "0" to a hierarchy's `tasks` file moves
//!   itself alone, which the kernel does without the threadgroup lock
//!   (`cgroup_procs_write_start`: no pid, no threadgroup). A process just
//!   cloned is one thread, so it moves whole.
//!
//! The caller opens everything before the clone: the new process may
//! already be in a user namespace of its own, where it could not open the
//! host's cgroup files, and v1 checks a `tasks` write against the
//! credentials of whoever opened the file (the caller's).

use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::CgroupConfig;

/// The open ways into one existing cgroup, for one new process.
#[derive(Debug)]
pub struct Entry {
    /// The cgroup2 directory, for clone3(CLONE_INTO_CGROUP).
    dir: Option<OwnedFd>,
    /// Each v1 hierarchy's `tasks` file, open for writing.
    tasks: Vec<(PathBuf, std::fs::File)>,
}

impl Entry {
    /// Opens the cgroup2 directory of `cfg` and the `tasks` file of each
    /// of its v1 directories (close-on-exec). The cgroup must exist.
    pub fn open(cfg: &CgroupConfig) -> Result<Entry> {
        let dir = match &cfg.unified {
            Some(u) => Some(
                std::fs::File::open(&u.dir)
                    .map_err(|source| Error::Read {
                        path: u.dir.clone(),
                        source,
                    })?
                    .into(),
            ),
            None => None,
        };
        let mut tasks: Vec<(PathBuf, std::fs::File)> = Vec::new();
        for d in cfg.v1.values() {
            let path = d.join("tasks");
            if tasks.iter().any(|(p, _)| *p == path) {
                // Controllers mounted together share one directory.
                continue;
            }
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| Error::Write {
                    path: path.clone(),
                    value: "0".into(),
                    source,
                })?;
            tasks.push((path, f));
        }
        Ok(Entry { dir, tasks })
    }

    /// The cgroup2 directory to clone the new process into.
    pub fn clone_dir(&self) -> Option<BorrowedFd<'_>> {
        self.dir.as_ref().map(|d| d.as_fd())
    }

    /// Closes the cgroup2 directory: once the clone is done, in both
    /// processes (no host directory stays open in a container's process).
    pub fn close_dir(&mut self) {
        self.dir = None;
    }

    /// Whether the new process has v1 hierarchies to move itself into.
    pub fn moves_self(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// In the new process, before it forks or starts a thread: moves the
    /// calling thread, which must be its process's only one, into each v1
    /// hierarchy, and closes the files.
    pub fn move_self(self) -> Result<()> {
        for (path, mut f) in self.tasks {
            // One write(2): cgroupfs takes one value per write.
            f.write_all(b"0").map_err(|source| Error::Write {
                path,
                value: "0".into(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn one_tasks_file_per_directory_and_each_gets_a_zero() {
        let t = tempfile::tempdir().unwrap();
        let mk = |name: &str| {
            let d = t.path().join(name).join("c");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("tasks"), "").unwrap();
            d
        };
        let cpu = mk("cpu,cpuacct");
        let mem = mk("memory");
        let cfg = CgroupConfig {
            cgroups_path: "/c".into(),
            v1: BTreeMap::from([
                ("cpu".to_string(), cpu.clone()),
                ("cpuacct".to_string(), cpu.clone()),
                ("memory".to_string(), mem.clone()),
            ]),
            unified: None,
            systemd: None,
        };
        let e = Entry::open(&cfg).unwrap();
        assert!(e.clone_dir().is_none());
        assert!(e.moves_self());
        assert_eq!(e.tasks.len(), 2);
        e.move_self().unwrap();
        assert_eq!(std::fs::read_to_string(cpu.join("tasks")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(mem.join("tasks")).unwrap(), "0");
    }

    #[test]
    fn a_missing_tasks_file_is_named() {
        let t = tempfile::tempdir().unwrap();
        let cfg = CgroupConfig {
            cgroups_path: "/c".into(),
            v1: BTreeMap::from([("pids".to_string(), t.path().join("gone"))]),
            unified: None,
            systemd: None,
        };
        let e = Entry::open(&cfg).unwrap_err().to_string();
        assert!(e.contains("gone/tasks"), "{e}");
    }
}
