//! hako's OCI runtime library.
//!
//! config.json becomes a [`Plan`] (pure data, unit-tested without root);
//! [`container`] is the public facade of the lifecycle verbs; the private
//! `init` and `steps` run the named steps in the container's first
//! process (README.md lists them).

// The public API: the lifecycle facade, the shared syscall layer, and the
// few types and helpers below. Every other module is private.
pub mod container;
pub mod os;

mod caps;
mod cgroup;
mod console;
mod criu;
mod defaults;
mod dmz;
mod error;
mod exec;
mod hooks;
mod init;
mod json;
pub mod log;
mod mounts;
mod paths;
mod plan;
mod process;
mod protect;
mod seccomp;
mod signal;
mod state;
mod steps;
mod sync;
mod sys;

pub use cgroup::parse_size;
pub use defaults::{example_spec, features, seccomp_enabled};
pub use error::{chain_message, Error, Result};
pub use json::from_slice as json_from_slice;
pub use mounts::ROOTFS_SUID_ANNOTATION;
pub use plan::{sysctl_namespace, NsKind, Plan};
pub use protect::{fix_own_name, reexec_protected, self_command, self_exe};
pub use signal::parse as parse_signal;
pub use state::now_rfc3339;
