//! The operating-system calls the engine and the CLIs share with the
//! runtime. They live, as safe wrappers with their `SAFETY` notes, in the
//! runtime's private `sys` module; this list is the deliberate public part
//! of it (process and signal handling, terminals, namespaces, fd passing),
//! so that the raw layer has one home and no other crate copies it.

pub use crate::sys::{
    block_all_signals, chroot, dup2, empty_sigmask, exit_code, fork, get_winsize, geteuid, getpid,
    getppid, in_initial_userns, isatty, kill, mount, ns_type, openat, pidfd_open,
    pidfd_send_signal, poll_events, poll_in, poll_many, prctl, read_fd, read_signal, recv_fd,
    set_sigmask, set_winsize, setns, signalfd_all, umount2, unshare, wait_any_nohang, waitpid,
    write_all_fd,
};

pub use crate::console::{DetachKeys, Escape, RawMode};
pub use crate::mounts::copy_tree;
pub use crate::paths::{
    ensure_file_in_root, mkdir_all_in_root, open_in_root_flags, read_file_in_root,
};
pub use crate::state::{atomic_write, proc_stat, Durability, ProcStat};
