//! Compiled filters, kept as crun keeps them: compiling the default
//! profile with libseccomp costs about 15 ms of CPU, which was more than
//! half of an engine's container start (docs/benchmarks.md); reading the
//! program back costs a few microseconds.
//!
//! An entry is named by the SHA-256 of everything its program depends
//! on: the filter (as JSON), libseccomp's version and the kernel's API
//! level, the kernel release, the architecture, and the running binary
//! itself (device, inode, size and modification time of
//! /proc/self/exe), so a rebuilt or upgraded compiler never reads an older
//! program. The directory and its files must be ours and writable by no
//! one else, or the cache is not used: its programs are loaded into
//! containers. Entries are written under a temporary name and renamed, so
//! a reader sees a whole program or none; the kernel verifies every
//! program again when it is loaded.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{compile, CompiledFilter, LinuxSeccomp, SeccompError, BPF_MAXINSNS};

/// The entry's header: a version of this format, then the flags.
const MAGIC: &[u8; 8] = b"hkscmp1\0";

/// [`compile`], through the cache in `dir` (made if missing). A cache that
/// cannot be used (not ours, unreadable, full) is skipped: the filter is
/// compiled as without one.
pub fn compile_cached(spec: &LinuxSeccomp, dir: &Path) -> Result<CompiledFilter, SeccompError> {
    let Some(name) = key(spec) else {
        return compile(spec);
    };
    let path = dir.join(&name);
    if let Some(f) = read(dir, &path) {
        return Ok(f);
    }
    let f = compile(spec)?;
    let _ = write(dir, &name, &f);
    Ok(f)
}

/// The entry's name for `spec` on this host and binary, or None when
/// something it depends on cannot be told.
fn key(spec: &LinuxSeccomp) -> Option<String> {
    let mut h = Sha256::new();
    h.update(MAGIC);
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    for n in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    let v = libseccomp::ScmpVersion::current().ok()?;
    for n in [v.major, v.minor, v.micro, libseccomp::get_api()] {
        h.update(n.to_le_bytes());
    }
    h.update(kernel_release()?);
    h.update(std::env::consts::ARCH);
    h.update(serde_json::to_vec(spec).ok()?);
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn kernel_release() -> Option<Vec<u8>> {
    // SAFETY: a zeroed utsname is valid; uname fills it (NUL-terminated
    // fields) and has no other effect.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        u
    };
    Some(
        u.release
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect(),
    )
}

/// Ours (this effective uid) and writable by no one else.
fn trusted(m: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no failure mode and no memory effects.
    let euid = unsafe { libc::geteuid() };
    m.uid() == euid && m.mode() & 0o022 == 0
}

fn trusted_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && trusted(&m))
}

fn read(dir: &Path, path: &Path) -> Option<CompiledFilter> {
    if !trusted_dir(dir) {
        return None;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    let max = (MAGIC.len() + 8 + BPF_MAXINSNS * 8) as u64;
    if !m.is_file() || !trusted(&m) || m.len() > max {
        return None;
    }
    let mut b = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut b).ok()?;
    let rest = b.strip_prefix(MAGIC.as_slice())?;
    let (flags, program) = rest.split_at_checked(8)?;
    let flags = u32::from_le_bytes(flags[..4].try_into().ok()?);
    CompiledFilter::from_bpf_bytes(program, flags).ok()
}

fn write(dir: &Path, name: &str, f: &CompiledFilter) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if !trusted_dir(dir) {
        return Err(std::io::Error::other(
            "the cache directory is not ours alone",
        ));
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut b = Vec::with_capacity(MAGIC.len() + 8 + f.program_bytes().len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&f.flags().to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(f.program_bytes());
        out.write_all(&b)?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn only_entry(dir: &Path) -> std::path::PathBuf {
        let v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    }

    #[test]
    fn a_cached_program_is_the_compiled_one() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cache");
        let spec = crate::default_profile(&["CAP_SYS_ADMIN".to_string()]);
        let fresh = compile(&spec).unwrap();
        let first = compile_cached(&spec, &dir).unwrap();
        assert_eq!(first.program_bytes(), fresh.program_bytes());
        let entry = only_entry(&dir);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let again = read(&dir, &entry).expect("read back");
        assert_eq!(again.program_bytes(), fresh.program_bytes());
        assert_eq!(again.flags(), fresh.flags());
        assert_eq!(
            compile_cached(&spec, &dir).unwrap().program_bytes(),
            fresh.program_bytes()
        );
        // Another filter, another entry.
        let other = crate::default_profile(&[]);
        assert_ne!(key(&other), key(&spec));
    }

    #[test]
    fn entries_that_are_not_ours_alone_or_whole_are_not_used() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cache");
        let spec = crate::default_profile(&[]);
        let fresh = compile(&spec).unwrap();
        compile_cached(&spec, &dir).unwrap();
        let entry = only_entry(&dir);
        // Writable by others: not read.
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read(&dir, &entry).is_none());
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(read(&dir, &entry).is_none());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Cut short or foreign: not read, and compiling writes it whole again.
        let b = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &b[..b.len() - 3]).unwrap();
        assert!(read(&dir, &entry).is_none());
        std::fs::write(&entry, b"not a program").unwrap();
        assert!(read(&dir, &entry).is_none());
        assert_eq!(
            compile_cached(&spec, &dir).unwrap().program_bytes(),
            fresh.program_bytes()
        );
        assert!(read(&dir, &entry).is_some());
        // A symlink in its place is not followed.
        std::fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &entry).unwrap();
        assert!(read(&dir, &entry).is_none());
    }
}
