//! Volumes: directories the engine keeps apart from any container, as
//! Docker's `local` driver does. A volume is `volumes/<name>/_data` with
//! its metadata in `volumes/<name>/volume.json`. Named volumes live until
//! `volume rm`; anonymous ones (`-v /path`, a random name) go with their
//! container on `rm -v` and `run --rm`, and with `volume prune`.
//!
//! The names become directory names, so only Docker's volume names
//! (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) are accepted: nothing can reach outside
//! the volumes directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dirs::{self, Dirs};
use crate::record;
use crate::{io_err, util, Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /path`).
    #[serde(default)]
    pub anonymous: bool,
}

impl Volume {
    /// The directory containers mount.
    pub fn data(&self, dirs: &Dirs) -> PathBuf {
        dirs.volumes().join(&self.name).join("_data")
    }

    /// `volume inspect`'s object, in Docker's shape.
    pub fn inspect(&self, dirs: &Dirs) -> Value {
        json!({
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": self.labels,
            "Mountpoint": self.data(dirs),
            "Name": self.name,
            "Options": {},
            "Scope": "local",
            "Anonymous": self.anonymous,
        })
    }
}

/// Docker's rule for local volume names.
pub fn is_name(s: &str) -> bool {
    s.len() <= 255
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_name(name: &str) -> Result<()> {
    if is_name(name) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{name:?} is not a volume name: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

fn meta(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.volumes().join(name).join("volume.json")
}

fn load(dirs: &Dirs, name: &str) -> Option<Volume> {
    let text = std::fs::read(meta(dirs, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The volume `name`, made if it does not exist (`volume create`, and a
/// container's first use); the bool says whether it was made now.
pub fn ensure(
    dirs: &Dirs,
    name: &str,
    labels: &BTreeMap<String, String>,
    anonymous: bool,
) -> Result<(Volume, bool)> {
    check_name(name)?;
    let _l = record::lock(dirs)?;
    if let Some(v) = load(dirs, name) {
        return Ok((v, false));
    }
    // A volume from before the metadata file: keep it, named.
    let existed = dirs.volumes().join(name).join("_data").is_dir();
    let v = Volume {
        name: name.to_string(),
        created: util::now_rfc3339_nanos(),
        labels: labels.clone(),
        anonymous: anonymous && !existed,
    };
    dirs::mkdir_p(&v.data(dirs))?;
    if !existed {
        // The volume's root is the container's directory: 0755 as Docker
        // makes it, so a container user other than root can reach what
        // root made for it there (the volume's own directory above it
        // stays owner-only: no host user gets in).
        let d = v.data(dirs);
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(crate::io_err("chmod", &d))?;
    }
    let text = serde_json::to_vec_pretty(&v).expect("a volume serializes");
    util::atomic_write(&meta(dirs, name), &text)?;
    Ok((v, !existed))
}

pub fn get(dirs: &Dirs, name: &str) -> Result<Volume> {
    if !is_name(name) {
        return Err(Error::NoSuchVolume(name.to_string()));
    }
    load(dirs, name)
        .or_else(|| {
            // A volume from before the metadata file.
            dirs.volumes()
                .join(name)
                .join("_data")
                .is_dir()
                .then(|| Volume {
                    name: name.to_string(),
                    created: String::new(),
                    labels: BTreeMap::new(),
                    anonymous: false,
                })
        })
        .ok_or_else(|| Error::NoSuchVolume(name.to_string()))
}

/// Every volume, by name.
pub fn list(dirs: &Dirs) -> Vec<Volume> {
    let mut names: Vec<String> = std::fs::read_dir(dirs.volumes())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.iter().filter_map(|n| get(dirs, n).ok()).collect()
}

/// The volume names a container's `-v` options use.
pub fn names_in(volumes: &[String]) -> Vec<String> {
    volumes
        .iter()
        .filter_map(|v| crate::spec::parse_volume(v).ok())
        .filter(|(src, _, _, named)| *named && !src.is_empty())
        .map(|(src, ..)| src)
        .collect()
}

/// The names of the containers (any state) that use volume `name`.
pub fn users(dirs: &Dirs, name: &str) -> Vec<String> {
    record::scan(dirs)
        .0
        .into_iter()
        .filter(|r| names_in(&r.opts.volumes).iter().any(|n| n == name))
        .map(|r| r.name)
        .collect()
}

/// `volume rm`: a volume some container uses stays (as in Docker, also
/// with `--force`, which only makes a missing volume no error).
pub fn remove(dirs: &Dirs, name: &str, force: bool) -> Result<()> {
    let v = match get(dirs, name) {
        Ok(v) => v,
        Err(Error::NoSuchVolume(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let used = users(dirs, &v.name);
    if !used.is_empty() {
        return Err(Error::Usage(format!(
            "volume {name} is in use by container {}: remove the container first",
            used.join(", ")
        )));
    }
    let d = dirs.volumes().join(&v.name);
    std::fs::remove_dir_all(&d).map_err(io_err("remove", d))
}

/// `volume prune`: the unused anonymous volumes (with `all`, every unused
/// volume), as Docker 23+; returns their names.
pub fn prune(dirs: &Dirs, all: bool) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for v in list(dirs) {
        if (v.anonymous || all) && users(dirs, &v.name).is_empty() {
            remove(dirs, &v.name, true)?;
            gone.push(v.name);
        }
    }
    Ok(gone)
}

/// The anonymous volumes among a container's `-v` options (removed with
/// it by `rm -v` and `--rm`).
pub fn remove_anonymous(dirs: &Dirs, volumes: &[String]) {
    for n in names_in(volumes) {
        if get(dirs, &n).is_ok_and(|v| v.anonymous) {
            let _ = remove(dirs, &n, true);
        }
    }
}

/// Docker's copy-up: a volume that is new and empty gets what the image
/// has at the mount point (files, owners, modes). `dest` is resolved
/// inside `rootfs` (its symlinks cannot lead out of it).
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> Result<()> {
    use std::os::fd::AsFd;
    let empty = std::fs::read_dir(data)
        .map_err(io_err("read", data))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let root = hako_runtime::os::openat(None, rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io_err("open rootfs", rootfs))?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let Ok(src) = hako_runtime::os::open_in_root_flags(root.as_fd(), Path::new(dest), flags) else {
        // Nothing (or no directory) there in the image: nothing to copy.
        return Ok(());
    };
    hako_runtime::os::copy_tree(
        Path::new(&format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&src)
        )),
        data,
    )
    .map_err(io_err("copy the image's content into the volume", data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_docker_volume_names_are_names() {
        for ok in ["a", "data1", "my_vol.v2-x", "0"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in ["", "..", ".", "-a", "_a", "a/b", "../x", "a b", "é"] {
            assert!(!is_name(bad), "{bad}");
        }
        assert!(!is_name(&"a".repeat(256)));
    }

    #[test]
    fn names_in_takes_named_volumes_only() {
        let v = ["data:/d".to_string(), "/host:/h".into(), "x:/y:ro".into()];
        assert_eq!(names_in(&v), ["data", "x"]);
    }
}
