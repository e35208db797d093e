//! Image layers for a container in a user namespace of its own (`--userns
//! auto`, `--userns HOSTID:SIZE`): the container's root is host id `uid`,
//! so the image's files (owned by host root) must show up owned by it.
//!
//! The way: idmapped mounts (`mount_setattr` with `MOUNT_ATTR_IDMAP`) of
//! each lower layer, through a user namespace with the container's map;
//! overlayfs takes idmapped layers (Linux 5.19) and keeps private clones of
//! them, so the idmapped mounts are detached once the overlay is mounted.
//! Where the layer's filesystem cannot be idmapped (tmpfs before 6.3, a
//! filesystem without support) the fallback is a copy of the layer with
//! every owner shifted by the map: the image flattened once per (image,
//! map) and shared, as the one lower layer, by every container with it.
//!
//! `mount_setattr` is called raw: rustix has open_tree and move_mount but
//! not mount_setattr.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{lchown, MetadataExt};
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};

/// The container's ids: container 0..size is host uid..uid+size (and
/// gid..gid+size for groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl IdMap {
    /// A host id of the image (0-based container id) on the host.
    fn shift(id: u32, base: u32, size: u32) -> u32 {
        if id < size {
            base + id
        } else {
            // Outside the map: the kernel's overflow id, as an idmapped
            // mount shows it.
            65534
        }
    }
}

/// How the image's owners become the owners on disk, so that the
/// container sees the image's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shift {
    /// The container's own namespace: container 0.. is host uid../gid..
    Range(IdMap),
    /// Rootless `keep-id`, in the user's namespace's ids: the container's
    /// ids below the user's own (`uid`, `gid`) are one higher there, the
    /// user's own id is 0 there, the rest are themselves.
    KeepId { uid: u32, gid: u32 },
}

impl Shift {
    pub fn uid(&self, id: u32) -> u32 {
        match *self {
            Shift::Range(m) => IdMap::shift(id, m.uid, m.size),
            Shift::KeepId { uid, .. } => keep(id, uid),
        }
    }
    pub fn gid(&self, id: u32) -> u32 {
        match *self {
            Shift::Range(m) => IdMap::shift(id, m.gid, m.size),
            Shift::KeepId { gid, .. } => keep(id, gid),
        }
    }
    /// A name for the shared copy made with it.
    pub fn key(&self) -> String {
        match self {
            Shift::Range(m) => format!("{}-{}-{}", m.uid, m.gid, m.size),
            Shift::KeepId { uid, gid } => format!("keep-{uid}-{gid}"),
        }
    }
}

fn keep(id: u32, own: u32) -> u32 {
    match id.cmp(&own) {
        std::cmp::Ordering::Less => id + 1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => id,
    }
}

/// A user namespace with `map`, held by an fd (its maker is gone).
pub fn userns_fd(map: &IdMap) -> io::Result<OwnedFd> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only calls async-signal-safe functions (unshare,
    // read, _exit) before it exits, so a multi-threaded parent is fine.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; the child reads until the parent closes `w`.
        unsafe {
            libc::close(w.as_raw_fd());
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(1);
            }
            let mut b = [0u8; 1];
            libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(r);
    let result = (|| {
        // The child unshares at once; its user namespace differs from ours
        // once it did.
        let ours = fs::metadata("/proc/self/ns/user")?.ino();
        let t0 = std::time::Instant::now();
        while fs::metadata(format!("/proc/{pid}/ns/user"))?.ino() == ours {
            if t0.elapsed() > std::time::Duration::from_secs(10) {
                return Err(io::Error::other(
                    "the id-map helper never made its namespace",
                ));
            }
            std::thread::yield_now();
        }
        fs::write(
            format!("/proc/{pid}/uid_map"),
            format!("0 {} {}\n", map.uid, map.size),
        )?;
        fs::write(
            format!("/proc/{pid}/gid_map"),
            format!("0 {} {}\n", map.gid, map.size),
        )?;
        let f = fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    drop(w);
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    result
}

/// Mount an idmapped clone of `src` on `target` (an empty directory).
pub fn mount_idmapped(src: &Path, userns: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        src,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: a valid fd, an empty C string with AT_EMPTY_PATH, and a
    // mount_attr of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Shift every owner under `root` (not following symlinks) by `map`:
/// the fallback's flattened copy of an image becomes the container's.
pub fn shift_owners(root: &Path, map: &Shift) -> io::Result<()> {
    let md = fs::symlink_metadata(root)?;
    lchown(root, Some(map.uid(md.uid())), Some(map.gid(md.gid())))?;
    // chown clears set-id bits: put the mode back (not on symlinks).
    if !md.file_type().is_symlink() {
        fs::set_permissions(
            root,
            std::os::unix::fs::PermissionsExt::from_mode(md.mode()),
        )?;
    }
    if md.is_dir() {
        for e in fs::read_dir(root)? {
            shift_owners(&e?.path(), map)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_shift_into_the_range_or_overflow() {
        assert_eq!(IdMap::shift(0, 200_000, 1024), 200_000);
        assert_eq!(IdMap::shift(33, 200_000, 1024), 200_033);
        assert_eq!(IdMap::shift(1024, 200_000, 1024), 65534);
        let k = Shift::KeepId {
            uid: 1000,
            gid: 100,
        };
        assert_eq!(
            (k.uid(0), k.uid(999), k.uid(1000), k.uid(1001)),
            (1, 1000, 0, 1001)
        );
        assert_eq!((k.gid(0), k.gid(100), k.gid(5000)), (1, 0, 5000));
    }
}
