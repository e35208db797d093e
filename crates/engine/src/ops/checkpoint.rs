//! `container checkpoint` and `container restore`: CRIU through the
//! runtime, as podman's verbs of the same names.
//!
//! The checkpoint's images live in the container's directory
//! (`checkpoint/`). The container's network namespace is checkpointed
//! empty (runc's `--empty-ns network`): its veth, address and port rules
//! belong to the engine, which releases them when the checkpoint ends the
//! container and attaches the network again, inside the namespace CRIU
//! makes, before any restored task runs. The monitor is told through the
//! record: `checkpointing` makes the init's end the checkpoint's (exit
//! code 0, no `--rm`), `restoring` makes the next monitor restore instead
//! of create.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hako_runtime::container;

use super::start::spawn_monitor;
use super::stop::wait_exit;
use crate::dirs::Dirs;
use crate::record::{self, Phase, Record, RunOptions};
use crate::status::{status, Status};
use crate::{io_err, Error, Result};

/// Where a container's checkpoint images are.
pub fn image_dir(dirs: &Dirs, id: &str) -> PathBuf {
    dirs.container(id).join("checkpoint")
}

/// Does the container have a network namespace the engine sets up?
pub fn engine_network(r: &Record) -> bool {
    let mode = r.opts.network.as_deref().unwrap_or("bridge");
    !mode.starts_with("host") && !mode.starts_with("container:") && !mode.starts_with("ns:")
}

fn need_root(verb: &str) -> Result<()> {
    if crate::dirs::rootless() {
        return Err(Error::Usage(format!(
            "container {verb} needs root: CRIU cannot checkpoint or restore without it"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Leave the container running after the checkpoint.
    pub leave_running: bool,
    /// Checkpoint open TCP connections.
    pub tcp_established: bool,
    /// Also write the checkpoint, the container's settings and its root
    /// filesystem's changes to this archive (podman's `--export`), for
    /// `container restore --import` here or on another host.
    pub export: Option<PathBuf>,
}

/// Checkpoint a running container; unless `leave_running` it then shows
/// as exited, with a checkpoint to restore.
pub fn checkpoint(dirs: &Dirs, name: &str, o: &CheckpointOptions) -> Result<String> {
    need_root("checkpoint")?;
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if !matches!(status(dirs, &r), Status::Running | Status::Paused) {
        return Err(Error::State {
            id: r.name,
            msg: "is not running: only a running container can be checkpointed".into(),
        });
    }
    let images = image_dir(dirs, &id);
    let _ = std::fs::remove_dir_all(&images);
    record::update(dirs, &id, |r| r.checkpointing = !o.leave_running)?;
    let done = container::checkpoint(&container::CheckpointOpts {
        root: dirs.runtime_root(),
        id: id.clone(),
        image_path: images.clone(),
        leave_running: o.leave_running,
        tcp_established: o.tcp_established,
        empty_network: engine_network(&r),
        ..Default::default()
    });
    if let Err(e) = done {
        let _ = record::update(dirs, &id, |r| r.checkpointing = false);
        let _ = std::fs::remove_dir_all(&images);
        return Err(e.into());
    }
    if !o.leave_running {
        // The monitor records the end (and releases the network).
        wait_exit(dirs, &id, Duration::from_secs(30));
    }
    let r = record::update(dirs, &id, |r| {
        r.checkpointing = false;
        r.checkpointed_at = Some(crate::util::now_rfc3339_nanos());
    })?;
    crate::events::container(dirs, "checkpoint", &r, &[]);
    if let Some(file) = &o.export {
        let r = record::load(dirs, &id)?;
        if let Err(e) = export(dirs, &r, file) {
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
    }
    Ok(id)
}

/// The archive's description of the container.
const ARCHIVE_CONFIG: &str = "hako-checkpoint.json";
/// The container's root filesystem changes, an OCI layer.
const ARCHIVE_ROOTFS: &str = "rootfs-diff.tar";

/// Writes the checkpoint archive: a tar of the container's settings, its
/// checkpoint images and its root filesystem's changes.
fn export(dirs: &Dirs, r: &Record, file: &Path) -> Result<()> {
    let store = dirs.image_store()?;
    let diff = dirs.container(&r.id).join(ARCHIVE_ROOTFS);
    let f = File::create(&diff).map_err(io_err("create", &diff))?;
    let written = store.write_changes(&r.id, BufWriter::new(f));
    let result = written.map_err(Error::from).and_then(|()| {
        let config = serde_json::to_vec_pretty(&serde_json::json!({
            "version": 1,
            "name": r.name,
            "image": r.image,
            "imageId": r.image_id,
            "checkpointedAt": r.checkpointed_at,
            "options": r.opts,
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        let out = File::create(file).map_err(io_err("create", file))?;
        let mut b = tar::Builder::new(BufWriter::new(out));
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        hako_image::save::append_bytes(&mut b, ARCHIVE_CONFIG, &config)
            .and_then(|()| b.append_dir_all("checkpoint", image_dir(dirs, &r.id)))
            .and_then(|()| b.append_path_with_name(&diff, ARCHIVE_ROOTFS))
            .and_then(|()| b.into_inner()?.flush())
            .map_err(io_err("write", file))
    });
    let _ = std::fs::remove_file(&diff);
    result
}

/// A directory removed with what is in it when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `container restore --import FILE [--name NAME]`: a new container from
/// a checkpoint archive (same image, settings and root filesystem), then
/// restored. Its name is the exported one unless `name` is given; the
/// image must be here. Anything of it is removed if a step fails.
pub fn import(dirs: &Dirs, file: &Path, name: Option<&str>) -> Result<String> {
    need_root("restore")?;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tmp = TempDir(dirs.data.join(format!(
        "checkpoint-import.{}.{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )));
    crate::dirs::mkdir_p(&tmp.0)?;
    let f = File::open(file).map_err(io_err("open", file))?;
    let r = hako_image::import::decompressed(BufReader::new(f)).map_err(io_err("read", file))?;
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_preserve_ownerships(true);
    a.unpack(&tmp.0).map_err(io_err("unpack", file))?;
    let bad = |why: &str| {
        Error::Usage(format!(
            "{} is not a hako checkpoint archive: {why}",
            file.display()
        ))
    };
    let config: serde_json::Value = std::fs::read(tmp.0.join(ARCHIVE_CONFIG))
        .map_err(|_| bad(&format!("no {ARCHIVE_CONFIG}")))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(&e.to_string())))?;
    if config["version"] != 1 {
        return Err(bad("unknown version"));
    }
    let mut opts: RunOptions = serde_json::from_value(config["options"].clone())
        .map_err(|e| bad(&format!("options: {e}")))?;
    if !tmp.0.join("checkpoint/descriptors.json").exists() {
        return Err(bad("no checkpoint images"));
    }
    opts.name = Some(match name {
        Some(n) => n.to_string(),
        None => config["name"].as_str().unwrap_or_default().to_string(),
    });
    // The image the checkpoint was taken from: here already, never pulled.
    if let Some(image) = config["imageId"].as_str().filter(|s| !s.is_empty()) {
        opts.image = image.to_string();
    }
    opts.pull = Some("never".into());
    opts.detach = true;
    let id = super::create(dirs, &opts)?;
    let made = (|| -> Result<()> {
        let diff = tmp.0.join(ARCHIVE_ROOTFS);
        let layer = File::open(&diff).map_err(io_err("open", &diff))?;
        dirs.image_store()?
            .apply_changes(&id, BufReader::new(layer))?;
        let images = image_dir(dirs, &id);
        std::fs::rename(tmp.0.join("checkpoint"), &images).map_err(io_err("move", &images))?;
        record::update(dirs, &id, |r| {
            r.checkpointed_at = config["checkpointedAt"].as_str().map(str::to_string);
        })?;
        restore(dirs, &id).map(drop)
    })();
    if let Err(e) = made {
        let _ = super::rm(dirs, &id, true, true);
        return Err(e);
    }
    Ok(id)
}

/// Restore a checkpointed container (exited, with a checkpoint) and start
/// its monitor; the container runs on from where it was checkpointed.
pub fn restore(dirs: &Dirs, name: &str) -> Result<String> {
    need_root("restore")?;
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if status(dirs, &r).is_live() {
        return Err(Error::State {
            id: r.name,
            msg: "is running: stop it (or checkpoint it) before a restore".into(),
        });
    }
    if r.checkpointed_at.is_none() || !image_dir(dirs, &id).join("descriptors.json").exists() {
        return Err(Error::State {
            id: r.name,
            msg: "has no checkpoint to restore (hako container checkpoint makes one)".into(),
        });
    }
    if r.phase == Phase::Running {
        wait_exit(dirs, &id, Duration::from_secs(10));
    }
    if !r.rootfs.as_os_str().is_empty() {
        dirs.image_store()?.remount_rootfs(&id)?;
    }
    record::update(dirs, &id, |r| r.restoring = true)?;
    let started = spawn_monitor(dirs, &id);
    let _ = record::update(dirs, &id, |r| r.restoring = false);
    started?;
    Ok(id)
}
