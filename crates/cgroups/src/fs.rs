//! Small helpers around cgroupfs files. Every helper maps `io::Error` into an
//! [`Error`] that carries the path (and the value for writes).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `value` with a single `write(2)`, as cgroupfs expects one value per
/// write. `O_TRUNC` is harmless on cgroupfs and keeps a fake tree (regular
/// files in tests) holding exactly the last value.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    let wrap = |source: io::Error| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(wrap)?;
    f.write_all(value.as_bytes()).map_err(wrap)
}

/// Reads a kernel pseudo-file (cgroupfs, procfs) whole. These files say
/// size 0 in stat, so `fs::read_to_string` spends a statx and then reads in
/// steps growing from 32 bytes: seven reads for a mountinfo, three for a
/// one-line file. Here one read fills a page and a second sees the end.
pub fn read_kernel_file(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        // Only the spare capacity is read into, zeroed first: no unsafe.
        buf.resize(buf.capacity(), 0);
        match f.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn read_string(path: &Path) -> Result<String> {
    read_kernel_file(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read_string`], but a missing file is `None` (stats of optional files).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match read_kernel_file(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses a single number; `max` (v2 "unlimited") reads as `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("{t:?} is not a number: {e}"),
    })
}

/// Reads a single-number file; missing file reads as 0 (stats are best effort
/// for files a kernel may not have, e.g. memory.memsw.* without swap accounting).
pub(crate) fn read_u64_or_zero(path: &Path) -> Result<u64> {
    match read_opt(path)? {
        Some(s) => parse_u64(path, &s),
        None => Ok(0),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...).
/// Lines that are not exactly two fields with a numeric value are skipped.
pub(crate) fn parse_flat_keyed(s: &str) -> BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            let v = if v == "max" {
                u64::MAX
            } else {
                v.parse().ok()?
            };
            Some((k.to_string(), v))
        })
        .collect()
}

pub(crate) fn read_flat_keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    Ok(read_opt(path)?
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default())
}

/// Reads cgroup.procs of `dir` and of every descendant cgroup.
pub(crate) fn pids_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    if let Some(s) = read_opt(&procs)? {
        for l in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
            out.push(l.parse().map_err(|e| Error::Parse {
                path: procs.clone(),
                reason: format!("{l:?} is not a pid: {e}"),
            })?);
        }
    }
    for child in subdirs(dir)? {
        pids_recursive(&child, out)?;
    }
    Ok(())
}

/// Child cgroup directories of `dir` (empty when `dir` does not exist).
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|source| Error::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `dir` and every cgroup below it, children first. cgroupfs only
/// allows rmdir (never unlink of the interface files). EBUSY means child
/// cgroups (removed, then the rmdir is tried again) or a task still exiting
/// (retried with a short backoff). A missing directory is success, so
/// destroy is idempotent.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    // The rmdir comes first: a container's cgroup rarely has children, and
    // listing a cgroup directory (open, fstat, two getdents, close, and the
    // kernel making an entry per interface file) cost five calls per
    // hierarchy on every delete, 55 on a v1 host.
    let mut listed = false;
    let mut delay = std::time::Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // (A plain directory standing in for cgroupfs says ENOTEMPTY.)
            Err(e)
                if !listed && matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) =>
            {
                listed = true;
                for child in subdirs(dir)? {
                    remove_cgroup_tree(&child)?;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 8 => {
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

pub(crate) fn mkdir_all(dir: &Path) -> Result<()> {
    // A container's teardown removes an empty shared parent (the engine's
    // "hako" group); if that happens between create_dir_all making the
    // parent and making `dir` in it, the parent is simply made again. Once
    // `dir` exists the parent is not empty and stays.
    let mut tries = 0;
    loop {
        match fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 10_000 => tries += 1,
            Err(source) => {
                return Err(Error::Mkdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod mkdir_race {
    use super::*;

    /// The engine's teardown removing an empty shared parent while another
    /// container makes its cgroup in it: every make must succeed.
    #[test]
    fn a_parent_removed_meanwhile_is_made_again() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("hako");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let remover = {
            let (parent, stop) = (parent.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = fs::remove_dir(&parent);
                }
            })
        };
        for i in 0..5000 {
            let leaf = parent.join(format!("c{i}"));
            mkdir_all(&leaf).unwrap();
            fs::remove_dir(&leaf).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        remover.join().unwrap();
    }
}
