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

    /// A cgroup step failed; the cgroup error stays typed (the field, the
    /// file, the value) for callers that look into it.
    #[error("{}", in_context(step, &source.to_string()))]
    Cgroup {
        step: String,
        #[source]
        source: Box<hako_cgroups::Error>,
    },

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

/// One line for an error and its causes, each cause said once.
///
/// `{:#}` of an anyhow error appends every `source()`, but many of our
/// Display impls (thiserror's `"{what}: {source}"`) already print their
/// source, so the cause came out two or three times. A cause whose text is
/// already in the line is skipped.
/// `step: msg`, unless `msg` already names the step (no stutter such as
/// `linux.resources: linux.resources.memory.limit: …`).
pub fn in_context(step: &str, msg: &str) -> String {
    if step.is_empty() || msg.starts_with(step) {
        msg.to_string()
    } else {
        format!("{step}: {msg}")
    }
}

pub fn chain_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !s.is_empty() && !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = c.source();
    }
    msg
}

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

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("read env file {path}: {source}")]
    struct Repeats {
        path: String,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer step")]
    struct Silent {
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("create: {source}")]
    struct Nested {
        source: Repeats,
    }

    fn enoent() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOENT)
    }

    #[test]
    fn each_cause_once() {
        let cause = enoent().to_string();
        let e = Repeats {
            path: "/x".into(),
            source: enoent(),
        };
        let m = chain_message(&e);
        assert_eq!(m, format!("read env file /x: {cause}"));
        assert_eq!(m.matches(&cause).count(), 1);
        // Three levels that all print their source: still once.
        let n = Nested {
            source: Repeats {
                path: "/x".into(),
                source: enoent(),
            },
        };
        let m = chain_message(&n);
        assert_eq!(m, format!("create: read env file /x: {cause}"));
        // A Display that does not print its source gets it appended.
        let s = Silent { source: enoent() };
        assert_eq!(chain_message(&s), format!("outer step: {cause}"));
    }
}
