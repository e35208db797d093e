//! hako's OCI runtime library.
//!
//! config.json becomes a [`plan::Plan`] (pure data, unit-tested without
//! root); [`container`] holds the lifecycle verbs; [`init`] is the ordered
//! executor that runs in the container's first process.

pub mod caps;
pub mod cgroup;
pub mod console;
pub mod container;
pub mod defaults;
pub mod dmz;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod json;
pub mod log;
pub mod mounts;
pub mod os;
pub mod paths;
pub mod plan;
mod process;
pub mod protect;
pub mod seccomp;
pub mod signal;
pub mod state;
mod steps;
pub mod sync;
mod sys;

pub use error::{Error, Result};
