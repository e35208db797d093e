//! Errors of this crate. Every variant that comes from the spec names the
//! `linux.seccomp` field it is about, so a user can find the line in
//! config.json without reading hako's source.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a `linux.seccomp` section could not be turned into a filter, or a
/// filter could not be handed to a seccomp agent.
///
/// Field paths (`field`) are relative to `linux.seccomp`, e.g.
/// `syscalls[3].names[0]`; `Display` prefixes `linux.seccomp.`.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // field names say what they hold; the messages are the docs
pub enum SeccompError {
    /// A syscall name is not known to libseccomp on any architecture.
    #[error("linux.seccomp.syscalls[{rule}].names[{name_idx}]: unknown syscall {name:?}")]
    UnknownSyscall {
        rule: usize,
        name_idx: usize,
        name: String,
    },

    /// A rule without any syscall name.
    #[error("linux.seccomp.syscalls[{rule}].names: empty; a rule must name at least one syscall")]
    EmptyNames { rule: usize },

    /// `errnoRet` / `defaultErrnoRet` given for an action that returns no errno.
    #[error(
        "linux.seccomp.{field}: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}"
    )]
    ErrnoRetNotAllowed { field: String, action: String },

    /// `errnoRet` / `defaultErrnoRet` does not fit the 16-bit SECCOMP_RET_DATA.
    #[error("linux.seccomp.{field}: {value} does not fit in the 16-bit seccomp return data")]
    ErrnoRetRange { field: String, value: u32 },

    /// Argument index past the six syscall arguments.
    #[error("linux.seccomp.{field}: argument index {index} out of range (syscalls have 6 arguments, 0..=5)")]
    ArgIndex { field: String, index: usize },

    /// An action that this runtime cannot honour in the given position.
    #[error("linux.seccomp.{field}: {action} not supported {reason}")]
    UnsupportedAction {
        field: String,
        action: String,
        reason: String,
    },

    /// `SCMP_ACT_NOTIFY` is used but there is nowhere to send the listener.
    #[error("linux.seccomp.listenerPath: required because {field} uses SCMP_ACT_NOTIFY")]
    MissingListenerPath { field: String },

    /// The architecture is not supported by the libseccomp this was built against.
    #[error("linux.seccomp.architectures[{idx}]: {arch} not supported by libseccomp: {source}")]
    Arch {
        idx: usize,
        arch: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// libseccomp rejected a step; `field` names the spec element being added.
    #[error("linux.seccomp.{field}: libseccomp {step}: {source}")]
    Libseccomp {
        field: String,
        step: &'static str,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// Exporting the BPF program out of libseccomp failed.
    #[error("linux.seccomp: export BPF program ({step}): {source}")]
    Export {
        step: &'static str,
        #[source]
        source: io::Error,
    },

    /// The program does not fit the kernel's BPF_MAXINSNS limit.
    #[error(
        "linux.seccomp: filter compiles to {len} BPF instructions, above the kernel limit of {max}"
    )]
    TooLarge { len: usize, max: usize },

    /// Bytes given to [`crate::CompiledFilter::from_bpf_bytes`] are not a BPF program.
    #[error("seccomp BPF program: {len} bytes is not a non-empty multiple of 8")]
    BadProgram { len: usize },

    /// Connecting to `linux.seccomp.listenerPath` failed.
    #[error("linux.seccomp.listenerPath: connect {path}: {source}", path = path.display())]
    ListenerConnect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Sending the listener fd and state to the seccomp agent failed.
    #[error("linux.seccomp.listenerPath: send seccomp listener to {path}: {source}", path = path.display())]
    ListenerSend {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A non-fatal finding while compiling, e.g. a syscall that does not exist on
/// any architecture in the filter and was therefore skipped. The runtime
/// should log these; they never change what the filter allows beyond what
/// the message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Field path relative to `linux.seccomp`, e.g. `syscalls[0].names[12]`.
    pub field: String,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux.seccomp.{}: {}", self.field, self.message)
    }
}
