//! Network namespaces given by path (`/run/netns/x`, a bind mount) or by PID.
//!
//! Work inside a namespace runs on a short-lived dedicated thread that calls
//! setns(2): a network namespace is per thread, so the caller's thread (and
//! every other thread of the engine) never leaves the host namespace, even
//! if the work panics.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("open network namespace {path}")]
    Open { path: PathBuf, source: io::Error },
    #[error("setns into network namespace {path}")]
    Setns { path: PathBuf, source: io::Error },
    #[error("network namespace {path} is the caller's own; refusing to plumb the host")]
    IsOwn { path: PathBuf },
    #[error("worker thread in network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// A network namespace, named by a path the kernel resolves to an nsfs inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    path: PathBuf,
}

impl Netns {
    /// A namespace file: `/proc/PID/ns/net`, or a bind mount of one.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Netns { path: path.into() }
    }

    /// The network namespace of a running process.
    pub fn from_pid(pid: u32) -> Self {
        Netns {
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file, e.g. to pass as IFLA_NET_NS_FD.
    pub(crate) fn open(&self) -> Result<File, NetnsError> {
        File::open(&self.path).map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })
    }

    /// Fails when this is the calling thread's own namespace: a container
    /// NIC named eth0 must never be created on, or renamed in, the host.
    pub(crate) fn ensure_foreign(&self) -> Result<(), NetnsError> {
        use std::os::unix::fs::MetadataExt;
        let theirs = self.open()?.metadata().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        let own_path = Path::new("/proc/thread-self/ns/net");
        let ours = std::fs::metadata(own_path).map_err(|source| NetnsError::Open {
            path: own_path.to_owned(),
            source,
        })?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return Err(NetnsError::IsOwn {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Runs `f` on a thread that has joined this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let ns = self.open()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `ns` is an open nsfs descriptor that outlives the
                // call; setns only changes this (dedicated) thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc < 0 {
                    return Err(NetnsError::Setns {
                        path: self.path.clone(),
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Panicked {
                path: self.path.clone(),
            })?
        })
    }
}
