//! The crate-wide error type. Every variant names the file or directory it
//! touched and, for writes, the value written, so an error read in a log says
//! exactly what the kernel refused (youki's `WrappedIoError` idea).

use std::io;
use std::path::PathBuf;

use crate::bpf::BpfError;
use crate::layout::LayoutError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a value of a validated plan; `restored` tells
    /// whether the values written before it were put back.
    #[error("{field}: {source}{}", if *restored { " (nothing was changed)" } else { " (earlier values could not all be restored)" })]
    Refused {
        field: String,
        restored: bool,
        source: Box<Error>,
    },

    #[error("write {value} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    #[error("read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("parse {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },

    #[error("create cgroup directory {}: {source}", path.display())]
    Mkdir { path: PathBuf, source: io::Error },

    #[error("remove cgroup directory {}: {source}", path.display())]
    Rmdir { path: PathBuf, source: io::Error },

    #[error("list cgroup directory {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },

    /// The spec asks for a resource whose controller is not mounted (v1) or
    /// not available on the unified hierarchy (v2).
    #[error("{field}: the {controller} controller is not available on this host ({detail})")]
    ControllerUnavailable {
        field: String,
        controller: &'static str,
        detail: String,
    },

    /// A file the spec needs does not exist in the container's cgroup.
    #[error("{field}: {} does not exist: {hint}", path.display())]
    MissingFile {
        field: String,
        path: PathBuf,
        hint: String,
    },

    /// `set` was called for a cgroup directory that `apply` has not created.
    #[error("cgroup directory {} does not exist (apply() must run before set())", path.display())]
    NotCreated { path: PathBuf },

    /// A value in `linux.resources` is out of range or malformed.
    #[error("linux.resources.{field}: {reason}")]
    InvalidResource { field: String, reason: String },

    #[error("annotations.{key}: {reason}")]
    InvalidAnnotation { key: String, reason: String },

    /// The systemd driver could not do what it needed over D-Bus.
    #[error("systemd: {what}: {reason}")]
    Systemd { what: String, reason: String },

    #[error("cgroupsPath {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: String },

    #[error("freezer: {} did not reach {want} within {waited_ms} ms (last seen: {last})", path.display())]
    FreezeTimeout {
        path: PathBuf,
        want: &'static str,
        waited_ms: u128,
        last: String,
    },

    #[error("send signal {signal} to pid {pid}: {source}")]
    Kill {
        pid: i32,
        signal: i32,
        source: nix::errno::Errno,
    },

    #[error("{what}: {source}")]
    Notify { what: String, source: io::Error },

    #[error(transparent)]
    Layout(#[from] LayoutError),

    #[error(transparent)]
    Bpf(#[from] BpfError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
