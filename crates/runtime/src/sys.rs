//! Thin, safe wrappers over the raw syscalls the runtime needs.
//!
//! Every `unsafe` block in the crate that talks to the kernel lives here, each
//! with the invariant it relies on. Callers get `io::Result` and owned fds.
//! We use `libc` directly rather than `nix` for the few calls whose newer
//! forms (clone3, openat2, pidfd_*, close_range, mount_setattr) nix does not
//! wrap, and to keep one obvious style for all of them.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turn a path into a C string, refusing interior NULs with a clear error.
pub fn cstr(p: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", p.as_ref()),
        )
    })
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `struct clone_args` from linux/sched.h (version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub enum Forked {
    Child,
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
}

/// clone3's CLONE_INTO_CGROUP (linux/sched.h; Linux 5.7), not in libc.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(2)-like clone3 with namespace flags, returning a pidfd in the parent.
/// With `cgroup` (an fd of a cgroup2 directory) the child starts in that
/// cgroup: no pid is written to cgroup.procs, and so no process migration,
/// whose first write waits for an RCU grace period (docs/benchmarks.md).
///
/// The caller must be single-threaded: the child continues on a copy of the
/// caller's stack, like after fork(2).
pub fn clone3_fork(ns_flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM and with a null stack behaves like fork:
    // the child gets a private copy of the address space and continues here.
    // `args` and `pidfd` outlive the call. The hako-runc process is
    // single-threaded on this path, so no lock can be held by a vanished thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as libc::pid_t,
            // SAFETY: with CLONE_PIDFD the kernel stored a new fd we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Plain fork(2) for intermediate processes.
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the runtime is single-threaded where it forks; the child only
    // continues runtime code that is safe after fork in that case.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 { None } else { Some(pid) })
}

pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, a null siginfo and no flags.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// Wait until `fd` is readable or `timeout_ms` passes (-1: forever).
/// Returns whether it became readable.
pub fn poll_in(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// Poll several fds for input; returns the revents of each.
pub fn poll_many(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let with: Vec<(BorrowedFd<'_>, i16)> = fds.iter().map(|f| (*f, libc::POLLIN)).collect();
    poll_events(&with, timeout_ms)
}

/// Poll several fds, each for its own events (POLLIN, POLLOUT); returns
/// the revents of each.
pub fn poll_events(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(f, events)| libc::pollfd {
            fd: f.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: pfds is a valid array of pfds.len() pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(pfds.iter().map(|p| p.revents).collect());
    }
}

pub fn waitpid(pid: libc::pid_t, flags: i32) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(if r == 0 { None } else { Some(status) });
    }
}

/// Reap any child without blocking: (pid, status).
pub fn wait_any_nohang() -> Option<(libc::pid_t, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if r > 0 {
        Some((r, status))
    } else {
        None
    }
}

/// Exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: setns on a valid fd; the kernel checks the type.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) })?;
    Ok(())
}

pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// NS_GET_NSTYPE ioctl: the CLONE_NEW* type of a namespace fd.
pub fn ns_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without an argument on a valid fd.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) })
}

pub fn mount(
    src: Option<&OsStr>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(cstr).transpose()?;
    // SAFETY: all pointers are NUL-terminated strings that live across the
    // call, or null where mount(2) allows null.
    check(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    })?;
    Ok(())
}

pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: t is a valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })?;
    Ok(())
}

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at
/// `path` (with its submounts when `recursive`), close-on-exec. The copy is
/// reachable only through the returned fd until it is attached with
/// [`move_mount_fd`]; the path is resolved now, with the caller's
/// credentials, so a process that could not look the path up can still be
/// handed the mount.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let p = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = check_long(unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags)
    })?;
    // SAFETY: a fresh fd we own from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) on a mount fd (e.g. from [`open_tree_clone`]): set and
/// clear attributes and, when `propagation` is non-zero (MS_SLAVE,
/// MS_PRIVATE…), the propagation type.
pub fn mount_setattr_fd(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clr: u64,
    propagation: u64,
) -> io::Result<()> {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation,
        ..Default::default()
    };
    // SAFETY: an fd we borrow, an empty path, an attr struct of the size we pass.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// move_mount(2) of the mount `from` (e.g. a detached copy) onto `to`: the
/// object an fd names (`to_path` None) or a path.
pub fn move_mount_fd(
    from: BorrowedFd<'_>,
    to: Option<BorrowedFd<'_>>,
    to_path: Option<&Path>,
) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    let mut flags = MOVE_MOUNT_F_EMPTY_PATH;
    let (to_fd, to_c) = match (to, to_path) {
        (Some(fd), None) => {
            flags |= MOVE_MOUNT_T_EMPTY_PATH;
            (fd.as_raw_fd(), CString::default())
        }
        (fd, Some(p)) => (fd.map_or(libc::AT_FDCWD, |f| f.as_raw_fd()), cstr(p)?),
        (None, None) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    // SAFETY: fds we borrow and valid (possibly empty) C strings.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to_fd,
            to_c.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// Recursively set/clear mount attributes (the `rro`, `rnosuid`… options).
pub fn mount_setattr_recursive(target: &Path, set: u64, clr: u64) -> io::Result<()> {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let t = cstr(target)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        ..Default::default()
    };
    // SAFETY: valid path string and attr struct of the size we pass.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            t.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: two valid C strings.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) })?;
    Ok(())
}

pub fn chroot(p: &Path) -> io::Result<()> {
    let c = cstr(p)?;
    // SAFETY: valid C string.
    check(unsafe { libc::chroot(c.as_ptr()) })?;
    Ok(())
}

pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe { libc::fchdir(fd.as_raw_fd()) })?;
    Ok(())
}

/// `struct open_how` for openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: valid dirfd, C string and open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                p.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // openat2 returns EAGAIN with RESOLVE_IN_ROOT when a rename raced
            // with the lookup; retrying is the documented answer.
            if e.raw_os_error() == Some(libc::EAGAIN) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: a fresh fd from the kernel.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
}

pub fn openat(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: valid dirfd (or AT_FDCWD) and C string.
    let fd = check(unsafe { libc::openat(dfd, p.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), p.as_ptr(), mode) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &Path, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), p.as_ptr(), mode, dev) })?;
    Ok(())
}

pub fn symlinkat(target: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    let n = cstr(name)?;
    // SAFETY: valid strings and dirfd.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })?;
    Ok(())
}

pub fn fchownat_empty(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: AT_EMPTY_PATH with "" operates on fd itself.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer; AT_EMPTY_PATH stats the fd itself.
    check(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn fstatfs_flags(path: &Path) -> io::Result<u64> {
    let p = cstr(path)?;
    // SAFETY: zeroed statvfs is valid to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

/// statfs(2)'s f_type: the filesystem's magic number.
pub fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = cstr(path)?;
    // SAFETY: zeroed statfs is a valid out value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st.f_type)
}

/// The magic-link path naming an fd, for syscalls that only take paths.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })?;
    Ok(())
}

pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::setdomainname(name.as_ptr() as *const libc::c_char, name.len()) })?;
    Ok(())
}

pub fn prctl(op: i32, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

pub fn setresuid(uid: u32) -> io::Result<()> {
    // Raw syscall: glibc's wrapper would broadcast to all threads (fine here,
    // but the raw call keeps this per-thread and allocation free).
    // SAFETY: integer arguments only.
    check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    Ok(())
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    Ok(())
}

pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe `gids`.
    check_long(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })?;
    Ok(())
}

pub fn close_range_cloexec(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range with CLOEXEC only marks fds; it never invalidates
    // an fd that Rust code still owns.
    check_long(unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
    })?;
    Ok(())
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller names; errors are reported.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    Ok(())
}

pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on fds; the target is replaced atomically.
    check(unsafe { libc::dup2(old, new) })?;
    Ok(())
}

/// A close-on-exec copy of `fd` numbered `min` or above.
pub fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd we then own.
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: n is a fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

pub fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: two fresh fds from the kernel.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send one fd over a unix socket with SCM_RIGHTS, with `data` as payload.
pub fn send_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one header
    // carrying one fd, so CMSG_FIRSTHDR is non-null and CMSG_DATA in bounds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            &raw as *const RawFd as *const u8,
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<RawFd>(),
        );
    }
    // SAFETY: msg and everything it points to are alive for the call.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one fd sent with SCM_RIGHTS; returns payload and the fd.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<(Vec<u8>, OwnedFd)> {
    match recv_msg(sock, 4096)? {
        (data, Some(fd)) => Ok((data, fd)),
        (_, None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message carried no file descriptor",
        )),
    }
}

/// Receive one message of at most `max` bytes and the fd it may carry
/// (SCM_RIGHTS). A message that filled the buffer is refused: on a
/// SOCK_SEQPACKET socket its tail would be lost.
pub fn recv_msg(sock: BorrowedFd<'_>, max: usize) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut data = vec![0u8; max];
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: buffers are valid for their stated lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if msg.msg_flags & libc::MSG_TRUNC != 0 || (max > 0 && n == max) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message longer than {max} bytes"),
        ));
    }
    data.truncate(n);
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR checks the length.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            None
        } else {
            let mut fd: RawFd = -1;
            std::ptr::copy_nonoverlapping(
                libc::CMSG_DATA(cmsg),
                &mut fd as *mut RawFd as *mut u8,
                std::mem::size_of::<RawFd>(),
            );
            Some(OwnedFd::from_raw_fd(fd))
        }
    };
    Ok((data, fd))
}

/// Block every signal in this thread; returns the previous mask.
pub fn block_all_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t values are initialised by sigfillset/sigprocmask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        check(libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old))?;
        Ok(old)
    }
}

pub fn set_sigmask(mask: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: mask is a valid sigset_t.
    check(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) })?;
    Ok(())
}

/// Reset every catchable signal to its default disposition (before execve
/// the container must not inherit the runtime's handlers or ignores).
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; invalid numbers fail
        // harmlessly with EINVAL.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

pub fn empty_sigmask() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

/// A signalfd for every signal (the caller keeps them blocked).
pub fn signalfd_all() -> io::Result<OwnedFd> {
    // SAFETY: sigset initialised by sigfillset; signalfd returns a new fd.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let fd = check(libc::signalfd(-1, &all, libc::SFD_CLOEXEC))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Read one signal number from a signalfd.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: zeroed siginfo is valid; we read exactly its size.
    unsafe {
        let mut si: libc::signalfd_siginfo = std::mem::zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            &mut si as *mut _ as *mut libc::c_void,
            std::mem::size_of::<libc::signalfd_siginfo>(),
        );
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(si.ssi_signo as i32)
    }
}

/// Run the file `fd` names (execveat with AT_EMPTY_PATH). Where a seccomp
/// filter allows execve but not execveat, through /proc/self/fd/N. Returns
/// only on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[&CStr], envp: &[&CStr]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of C strings that outlive the call; the
    // fd stays open across execveat (the kernel holds the file first).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    let err = io::Error::last_os_error();
    if matches!(err.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOSYS)) {
        let path = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
        // SAFETY: as above, with a NUL-terminated path.
        unsafe { libc::execve(path.as_ptr() as *const libc::c_char, a.as_ptr(), e.as_ptr()) };
        return io::Error::last_os_error();
    }
    err
}

pub fn keyctl_join_session(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let n = cstr(name)?;
    // SAFETY: keyctl with a valid C string.
    check_long(unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, n.as_ptr())
    })?;
    Ok(())
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

pub fn kill(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: kill with integers.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe {
        libc::umask(mask);
    }
}

pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit on ourselves with a valid rlimit struct.
    check(unsafe {
        libc::prlimit(
            0,
            resource as libc::__rlimit_resource_t,
            &rl,
            std::ptr::null_mut(),
        )
    })?;
    Ok(())
}

pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkfifo(p.as_ptr(), mode) })?;
    Ok(())
}

pub fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode) })?;
    Ok(())
}

pub fn access_x(path: &Path) -> bool {
    let Ok(p) = cstr(path) else { return false };
    // SAFETY: valid C string; eaccess checks with effective ids.
    unsafe { libc::faccessat(libc::AT_FDCWD, p.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// Open a pseudo-terminal's peer (slave) end from its master without a path
/// lookup (TIOCGPTPEER), after unlocking it.
pub fn pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let fd = check(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY with arg 0 on a tty fd.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

pub fn get_winsize(fd: RawFd) -> io::Result<(u16, u16)> {
    // SAFETY: zeroed winsize is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize struct.
    check(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty on any integer is safe.
    unsafe { libc::isatty(fd) == 1 }
}

pub fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

pub fn makedev(major: u64, minor: u64) -> libc::dev_t {
    libc::makedev(major as u32, minor as u32)
}

/// A private procfs instance as a detached mount (fsopen/fsmount): not
/// reachable by path, so nothing mounted over /proc by a container can
/// redirect what is opened beneath it.
pub fn private_procfs() -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: fsopen with a literal fs name; returns a new fd or -1.
    let fs =
        check_long(unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fs is a fresh fd we own from here on.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    // hidepid/subset would hide what we need; ask for nothing special, but
    // tolerate kernels without the option.
    // SAFETY: fsconfig on our fs context with literal strings.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            c"hidepid".as_ptr(),
            c"0".as_ptr(),
            0,
        )
    };
    // SAFETY: CMD_CREATE takes no key/value.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fsmount on the created context; returns a new mount fd.
    let m = check_long(unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0)
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// Open `path` beneath a procfs handle. Without `magic`: openat2 with no
/// symlinks and no crossing into other mounts. With `magic` (to follow
/// /proc/…/fd/N) the kernel refuses RESOLVE_BENEATH, so the lookup is a
/// plain openat: safe on a private detached instance, where nothing can be
/// mounted over its components, and allowed by seccomp profiles that
/// predate openat2 (this runs after a container's filter may be loaded).
pub fn open_in_proc(
    proc: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    magic: bool,
) -> io::Result<OwnedFd> {
    if magic {
        return openat(Some(proc), path, flags, 0);
    }
    openat2(
        proc,
        path,
        flags,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
    )
}

/// The initial user namespace maps every id onto itself; any other is a
/// user namespace (where mknod and some mounts are not allowed).
pub fn in_initial_userns() -> bool {
    hako_cgroups::read_kernel_file(Path::new("/proc/self/uid_map"))
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false)
}
