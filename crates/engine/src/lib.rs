//! hako's daemonless engine.
//!
//! - [`config`]: the settings file (`/etc/hako/hako.toml`);
//! - [`dirs`]: where state lives (root: /var/lib/hako + /run/hako; rootless:
//!   XDG dirs), overridable for tests;
//! - [`record`]: the engine's per-container record, names, id prefixes and
//!   the file lock that makes concurrent CLI calls safe;
//! - [`spec`]: image config + `run` flags → OCI config.json (pure);
//! - [`monitor`]: the per-container monitor (the same binary re-executed):
//!   holds the pipes or pty, writes JSON-lines logs, reaps, records the exit;
//! - [`ops`]: the verbs, one module each (run, start, stop, rm, ps, inspect, …);
//! - [`status`]: a container's state from its record, the runtime and /proc;
//! - [`network`]: attaching, connecting and disconnecting networks;
//! - [`teardown`]: what a container's end and its removal undo;
//! - [`initproc`]: the built-in `--init` (PID 1 that reaps and forwards);
//! - [`ns`]: namespace tools (`ns ls/keep/enter/rm`) and joining a container;
//! - [`util`]: flock, ids, time stamps, small syscalls.

pub mod attach;
pub mod build;
pub mod config;
pub mod dirs;
pub mod events;
pub mod health;
pub mod initproc;
pub mod limits;
pub mod monitor;
pub mod network;
pub mod ns;
pub mod ops;
pub mod portfwd;
pub mod record;
pub mod restart;
pub mod rootless;
pub mod spec;
pub mod status;
pub mod teardown;
pub mod tuning;
pub mod userns;
pub mod util;
pub mod volume;

use std::path::PathBuf;

pub use dirs::Dirs;
pub use hako_image;
pub use hako_net;
pub use record::{Limits, Record, RunOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("container name or id prefix {name:?} is ambiguous: {ids}")]
    Ambiguous { name: String, ids: String },
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("container {id}: {msg}")]
    State { id: String, msg: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Runtime(#[from] hako_runtime::Error),
    #[error(transparent)]
    Image(#[from] hako_image::StoreError),
    #[error(transparent)]
    Import(#[from] hako_image::ImportError),
    #[error(transparent)]
    Pull(#[from] hako_image::PullError),
    #[error(transparent)]
    Net(#[from] hako_net::NetError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the path and the verb to an io::Error.
pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}
