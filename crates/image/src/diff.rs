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
    crate::save::append_bytes(b, path, &[])
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

/// The entry's extended attributes for the layer: all but overlayfs's
/// own (`trusted.overlay.*`, `user.overlay.*`), file capabilities
/// (`security.capability`) included.
fn xattrs(p: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Ok(n) => n,
        // A filesystem without xattrs (or none to list).
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            let need = rustix::fs::llistxattr(p, &mut [0u8; 0][..])?;
            names.resize(need, 0);
            rustix::fs::llistxattr(p, &mut names[..])?
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|x| !x.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..])?;
        v.truncate(len);
        out.push((name, v));
    }
    Ok(out)
}

/// One PAX record, `LEN key=value\n` (LEN counts itself).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A PAX extended header carrying `xattrs` for the entry that follows
/// (tar 0.4 reads these but has no writer for them).
fn append_xattrs(b: &mut tar::Builder<impl Write>, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    let data: Vec<u8> = xattrs
        .iter()
        .flat_map(|(k, v)| pax_record(&format!("SCHILY.xattr.{k}"), v))
        .collect();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/xattrs")?;
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..])
}

/// Hard links seen: (device, inode) of a file with several links → the
/// first path it was written under.
type Links = std::collections::HashMap<(u64, u64), std::path::PathBuf>;

fn walk(
    b: &mut tar::Builder<impl Write>,
    root: &Path,
    rel: &Path,
    links: &mut Links,
) -> io::Result<()> {
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
        if md.is_file() && md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &r, first)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), r.clone());
        }
        let x = xattrs(&p)?;
        if !x.is_empty() {
            append_xattrs(b, &x)?;
        }
        b.append_path_with_name(&p, &r)?;
        if md.is_dir() {
            if opaque(&p) {
                marker(b, &r.join(OPAQUE_MARKER))?;
            }
            walk(b, root, &r, links)?;
        }
    }
    Ok(())
}

impl Store {
    /// Writes the changes of `container_id` (its overlay upper directory)
    /// to `out` as an uncompressed OCI layer: hard links as links, and
    /// extended attributes (file capabilities too) but overlayfs's own as
    /// PAX records, times as they are.
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
        walk(&mut b, &upper, Path::new(""), &mut Links::new())
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

/// What `hako commit` puts in the new image besides the changes.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// The container's settings that override the parent image's config
    /// (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `Labels`, …).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Dockerfile instructions applied last (`commit --change`).
    pub changes: Vec<String>,
    /// The history entry's comment (`--message`) and the author.
    pub comment: Option<String>,
    pub author: Option<String>,
}

/// One line of `hako diff`: Docker's kinds, `A`dded, `C`hanged, `D`eleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: char,
    pub path: String,
}

impl Store {
    /// What `container_id` changed in its image's files (`hako diff`),
    /// from its overlay upper directory: whiteouts are deletions, entries
    /// the image has are changes, the others additions; sorted by path.
    pub fn changes(&self, container_id: &str) -> Result<Vec<Change>, StoreError> {
        check_container_id(container_id)?;
        let dir = self.containers_dir().join(container_id);
        let upper = dir.join("upper");
        if !upper.is_dir() {
            return Err(io_err("read the changes of", &upper)(io::Error::other(
                "the container's root filesystem is a copy, not an overlay",
            )));
        }
        let lj = dir.join("layers.json");
        let hexes: Vec<String> = serde_json::from_slice(
            &fs::read(&lj).map_err(io_err("read", &lj))?,
        )
        .map_err(|source| StoreError::Record {
            path: lj.clone(),
            source,
        })?;
        let lowers: Vec<_> = hexes
            .iter()
            .map(|h| self.root().join("layers").join(h))
            .collect();
        let mut out = Vec::new();
        list_changes(&upper, Path::new("/"), &lowers, &mut out)
            .map_err(io_err("read the changes in", &upper))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn list_changes(
    dir: &Path,
    rel: &Path,
    lowers: &[std::path::PathBuf],
    out: &mut Vec<Change>,
) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let r = rel.join(e.file_name());
        let md = fs::symlink_metadata(&p)?;
        let in_image = lowers
            .iter()
            .any(|l| fs::symlink_metadata(l.join(r.strip_prefix("/").unwrap_or(&r))).is_ok());
        let kind = if md.file_type().is_char_device() && md.rdev() == 0 {
            'D'
        } else if in_image {
            'C'
        } else {
            'A'
        };
        out.push(Change {
            kind,
            path: r.display().to_string(),
        });
        if md.is_dir() {
            list_changes(&p, &r, lowers, out)?;
        }
    }
    Ok(())
}

/// Bytes of the regular files under `p` (0 if it cannot be read).
pub fn tree_size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

impl Store {
    /// Bytes of the files `container_id` wrote (its overlay upper
    /// directory; 0 for a copied rootfs or none): `ps --size`'s SizeRw.
    pub fn changes_size(&self, container_id: &str) -> u64 {
        if check_container_id(container_id).is_err() {
            return 0;
        }
        tree_size(&self.containers_dir().join(container_id).join("upper"))
    }
}
