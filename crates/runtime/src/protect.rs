//! CVE-2019-5736 for processes that become visible inside a container
//! before their final execve: `exec`, and an init that joins an existing
//! pid namespace.
//!
//! Such a process is a fork of the runtime, so its /proc/PID/exe is the
//! runtime's binary. Being non-dumpable keeps ordinary container processes
//! out, but a container process with CAP_SYS_PTRACE (in the initial user
//! namespace, i.e. a container without a user namespace of its own) may
//! still open /proc/PID/exe, keep the fd, and reopen it for writing once
//! the runtime has exited: the host binary would be overwritten.
//!
//! The defence, as in runc and crun: the process that joins the container
//! must not run from a writable file. Before such a verb does anything,
//! the runtime re-executes itself from a read-only, detached bind mount of
//! its own binary (open_tree + MOUNT_ATTR_RDONLY): every reopen of that
//! /proc/PID/exe for writing fails with EROFS, and the mount is reachable
//! by no path. `create` and `run` of a container with its own pid namespace
//! do not pay for this: nothing in the container can see the init before
//! the sealed exec helper (crate::dmz) replaces it.

use std::ffi::{CString, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::sys;

/// Set across the re-exec, so that a kernel that gave us a writable exe
/// anyway is an error instead of a loop.
const MARK: &str = "_HAKO_PROTECTED_EXE";
/// The binary's real path, carried across the re-exec: a detached mount
/// has no path, so /proc/self/exe then reads as "/".
const EXE_PATH: &str = "_HAKO_EXE_PATH";

static ORIGINAL_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// This program's path on the host (for spawning itself or binding it into
/// a container), also after [`reexec_protected`].
pub fn self_exe() -> std::io::Result<std::path::PathBuf> {
    match ORIGINAL_EXE.get() {
        Some(p) => Ok(p.clone()),
        #[allow(clippy::disallowed_methods)] // the one place that may
        None => std::env::current_exe(),
    }
}

/// A command that runs this program again (a verb of its own, e.g. the
/// engine's monitor). When this process already runs from its read-only
/// copy, the child runs from the same one (/proc/self/exe) and is told so,
/// with the binary's real path: its [`reexec_protected`] then returns at
/// once instead of paying a second exec of the binary.
pub fn self_command() -> std::io::Result<std::process::Command> {
    let path = self_exe()?;
    if !exe_is_protected() {
        return Ok(std::process::Command::new(path));
    }
    let mut c = std::process::Command::new("/proc/self/exe");
    // argv[0] as a normal spawn's; the kernel names the process after the
    // path ("exe"), which [`fix_own_name`] undoes in the child.
    std::os::unix::process::CommandExt::arg0(&mut c, &path);
    c.env(MARK, "1").env(EXE_PATH, path);
    Ok(c)
}

/// A process started through [`self_command`] is named "exe" by the
/// kernel (the last part of the path it was executed by): give it its
/// binary's name back, so `ps`, `pgrep -x` and signal traces see it as
/// they see every other process of this binary.
pub fn fix_own_name() {
    let Ok(comm) = std::fs::read("/proc/self/comm") else {
        return;
    };
    if comm != b"exe\n" {
        return;
    }
    let Some(name) = std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.as_bytes().to_vec()))
        .and_then(|n| CString::new(n).ok())
    else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel
    // copies at most 16 bytes) that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Whether /proc/self/exe lives on a read-only mount.
pub fn exe_is_protected() -> bool {
    sys::fstatfs_flags(Path::new("/proc/self/exe")).is_ok_and(|f| f & libc::ST_RDONLY != 0)
}

/// Make sure this process runs from a read-only copy of its binary,
/// re-executing (same argv and environment) when it does not. Call it at
/// the start of a verb, before any side effect: on success it either
/// returns at once or never returns. Not root of the initial user
/// namespace: nothing to do, since no container process can hold
/// CAP_SYS_PTRACE over a process of ours.
pub fn reexec_protected() -> Result<()> {
    let marked = std::env::var_os(MARK).is_some();
    if marked {
        // Not for the children we start.
        std::env::remove_var(MARK);
        if let Some(p) = std::env::var_os(EXE_PATH) {
            let _ = ORIGINAL_EXE.set(p.into());
            std::env::remove_var(EXE_PATH);
        }
    }
    if sys::geteuid() != 0 || !sys::in_initial_userns() || exe_is_protected() {
        return Ok(());
    }
    if marked {
        return Err(Error::Other(
            "re-executed from a read-only copy of the runtime binary, but /proc/self/exe is still writable".into(),
        ));
    }
    let fd = sys::open_tree_clone(Path::new("/proc/self/exe"), false)
        .ctx(|| "clone a mount of the runtime binary (CVE-2019-5736)".into())?;
    sys::mount_setattr_fd(fd.as_fd(), false, sys::MOUNT_ATTR_RDONLY, 0, 0)
        .ctx(|| "make the runtime binary's mount read-only (CVE-2019-5736)".into())?;
    let cstrings = |v: Vec<OsString>| -> Result<Vec<CString>> {
        v.into_iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::Other("NUL in argv".into())))
            .collect()
    };
    let argv = cstrings(std::env::args_os().collect())?;
    let mut env: Vec<OsString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    env.push(format!("{MARK}=1").into());
    let mut exe_path = OsString::from(format!("{EXE_PATH}="));
    exe_path.push(self_exe().ctx(|| "find the runtime binary".into())?);
    env.push(exe_path);
    let envp = cstrings(env)?;
    let a: Vec<&std::ffi::CStr> = argv.iter().map(CString::as_c_str).collect();
    let e: Vec<&std::ffi::CStr> = envp.iter().map(CString::as_c_str).collect();
    let err = sys::execveat_fd(fd.as_fd(), &a, &e);
    Err(err).ctx(|| "re-execute from a read-only copy of the runtime binary".into())
}
