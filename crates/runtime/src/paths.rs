//! Path operations that cannot leave the container's rootfs.
//!
//! Every lookup goes through openat2(2) with RESOLVE_IN_ROOT, so `..` and
//! symlinks (absolute or relative) are resolved as if the rootfs were `/`.
//! Written by hand rather than with the `pathrs` crate: the runtime needs
//! three operations (open, mkdir -p, create a file), each one syscall loop
//! here, and keeping them in-tree keeps the start path small.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::sys;

const IN_ROOT: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;

fn rel(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Open `path` inside `root` as an O_PATH fd (symlinks followed, scoped).
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    sys::openat2(root, &rel(path), libc::O_PATH, 0, IN_ROOT)
}

/// Open `path` inside `root` with `flags` (e.g. O_WRONLY for /proc files).
pub fn open_in_root_flags(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    sys::openat2(root, &rel(path), flags, 0, IN_ROOT)
}

/// `mkdir -p` inside `root`; returns an O_PATH fd of the final directory.
/// A dangling symlink on the way is followed (inside the root) and its
/// target created, as `mkdir -p` through a symlink would.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    mkdir_all_depth(root, path, mode, 0)
}

fn mkdir_all_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: u32,
    depth: u32,
) -> io::Result<OwnedFd> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let r = rel(path);
    match sys::openat2(root, &r, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    // Most mount points lack only their last component (the hierarchies
    // under /sys/fs/cgroup, /dev/pts, /dev/shm): make it in its parent
    // rather than walking every component from the root again (a start made
    // ~60 lookups fewer this way). A parent that is missing too, or a name
    // that exists (a dangling symlink), takes the walk below.
    if let (Some(parent), Some(name)) = (r.parent(), r.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = sys::openat2(root, parent, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT) {
            if sys::mkdirat(dir.as_fd(), Path::new(name), mode).is_ok() {
                return sys::openat2(root, &r, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT);
            }
        }
    }
    let mut cur = sys::openat2(
        root,
        Path::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        IN_ROOT,
    )?;
    let mut so_far = PathBuf::new();
    for c in r.components() {
        let Component::Normal(name) = c else { continue };
        so_far.push(name);
        let next = match sys::openat2(root, &so_far, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // mkdirat does not follow a final symlink; a dangling symlink
                // here gives EEXIST and the next lookup resolves it in root.
                match sys::mkdirat(cur.as_fd(), Path::new(name), mode) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        // A dangling symlink: create its target, in the root.
                        if let Ok(t) = readlinkat(cur.as_fd(), Path::new(name)) {
                            let parent = so_far.parent().unwrap_or(Path::new(""));
                            let target = if t.is_absolute() {
                                t
                            } else {
                                Path::new("/").join(parent).join(t)
                            };
                            mkdir_all_depth(root, &target, mode, depth + 1)?;
                        }
                    }
                    Err(e) => return Err(e),
                }
                sys::openat2(root, &so_far, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT)?
            }
            Err(e) => return Err(e),
        };
        cur = next;
    }
    Ok(cur)
}

fn readlinkat(dir: BorrowedFd<'_>, name: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let c = sys::cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid dirfd, C string and buffer of the length passed.
    let n = unsafe {
        libc::readlinkat(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// Make sure a regular file exists at `path` in `root` (creating parents)
/// and return an O_PATH fd to it; used as a bind-mount target for files.
pub fn ensure_file_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    // Reopen the parent as a real directory fd to create in it.
    let dirfd = sys::openat(
        Some(dir.as_fd()),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )?;
    match sys::openat(
        Some(dirfd.as_fd()),
        Path::new(name),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o644,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_in_root(root, path)
}

/// Create `path` in `root` as a fresh empty regular file, replacing a
/// symlink or anything else already there (never following it), and return
/// an O_PATH fd of it. For targets that must be exactly what we made, like
/// /dev/console (CVE-2025-52565: a symlink there redirected the bind).
pub fn fresh_file_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = Path::new(
        path.file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?,
    );
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    let dirfd = dir_fd(dir.as_fd())?;
    let c = sys::cstr(name)?;
    // SAFETY: unlinkat on a valid dirfd and C string; ENOENT is fine.
    unsafe {
        libc::unlinkat(std::os::fd::AsRawFd::as_raw_fd(&dirfd), c.as_ptr(), 0);
    }
    sys::openat(
        Some(dirfd.as_fd()),
        name,
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
    )?;
    let fd = sys::openat(
        Some(dirfd.as_fd()),
        name,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )?;
    let st = sys::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::other("not the regular file just created"));
    }
    Ok(fd)
}

/// Read the regular file `path` inside the directory `root`, at most
/// `max_bytes` bytes, for a caller outside the container (the engine
/// reading an image's /etc/passwd). Symlinks resolve inside `root`; a FIFO,
/// device, socket or directory is refused without being opened for
/// reading (so a FIFO cannot block and /dev/zero cannot be read), and a
/// file larger than `max_bytes` is an error rather than a huge read.
pub fn read_file_in_root(root: &Path, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let rootfd = sys::openat(
        None,
        root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    // Look first (O_PATH opens nothing), then open for reading and check
    // that it is still the same regular file.
    let probe = open_in_root(rootfd.as_fd(), path)?;
    let st = sys::fstat(probe.as_fd())?;
    regular(&st)?;
    let fd = open_in_root_flags(
        rootfd.as_fd(),
        path,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
    )?;
    let st2 = sys::fstat(fd.as_fd())?;
    regular(&st2)?;
    if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) {
        return Err(io::Error::other("file changed while being opened"));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        )
    };
    if st2.st_size as u64 > max_bytes {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(st2.st_size as usize);
    std::fs::File::from(fd)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(buf)
}

fn regular(st: &libc::stat) -> io::Result<()> {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({kind})"),
    ))
}

/// Open a directory fd (not O_PATH) for `*at` calls that need one.
pub fn dir_fd(opath: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    sys::openat(
        Some(opath),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // A symlink pointing at the host's /tmp must resolve inside root.
        symlink("/outside", root.join("link")).unwrap();
        let rootfd = sys::openat(None, &root, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/link/sub"), 0o755).unwrap();
        assert!(root.join("outside/sub").is_dir());
        assert!(!Path::new("/outside").exists());
        // `..` cannot climb out either.
        ensure_file_in_root(rootfd.as_fd(), Path::new("/../../../escape-file")).unwrap();
        assert!(root.join("escape-file").is_file());
    }

    #[test]
    fn mkdir_all_makes_a_last_component_or_walks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sys/fs/cgroup")).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink("/real", root.join("parent-link")).unwrap();
        symlink("/made-by-link", root.join("sys/dangling")).unwrap();
        let rootfd = sys::openat(None, &root, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        let mk = |p: &str| mkdir_all_in_root(rootfd.as_fd(), Path::new(p), 0o755).unwrap();
        // Only the last component missing; a top-level name; one that exists.
        mk("/sys/fs/cgroup/cpu");
        mk("top");
        mk("/sys/fs");
        assert!(root.join("sys/fs/cgroup/cpu").is_dir() && root.join("top").is_dir());
        // A parent that is a symlink resolves inside the root.
        mk("/parent-link/leaf");
        assert!(root.join("real/leaf").is_dir());
        // A dangling symlink as the last component: its target, in the root.
        mk("/sys/dangling");
        assert!(root.join("made-by-link").is_dir());
        assert!(!Path::new("/made-by-link").exists());
        // Several components missing.
        mk("/a/b/c");
        assert!(root.join("a/b/c").is_dir());
    }

    #[test]
    fn read_file_in_root_refuses_escapes_and_specials() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = t.path().join("secret");
        std::fs::write(&outside, "host-secret\n").unwrap();
        std::fs::write(root.join("etc/ok"), "fine\n").unwrap();
        let r = |p: &str, max| read_file_in_root(&root, Path::new(p), max);
        assert_eq!(r("/etc/ok", 100).unwrap(), b"fine\n");
        assert_eq!(r("etc/ok", 100).unwrap(), b"fine\n");
        // Too big: an error, not a truncated read.
        let e = r("/etc/ok", 3).unwrap_err();
        assert!(e.to_string().contains("larger than 3 bytes"), "{e}");
        // An absolute symlink to a host file resolves inside the root.
        symlink(&outside, root.join("etc/abs")).unwrap();
        assert_eq!(
            r("/etc/abs", 100).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        symlink("../../secret", root.join("etc/rel")).unwrap();
        assert_eq!(
            r("/etc/rel", 100).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // /dev/zero via a symlink: not found in the root; a FIFO: refused
        // at once (no blocking open), a directory: refused.
        symlink("/dev/zero", root.join("etc/zero")).unwrap();
        assert!(r("/etc/zero", 100).is_err());
        let fifo = sys::cstr(root.join("etc/fifo")).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let e = r("/etc/fifo", 100).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = r("/etc", 100).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }
}
