//! `commit`, `diff` and `export`: a container's root filesystem as a new
//! image, as a list of changes, or as a tar (Docker's verbs).

use std::io::Write;

use serde_json::{Map, Value};

use crate::dirs::Dirs;
use crate::record;
use crate::status::{status, Status};
use crate::{io_err, Error, Result};

/// `commit`'s options, as Docker's flags.
#[derive(Debug, Clone, Default)]
pub struct CommitArgs {
    pub author: Option<String>,
    pub message: Option<String>,
    pub changes: Vec<String>,
    /// Freeze a running container while its files are read (Docker's
    /// default), so the image is one moment of it.
    pub pause: bool,
}

/// The container's settings that go into the new image's config: its
/// environment and working directory as they run, its user, entrypoint,
/// command and labels (over the image's).
fn container_config(dirs: &Dirs, r: &record::Record, parent: &Value) -> Map<String, Value> {
    let mut c = Map::new();
    let spec: Value = std::fs::read(record::bundle(dirs, &r.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(env) = spec["process"]["env"].as_array() {
        c.insert("Env".into(), env.clone().into());
    }
    if let Some(cwd) = spec["process"]["cwd"].as_str() {
        c.insert("WorkingDir".into(), cwd.into());
    }
    if let Some(u) = &r.opts.user {
        c.insert("User".into(), u.clone().into());
    }
    if let Some(ep) = &r.opts.entrypoint {
        c.insert("Entrypoint".into(), vec![ep.clone()].into());
    }
    if !r.opts.cmd.is_empty() {
        c.insert("Cmd".into(), r.opts.cmd.clone().into());
    }
    let mut labels = parent["Labels"].as_object().cloned().unwrap_or_default();
    for l in &r.opts.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.into(), v.into());
    }
    if !labels.is_empty() {
        c.insert("Labels".into(), labels.into());
    }
    c
}

/// `commit CONTAINER [NAME]`: the container's changes as a new image on
/// top of its own; returns the image id.
pub fn commit(dirs: &Dirs, name: &str, image: Option<&str>, a: &CommitArgs) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let store = dirs.image_store()?;
    let parent = store.inspect(&r.image_id)?.config;
    let o = hako_image::diff::CommitOptions {
        config: container_config(dirs, &r, &parent),
        changes: a.changes.clone(),
        comment: a.message.clone(),
        author: a.author.clone(),
    };
    let freeze = a.pause && status(dirs, &r) == Status::Running;
    if freeze {
        super::pause(dirs, &id, true)?;
    }
    let made = store.commit_container(&id, &r.image_id, image, &o);
    if freeze {
        let _ = super::pause(dirs, &id, false);
    }
    let img = made?.to_string();
    crate::events::container(dirs, "commit", &r, &[("imageID", &img)]);
    Ok(img)
}

/// `diff CONTAINER`: Docker's `A path`, `C path`, `D path` lines.
pub fn diff(dirs: &Dirs, name: &str) -> Result<Vec<hako_image::diff::Change>> {
    let id = record::resolve(dirs, name)?;
    Ok(dirs.image_store()?.changes(&id)?)
}

/// `export CONTAINER`: its root filesystem as a tar (what `import` takes).
pub fn export(dirs: &Dirs, name: &str, out: impl Write) -> Result<()> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if r.rootfs.as_os_str().is_empty() {
        return Err(Error::State {
            id: r.name,
            msg: "has no root filesystem of its own to export".into(),
        });
    }
    dirs.image_store()?.remount_rootfs(&id)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", &r.rootfs)
        .and_then(|()| b.into_inner()?.flush())
        .map_err(io_err("export", &r.rootfs))
}
