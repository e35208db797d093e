//! A container's changes as an OCI layer, and back: its overlay upper
//! directory written as a layer tar (overlay whiteouts, the 0:0 character
//! devices and the opaque xattr, become `.wh.` entries), and such a layer
//! put into another container's upper directory (the unpacker turns them
//! back). The checkpoint archive (`container checkpoint --export`) carries
//! a container's root filesystem this way.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::store::{check_container_id, io_err, Store, StoreError};
use crate::unpack::{self, Whiteouts, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// An empty regular entry: a whiteout or the opaque marker.
fn marker(b: &mut tar::Builder<impl Write>, path: &Path) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, path, io::empty())
}

fn opaque(p: &Path) -> bool {
    [Whiteouts::Overlay, Whiteouts::OverlayUserXattr]
        .iter()
        .filter_map(|w| w.opaque_xattr())
        .any(|name| {
            let mut v = [0u8; 4];
            rustix::fs::lgetxattr(p, name, &mut v).is_ok_and(|n| &v[..n] == b"y")
        })
}

fn walk(b: &mut tar::Builder<impl Write>, root: &Path, rel: &Path) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let p = root.join(rel).join(&name);
        let r = rel.join(&name);
        let md = fs::symlink_metadata(&p)?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
            wh.push(&name);
            marker(b, &rel.join(wh))?;
            continue;
        }
        b.append_path_with_name(&p, &r)?;
        if md.is_dir() {
            if opaque(&p) {
                marker(b, &r.join(OPAQUE_MARKER))?;
            }
            walk(b, root, &r)?;
        }
    }
    Ok(())
}

impl Store {
    /// Writes the changes of `container_id` (its overlay upper directory)
    /// to `out` as an uncompressed OCI layer. Hard links are written as
    /// separate copies and extended attributes other than the overlay's
    /// are not kept.
    pub fn write_changes(&self, container_id: &str, out: impl Write) -> Result<(), StoreError> {
        check_container_id(container_id)?;
        let upper = self.containers_dir().join(container_id).join("upper");
        if !upper.is_dir() {
            return Err(io_err("read the changes of", &upper)(io::Error::other(
                "the container's root filesystem is a copy, not an overlay",
            )));
        }
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        walk(&mut b, &upper, Path::new(""))
            .and_then(|()| b.finish())
            .map_err(io_err("archive the changes in", &upper))
    }

    /// Puts `layer` (as [`Store::write_changes`] writes it) into the upper
    /// directory of `container_id`, a container made from the same image
    /// that has not run: its root filesystem then is the other one's.
    pub fn apply_changes(&self, container_id: &str, layer: impl Read) -> Result<(), StoreError> {
        check_container_id(container_id)?;
        let dir = self.containers_dir().join(container_id);
        let upper = dir.join("upper");
        let merged = dir.join("merged");
        if !upper.is_dir() {
            return Err(io_err("apply changes to", &upper)(io::Error::other(
                "the container's root filesystem is a copy, not an overlay",
            )));
        }
        // Never write under a mounted overlay's upper directory.
        if crate::rootfs::is_mount_point(&dir, &merged) {
            rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty())
                .map_err(|e| io_err("unmount", &merged)(e.into()))?;
        }
        let unpacked = unpack::unpack(layer, crate::manifest::media::OCI_LAYER, &upper);
        // Mounted again either way: the container stays usable (or
        // removable) as it was.
        let remounted = self.remount_rootfs(container_id);
        unpacked.map_err(|e| io_err("unpack changes into", &upper)(io::Error::other(e)))?;
        remounted.map(drop)
    }
}
