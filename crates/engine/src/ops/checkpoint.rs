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

use std::path::PathBuf;
use std::time::Duration;

use hako_runtime::container;

use super::start::spawn_monitor;
use super::stop::wait_exit;
use crate::dirs::Dirs;
use crate::record::{self, Phase, Record};
use crate::status::{status, Status};
use crate::{Error, Result};

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
    record::update(dirs, &id, |r| {
        r.checkpointing = false;
        r.checkpointed_at = Some(crate::util::now_rfc3339_nanos());
    })?;
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
