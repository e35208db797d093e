//! Seccomp, as crun does it: the filter is compiled by the parent before
//! clone (hako-seccomp, on libseccomp); the init only loads the ready BPF.
//!
//! When it is loaded: with noNewPrivileges, as the very last step before
//! execve, so none of the runtime's own steps run under it; without, before
//! capabilities are dropped, because loading then needs CAP_SYS_ADMIN (as
//! runc). A listener fd (SCMP_ACT_NOTIFY) goes to `listenerPath` with the
//! container process state, over a socket the parent connected.

use std::os::fd::{AsFd, BorrowedFd};

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};

pub use hako_seccomp::CompiledFilter as Filter;

/// Compile `linux.seccomp`, or read the program compiled for the same
/// filter before from `<root>/.seccomp` (hako_seccomp::compile_cached;
/// container ids never start with a dot). Warnings (e.g. a syscall
/// unknown on this architecture) go to the log when it is compiled.
pub fn compile(spec: &LinuxSeccomp, root: &std::path::Path) -> Result<Filter> {
    // hako-seccomp's messages already name the field (linux.seccomp.…).
    let f = hako_seccomp::compile_cached(spec, &root.join(".seccomp"))
        .map_err(|e| Error::Other(format!("config.json: {e}")))?;
    // runc skips such names silently; podman's profile has several, and
    // users would see them on every exec. Debug level only.
    for w in f.warnings() {
        crate::log::debug(&format!("linux.seccomp.{}: {}", w.field, w.message));
    }
    Ok(f)
}

/// Load the filter; hand a notify listener to the agent when there is one.
pub fn load(
    f: &Filter,
    listener_sock: Option<BorrowedFd<'_>>,
    process_state: impl FnOnce() -> Vec<u8>,
) -> Result<()> {
    let listener = f.load().map_err(|e| Error::Io {
        step: "load the seccomp filter".into(),
        cause: e,
    })?;
    if let Some(l) = listener {
        let sock = listener_sock.ok_or_else(|| {
            Error::Other(
                "seccomp notify listener but no linux.seccomp.listenerPath connection".into(),
            )
        })?;
        hako_seccomp::send_fd(sock, l.as_fd(), &process_state()).map_err(|e| Error::Io {
            step: "send the seccomp listener to linux.seccomp.listenerPath".into(),
            cause: e,
        })?;
    }
    Ok(())
}
