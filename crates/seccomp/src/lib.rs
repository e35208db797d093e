//! OCI `linux.seccomp` -> seccomp BPF, and hako's default profile as data.
//!
//! # Where each half runs
//!
//! - [`compile`] runs in the runtime **parent, before clone** (crun:
//!   "compiled by the parent while the child waits"): it validates the spec,
//!   drives libseccomp, and returns a [`CompiledFilter`]: the BPF program
//!   plus the exact `seccomp(2)` flags. A bad spec fails here, with nothing
//!   to undo.
//! - [`CompiledFilter::load`] runs in the container **child, last thing
//!   before `execve`** (after `PR_SET_NO_NEW_PRIVS`): one raw
//!   `seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog)` call, no
//!   allocation, no libseccomp, safe after fork.
//! - With `SCMP_ACT_NOTIFY`, `load` returns the listener fd; the child hands
//!   it to the parent ([`send_fd`] on the sync socket, [`recv_fd`] in the
//!   parent), and the parent forwards it to the agent at `listenerPath`
//!   with [`send_listener`] and [`process_state_json`].
//!
//! # Why libseccomp and not seccompiler
//!
//! The OCI schema is libseccomp's vocabulary (`SCMP_ACT_*`, `SCMP_CMP_*`,
//! `SCMP_ARCH_*`), and runc, crun and youki all compile it with libseccomp.
//! Using the same library gives the same answers for the hard parts:
//! syscall name tables for every architecture (including multiplexed
//! `socketcall`/`ipc` on i386 and pseudo-syscall numbers), multi-arch
//! filters (x86_64 + x86 + x32 in one program), 64-bit argument
//! comparisons on 32-bit arches, `SCMP_CMP_MASKED_EQ`, and every action
//! including `SCMP_ACT_NOTIFY`, `SCMP_ACT_LOG`, `SCMP_ACT_TRACE` and errno
//! defaults. Firecracker's `seccompiler` is pure Rust and pleasant, but it
//! targets one architecture per filter, has no user notification, and its
//! JSON dialect is not OCI's; re-implementing the rest on top of it would
//! be a second, less-tested libseccomp. The cost is a C dependency
//! (libseccomp2 at run time, libseccomp-dev + pkg-config to build) used
//! only in the parent, and the quirks handled in [`compile`]:
//! - libseccomp refuses rules whose action equals the default: skipped;
//! - names unknown on the native arch: skipped with a [`Warning`] if the
//!   name exists on another arch, an error if it exists nowhere;
//! - libseccomp's load-time attributes (`SCMP_FLTATR_CTL_TSYNC`, `_LOG`,
//!   `_SSB`, NNP) only affect `seccomp_load`, which hako never calls: the
//!   spec's flags become `seccomp(2)` flags directly, so
//!   `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` works even with libseccomp
//!   2.5, and TSYNC+NEW_LISTENER gets TSYNC_ESRCH as the kernel requires;
//! - libseccomp silently keeps the first of two unconditional rules with
//!   different actions for one syscall: reported as a [`Warning`];
//! - `SCMP_ACT_NOTIFY` is checked against libseccomp's API level (>= 5),
//!   refused as `defaultAction` and on `sendmsg`/`socketcall` (the child
//!   hands the listener over with `sendmsg` after loading), and needs
//!   `listenerPath`;
//! - `seccomp_export_bpf_mem` needs libseccomp 2.6 (Debian 12 has 2.5.4):
//!   the program is exported into a memfd and read back.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod cache;
mod compile;
mod error;
mod filter;
mod listener;
mod profile;

pub use cache::compile_cached;
pub use compile::compile;
pub use error::{SeccompError, Warning};
pub use filter::{flags, CompiledFilter, BPF_MAXINSNS};
pub use listener::{process_state_json, recv_fd, send_fd, send_listener};
pub use profile::{default_profile, default_profile_for_arch, DEFAULT_PROFILE_JSON};

/// Re-exported so callers name the same spec types this crate compiles.
pub use oci_spec::runtime::LinuxSeccomp;

#[cfg(test)]
mod tests;
