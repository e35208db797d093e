//! Container root filesystems: an overlayfs mount over the image's unpacked
//! layers, or a plain copy where overlayfs cannot be mounted.
//!
//! ```text
//! containers/<id>/layers.json   layer digests in use (kept by gc)
//! containers/<id>/upper, work   overlay upper and work directories
//! containers/<id>/merged        the mount point, or the copy
//! ```

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::store::{check_container_id, io_err, remove_tree, Store, StoreError};
use crate::unpack::Whiteouts;

/// How the root filesystem was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay,
    Copy,
    /// Overlay over idmapped mounts of the layers.
    OverlayIdmapped,
    /// Overlay over a flattened copy of the image with shifted owners,
    /// shared by the containers with the same map.
    OverlayShiftedCopy,
    /// fuse-overlayfs (configured, or where the kernel's overlay refused).
    FuseOverlay,
}

impl RootfsKind {
    /// How `inspect` names it.
    pub fn describe(self) -> &'static str {
        match self {
            RootfsKind::Overlay => "overlay",
            RootfsKind::Copy => "copy",
            RootfsKind::OverlayIdmapped => "overlay on idmapped layers",
            RootfsKind::OverlayShiftedCopy => "overlay on a copy with shifted owners",
            RootfsKind::FuseOverlay => "fuse-overlayfs",
        }
    }
}

/// Options for [`Store::prepare_rootfs_with`].
#[derive(Clone, Debug, Default)]
pub struct RootfsOptions {
    /// Copy even if overlayfs would work.
    pub force_copy: bool,
    /// The container runs in a user namespace of its own with this map:
    /// its image must show up owned by the map's root (see
    /// [`crate::idmap`]).
    pub idmap: Option<crate::idmap::IdMap>,
    /// Rootless `--userns keep-id`: the user's own (uid, gid), which the
    /// container sees as itself (see [`crate::idmap::Shift::KeepId`]).
    pub keep_id: Option<(u32, u32)>,
    /// A FUSE overlay program (fuse-overlayfs) to mount with instead of the
    /// kernel's overlayfs (podman's `mount_program`).
    pub mount_program: Option<PathBuf>,
}

/// A prepared root filesystem. Not removed on drop: the container outlives
/// this value; call [`RootfsMount::unmount_and_remove`] (or
/// [`Store::remove_rootfs`] with the id) when the container is removed.
#[derive(Debug)]
#[must_use = "the rootfs stays mounted until unmount_and_remove"]
pub struct RootfsMount {
    container_id: String,
    dir: PathBuf,
    path: PathBuf,
    kind: RootfsKind,
}

impl RootfsMount {
    /// The root directory for the container.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn kind(&self) -> RootfsKind {
        self.kind
    }
    pub fn container_id(&self) -> &str {
        &self.container_id
    }
    /// Unmounts (if mounted) and deletes the container's directory,
    /// including its writable layer.
    pub fn unmount_and_remove(self) -> Result<(), StoreError> {
        remove_container_dir(&self.dir)
    }
}

/// A mount point has another device than its parent.
pub(crate) fn is_mount_point(dir: &Path, merged: &Path) -> bool {
    match (fs::symlink_metadata(merged), fs::symlink_metadata(dir)) {
        (Ok(m), Ok(d)) => m.dev() != d.dev(),
        (Err(e), _) if e.kind() == io::ErrorKind::NotFound => false,
        (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => false,
        // Unreadable (e.g. a dead mount): treat it as mounted.
        _ => true,
    }
}

fn remove_container_dir(dir: &Path) -> Result<(), StoreError> {
    let merged = dir.join("merged");
    // Asking first keeps unprivileged callers (whose copies were never
    // mounted) away from umount(2), which they may not call at all.
    let mounted = is_mount_point(dir, &merged);
    if mounted {
        match rustix::mount::unmount(&merged, UnmountFlags::NOFOLLOW) {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(Errno::BUSY) => {
                // Still in use by something we do not control: detach so
                // the directory can go; the kernel frees the mount when its
                // last user leaves.
                rustix::mount::unmount(&merged, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                    .map_err(|e| io_err("unmount", &merged)(e.into()))?;
            }
            Err(e) => return Err(io_err("unmount", &merged)(e.into())),
        }
    }
    match remove_tree(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err("remove container rootfs", dir)(e))
        }
        _ => Ok(()),
    }
}

impl Store {
    /// Prepares `container_id`'s root filesystem from `image`.
    pub fn prepare_rootfs(
        &self,
        image: &str,
        container_id: &str,
    ) -> Result<RootfsMount, StoreError> {
        self.prepare_rootfs_with(image, container_id, &RootfsOptions::default())
    }

    /// [`Store::prepare_rootfs`] with options.
    pub fn prepare_rootfs_with(
        &self,
        image: &str,
        container_id: &str,
        opts: &RootfsOptions,
    ) -> Result<RootfsMount, StoreError> {
        check_container_id(container_id)?;
        let _c = self.content_lock()?;
        let rec = self.resolve(image)?;
        let dir = self.containers_dir().join(container_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create container directory", &dir))?;
        let result = (|| {
            let hexes: Vec<String> = rec
                .layers
                .iter()
                .map(|l| l.blob.digest.hex().to_owned())
                .collect();
            let lj = dir.join("layers.json");
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&lj)
                .and_then(|mut f| {
                    io::Write::write_all(&mut f, &serde_json::to_vec(&hexes).expect("json"))
                })
                .map_err(io_err("write", &lj))?;
            let mut lowers = Vec::new();
            for l in &rec.layers {
                lowers.push(self.ensure_layer(l)?);
            }
            let merged = dir.join("merged");
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&merged)
                .map_err(io_err("create", &merged))?;
            let shift = match (opts.idmap, opts.keep_id) {
                (Some(m), _) => Some(crate::idmap::Shift::Range(m)),
                (None, Some((uid, gid))) => Some(crate::idmap::Shift::KeepId { uid, gid }),
                (None, None) => None,
            };
            if let Some(shift) = &shift {
                let kind = self.mount_for_map(&dir, &lowers, &hexes, shift)?;
                return Ok(RootfsMount {
                    container_id: container_id.to_owned(),
                    path: merged,
                    dir: dir.clone(),
                    kind,
                });
            }
            let kernel = match &opts.mount_program {
                Some(_) => Err("a mount program is configured".to_owned()),
                None if opts.force_copy => Err("copy requested".to_owned()),
                None => Ok(()),
            };
            let fuse = opts.mount_program.clone().or_else(|| {
                // Root of a user namespace (the rootless engine) where the
                // kernel's overlay is refused (before Linux 5.11):
                // fuse-overlayfs if it is there. Not for a plain
                // unprivileged caller: it could not unmount it again
                // (umount(2) needs the namespace's root; fusermount is
                // setuid and not ours to run).
                (!crate::unpack::in_initial_userns())
                    .then(|| PathBuf::from("/usr/bin/fuse-overlayfs"))
                    .filter(|p| p.is_file())
            });
            let reason = if let Err(why) = kernel {
                why
            } else {
                match mount_overlay(&dir, &lowers) {
                    Ok(()) => {
                        return Ok(RootfsMount {
                            container_id: container_id.to_owned(),
                            path: merged,
                            dir: dir.clone(),
                            kind: RootfsKind::Overlay,
                        })
                    }
                    Err(e) => e,
                }
            };
            if let (Some(prog), false) = (&fuse, opts.force_copy) {
                match mount_fuse(&dir, &lowers, prog) {
                    Ok(()) => {
                        if opts.mount_program.is_none() {
                            eprintln!(
                                "hako: not using overlayfs ({reason}); using {}",
                                prog.display()
                            );
                        }
                        return Ok(RootfsMount {
                            container_id: container_id.to_owned(),
                            path: merged,
                            dir: dir.clone(),
                            kind: RootfsKind::FuseOverlay,
                        });
                    }
                    Err(e) if opts.mount_program.is_some() => {
                        return Err(io_err("mount with", prog)(io::Error::other(e)))
                    }
                    Err(_) => {}
                }
            }
            eprintln!(
                "hako: not using overlayfs ({reason}); copying the image into {}",
                merged.display()
            );
            for l in &lowers {
                copy_layer(l, &merged)?;
            }
            Ok(RootfsMount {
                container_id: container_id.to_owned(),
                path: merged,
                dir: dir.clone(),
                kind: RootfsKind::Copy,
            })
        })();
        if result.is_err() {
            let _ = remove_container_dir(&dir);
        }
        result
    }

    /// Mounts an existing container's overlay again from its recorded
    /// layers (`layers.json`), keeping its upper directory (the
    /// container's changes): after a reboot, or anything else that
    /// unmounted it. Idempotent: a rootfs that is still mounted, or a
    /// copied one (no upper directory), is left as it is. Returns the
    /// root directory.
    pub fn remount_rootfs(&self, container_id: &str) -> Result<PathBuf, StoreError> {
        check_container_id(container_id)?;
        let dir = self.containers_dir().join(container_id);
        let merged = dir.join("merged");
        if is_mount_point(&dir, &merged) || !dir.join("upper").is_dir() {
            return Ok(merged);
        }
        // Shared: gc (exclusive) must not remove a layer while we mount it.
        let _c = self.content_lock()?;
        let lj = dir.join("layers.json");
        let b = fs::read(&lj).map_err(io_err("read", &lj))?;
        let hexes: Vec<String> =
            serde_json::from_slice(&b).map_err(|source| StoreError::Record {
                path: lj.clone(),
                source,
            })?;
        let mut lowers = Vec::new();
        for h in &hexes {
            let l = self.root().join("layers").join(h);
            if !l.is_dir() {
                return Err(io_err("find layer", &l)(io::Error::from(
                    io::ErrorKind::NotFound,
                )));
            }
            lowers.push(l);
        }
        if let Some(shift) = read_idmap(&dir)? {
            self.mount_for_map(&dir, &lowers, &hexes, &shift)?;
            return Ok(merged);
        }
        if let Ok(prog) = fs::read_link(dir.join("mount-program")) {
            mount_fuse(&dir, &lowers, &prog)
                .map_err(|e| io_err("remount", &merged)(io::Error::other(e)))?;
            return Ok(merged);
        }
        mount_overlay(&dir, &lowers)
            .map_err(|e| io_err("remount", &merged)(io::Error::other(e)))?;
        Ok(merged)
    }

    /// The highest uid and gid among an image's files: what a user
    /// namespace for it must map (`--userns auto` sizes it from this).
    pub fn max_ids(&self, image: &str) -> Result<(u32, u32), StoreError> {
        let _c = self.content_lock()?;
        let rec = self.resolve(image)?;
        fn walk(p: &Path, m: &mut (u32, u32)) -> io::Result<()> {
            let md = fs::symlink_metadata(p)?;
            m.0 = m.0.max(md.uid());
            m.1 = m.1.max(md.gid());
            if md.is_dir() {
                for e in fs::read_dir(p)? {
                    walk(&e?.path(), m)?;
                }
            }
            Ok(())
        }
        let mut m = (0, 0);
        for l in &rec.layers {
            let d = self.ensure_layer(l)?;
            walk(&d, &mut m).map_err(io_err("read layer", &d))?;
        }
        Ok(m)
    }

    /// The overlay of a container with its own id map: over idmapped
    /// mounts of the layers, else over the shared shifted copy. The map
    /// is kept in the container's directory (`idmap.json`) for a remount;
    /// the upper directory's root belongs to the map's root.
    fn mount_for_map(
        &self,
        dir: &Path,
        lowers: &[PathBuf],
        hexes: &[String],
        shift: &crate::idmap::Shift,
    ) -> Result<RootfsKind, StoreError> {
        let idf = dir.join("idmap.json");
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&idf)
            .and_then(|mut f| {
                io::Write::write_all(&mut f, &serde_json::to_vec(shift).expect("json"))
            })
            .map_err(io_err("write", &idf))?;
        for d in ["upper", "work"] {
            let p = dir.join(d);
            match fs::DirBuilder::new().mode(0o755).create(&p) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                r => r.map_err(io_err("create", &p))?,
            }
        }
        let upper = dir.join("upper");
        std::os::unix::fs::lchown(&upper, Some(shift.uid(0)), Some(shift.gid(0)))
            .map_err(io_err("chown", &upper))?;
        // keep-id's map is not one range: only a copy can make it.
        if let crate::idmap::Shift::Range(map) = shift {
            let why = match mount_idmapped_layers(dir, lowers, map) {
                Ok(()) => return Ok(RootfsKind::OverlayIdmapped),
                Err(why) => why,
            };
            eprintln!(
                "hako: no idmapped mounts here ({why}); using a copy of the image with shifted \
                 owners"
            );
        }
        let shared = self.shifted_copy(lowers, hexes, shift)?;
        mount_overlay(dir, &[shared])
            .map_err(|e| io_err("mount overlay", &dir.join("merged"))(io::Error::other(e)))?;
        Ok(RootfsKind::OverlayShiftedCopy)
    }

    /// The image flattened with owners shifted by `map`, made once:
    /// `idmapped/UID-GID-SIZE-IMAGE` in the store.
    fn shifted_copy(
        &self,
        lowers: &[PathBuf],
        hexes: &[String],
        shift: &crate::idmap::Shift,
    ) -> Result<PathBuf, StoreError> {
        let out = self.shifted_copy_path(hexes, shift);
        let base = self.root().join("idmapped");
        if out.is_dir() {
            return Ok(out);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(io_err("create", &base))?;
        let tmp = base.join(format!(".tmp-{}", std::process::id()));
        let _ = remove_tree(&tmp);
        fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
        let built = (|| {
            for l in lowers {
                copy_layer(l, &tmp)?;
            }
            crate::idmap::shift_owners(&tmp, shift).map_err(io_err("shift owners", &tmp))?;
            Ok::<(), StoreError>(())
        })();
        if let Err(e) = built {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        // Another container may have made it meanwhile: theirs is as good.
        if fs::rename(&tmp, &out).is_err() {
            let _ = remove_tree(&tmp);
        }
        Ok(out)
    }

    /// The ids of every root filesystem in the store.
    pub fn rootfs_ids(&self) -> Vec<String> {
        fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Removes a container's root filesystem by id (for a container whose
    /// [`RootfsMount`] value is gone, e.g. after an engine restart).
    pub fn remove_rootfs(&self, container_id: &str) -> Result<(), StoreError> {
        check_container_id(container_id)?;
        let dir = self.containers_dir().join(container_id);
        let shared = self.shared_copy_of(&dir);
        remove_container_dir(&dir)?;
        // The last container of a shifted copy takes it along.
        if let Some(copy) = shared {
            let _c = self.content_lock()?;
            let used = fs::read_dir(self.containers_dir())
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| self.shared_copy_of(&e.path()).as_ref() == Some(&copy));
            if !used {
                let _ = remove_tree(&copy);
            }
        }
        Ok(())
    }

    /// The shifted copy a container's overlay sits on, if it has one.
    fn shared_copy_of(&self, dir: &Path) -> Option<PathBuf> {
        let shift = read_idmap(dir).ok()??;
        let hexes: Vec<String> =
            serde_json::from_slice(&fs::read(dir.join("layers.json")).ok()?).ok()?;
        let p = self.shifted_copy_path(&hexes, &shift);
        p.is_dir().then_some(p)
    }

    fn shifted_copy_path(&self, hexes: &[String], shift: &crate::idmap::Shift) -> PathBuf {
        let key = crate::digest::Digest::of(hexes.join(",").as_bytes());
        self.root()
            .join("idmapped")
            .join(format!("{}-{}", shift.key(), &key.hex()[..16]))
    }
}

/// Mount the overlay with a FUSE program (fuse-overlayfs takes the
/// kernel's options and goes to the background once mounted); the program
/// is kept as the `mount-program` link for a remount.
fn mount_fuse(dir: &Path, lowers: &[PathBuf], prog: &Path) -> Result<(), String> {
    let out = std::process::Command::new(prog)
        .arg("-o")
        .arg(overlay_options(dir, lowers)?)
        .arg(dir.join("merged"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("run {}: {e}", prog.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            prog.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let link = dir.join("mount-program");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(prog, &link).map_err(|e| format!("{}: {e}", link.display()))
}

fn read_idmap(dir: &Path) -> Result<Option<crate::idmap::Shift>, StoreError> {
    let p = dir.join("idmap.json");
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| StoreError::Record { path: p, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &p)(e)),
    }
}

/// The overlay over idmapped mounts of `lowers` (under `dir/idmapped`,
/// detached again once the overlay holds its private clones of them).
fn mount_idmapped_layers(
    dir: &Path,
    lowers: &[PathBuf],
    map: &crate::idmap::IdMap,
) -> Result<(), String> {
    let ns =
        crate::idmap::userns_fd(map).map_err(|e| format!("a user namespace for the map: {e}"))?;
    let base = dir.join("idmapped");
    let _ = fs::create_dir(&base);
    let mut mounted = Vec::new();
    let mut result = Ok(());
    for (i, l) in lowers.iter().enumerate() {
        let t = base.join(i.to_string());
        let _ = fs::create_dir(&t);
        match crate::idmap::mount_idmapped(l, std::os::fd::AsFd::as_fd(&ns), &t) {
            Ok(()) => mounted.push(t),
            Err(e) => {
                let _ = fs::remove_dir(&t);
                result = Err(format!("idmap {}: {e}", l.display()));
                break;
            }
        }
    }
    if result.is_ok() {
        result = mount_overlay(dir, &mounted);
    }
    for t in &mounted {
        let _ = rustix::mount::unmount(t, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
        let _ = fs::remove_dir(t);
    }
    let _ = fs::remove_dir(&base);
    result
}

/// Flags of the overlay mount on the host.
pub(crate) const HOST_MOUNT_FLAGS: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

/// The overlay's options for the container directory `dir` (its upper and
/// work directories made, or kept on a remount): `lowerdir=…,upperdir=…,
/// workdir=…`, as the kernel and fuse-overlayfs both take them.
fn overlay_options(dir: &Path, lowers: &[PathBuf]) -> Result<String, String> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&upper, &work] {
        match fs::DirBuilder::new().mode(0o755).create(d) {
            // A remount keeps the existing upper (and work) directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            r => r.map_err(|e| format!("create {}: {e}", d.display()))?,
        }
    }
    // An image without layers (`FROM scratch` in a build): overlay needs
    // a lower directory, an empty one of the container's own.
    let empty = [dir.join("empty")];
    let lowers = if lowers.is_empty() {
        match fs::DirBuilder::new().mode(0o755).create(&empty[0]) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(format!("create {}: {e}", empty[0].display()))
            }
            _ => &empty[..],
        }
    } else {
        lowers
    };
    let all = lowers.iter().chain([&upper, &work]);
    for p in all {
        let b = p.as_os_str().as_bytes();
        if b.contains(&b',') || b.contains(&b':') {
            return Err(format!("path {} has ',' or ':'", p.display()));
        }
    }
    // Overlay lists lowerdirs top first; the image lists layers bottom first.
    let lower = lowers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    Ok(format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    ))
}

/// Mounts the overlay; on failure returns why, for the one-line notice.
fn mount_overlay(dir: &Path, lowers: &[PathBuf]) -> Result<(), String> {
    let mut data = overlay_options(dir, lowers)?;
    if Whiteouts::for_current_user() == Whiteouts::OverlayUserXattr {
        data.push_str(",userxattr");
    }
    if data.len() >= 4096 {
        return Err(format!(
            "{} layers do not fit in one mount(2) option page",
            lowers.len()
        ));
    }
    let data = CString::new(data).map_err(|_| "NUL in a path".to_owned())?;
    // The host's view of an image must not grant anything: a setuid binary
    // or a device node from a layer is harmless behind nosuid,nodev. The
    // runtime clears these in the container's own mount namespace.
    rustix::mount::mount(
        "overlay",
        dir.join("merged"),
        "overlay",
        HOST_MOUNT_FLAGS,
        data.as_c_str(),
    )
    .map_err(|e| format!("mount overlay: {e}"))
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|x| matches!(rustix::fs::lgetxattr(p, *x, &mut buf[..]), Ok(1) if buf[0] == b'y'))
}

fn remove_any(p: &Path) -> Result<(), StoreError> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_tree(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    };
    r.map_err(io_err("remove", p))
}

/// Applies one unpacked layer on top of `dst` the way overlayfs would
/// present it: whiteouts delete, opaque directories replace, the rest is
/// copied with owner, mode and times. Hardlinks within the layer are kept.
/// Only this crate's own layer directories and `dst` are read or written,
/// and a non-directory in `dst` is never descended through.
fn copy_layer(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), StoreError> {
    let root = rustix::process::geteuid().is_root();
    let devices = crate::unpack::privileged();
    for e in fs::read_dir(src).map_err(io_err("read layer directory", src))? {
        let e = e.map_err(io_err("read layer directory", src))?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let m = fs::symlink_metadata(&s).map_err(io_err("stat", &s))?;
        if is_whiteout(&m) {
            remove_any(&d)?;
            continue;
        }
        let existing = fs::symlink_metadata(&d).ok();
        if m.is_dir() {
            match existing {
                Some(x) if x.is_dir() && !is_opaque(&s) => {}
                Some(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d).map_err(io_err("create directory", &d))?;
                }
                None => fs::create_dir(&d).map_err(io_err("create directory", &d))?,
            }
            copy_dir(&s, &d, links)?;
            set_meta(&d, &m, root, true)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&d)?;
        }
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                fs::hard_link(first, &d).map_err(io_err("hardlink", &d))?;
                continue;
            }
            links.insert((m.dev(), m.ino()), d.clone());
        }
        let ft = m.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&s).map_err(io_err("read symlink", &s))?;
            std::os::unix::fs::symlink(&t, &d).map_err(io_err("create symlink", &d))?;
            set_meta(&d, &m, root, false)?;
        } else if ft.is_file() {
            fs::copy(&s, &d).map_err(io_err("copy", &d))?;
            set_meta(&d, &m, root, true)?;
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() && devices {
                FileType::CharacterDevice
            } else if ft.is_block_device() && devices {
                FileType::BlockDevice
            } else {
                continue; // sockets are not part of images
            };
            rustix::fs::mknodat(CWD, &d, kind, Mode::from_raw_mode(0o600), m.rdev())
                .map_err(|e| io_err("create node", &d)(e.into()))?;
            set_meta(&d, &m, root, true)?;
        }
    }
    Ok(())
}

fn set_meta(p: &Path, m: &fs::Metadata, root: bool, chmod: bool) -> Result<(), StoreError> {
    if root {
        rustix::fs::chownat(
            CWD,
            p,
            Some(rustix::fs::Uid::from_raw(m.uid())),
            Some(rustix::fs::Gid::from_raw(m.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err("chown", p)(e.into()))?;
    }
    if chmod {
        rustix::fs::chmodat(
            CWD,
            p,
            Mode::from_raw_mode(m.mode() & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| io_err("chmod", p)(e.into()))?;
    }
    let t = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let ts = Timestamps {
        last_access: t(m.atime(), m.atime_nsec()),
        last_modification: t(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("set times", p)(e.into()))
}
