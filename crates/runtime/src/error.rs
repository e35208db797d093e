//! Errors of the runtime library. Each variant names the thing that failed:
//! a spec field, a path, a container id, a syscall step.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bundle {path}: {cause}")]
    Bundle { path: PathBuf, cause: io::Error },

    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },

    /// A semantically invalid spec, caught while planning, before any side effect.
    #[error("config.json: {field}: {msg}")]
    Spec { field: String, msg: String },

    #[error("container id {0:?} is invalid: use letters, digits, '_', '-', '.', '+' (not starting with '.')")]
    InvalidId(String),

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    Exists(String),

    #[error("container {id:?} is {status}: {msg}")]
    BadState {
        id: String,
        status: String,
        msg: String,
    },

    // `cause`, not `source`: the message already carries it, and anyhow's
    // chain printing would repeat it.
    #[error("{step}: {cause}")]
    Io { step: String, cause: io::Error },

    /// The container's init reported a failure while setting itself up.
    #[error("{0}")]
    Init(String),

    #[error("hook {kind}[{idx}] {path}: {msg}")]
    Hook {
        kind: &'static str,
        idx: usize,
        path: PathBuf,
        msg: String,
    },

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a step description ("mount proc on /proc") to an io::Error.
pub trait Context<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| Error::Io {
            step: step(),
            cause,
        })
    }
}

pub fn spec_err(field: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::Spec {
        field: field.into(),
        msg: msg.into(),
    }
}
