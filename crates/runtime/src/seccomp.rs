//! Seccomp: the filter is compiled by the parent before clone; the init
//! only loads it, as its very last step before execve.

use std::io;

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{spec_err, Result};

/// A compiled filter ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    _private: (),
}

impl Filter {
    pub fn load(&self) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// Compile `linux.seccomp`. Until the seccomp compiler lands this refuses
/// the section instead of silently running without the filter.
pub fn compile(_spec: &LinuxSeccomp) -> Result<Filter> {
    Err(spec_err(
        "linux.seccomp",
        "seccomp filters are not supported by this build yet",
    ))
}
