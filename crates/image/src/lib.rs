//! hako's image store: content-addressed blobs, registry pulls, `import` and
//! `load`, safe layer unpacking, and overlayfs root filesystems.
//!
//! Everything is reached through [`Store`]:
//!
//! ```no_run
//! use hako_image::{PullOptions, Store};
//! let store = Store::open(Store::default_data_dir())?;
//! let id = store.pull("127.0.0.1:5000/busybox:latest", &PullOptions::default())?;
//! let rootfs = store.prepare_rootfs(&id.to_string(), "c1")?;
//! // ... run the container in rootfs.path() ...
//! rootfs.unmount_and_remove()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The API is blocking; pulls run an internal single-threaded tokio runtime.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod changes;
pub mod compose;
pub mod diff;
pub mod digest;
pub mod fetch;
pub mod idmap;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod rootfs;
pub mod save;
pub mod store;
pub mod unpack;

pub use auth::{login, logout, lookup, Credentials};
pub use digest::Digest;
pub use import::{ImportError, Loaded};
pub use pull::{Progress, PullError, PullOptions};
pub use reference::Reference;
pub use rootfs::{RootfsKind, RootfsMount, RootfsOptions};
pub use store::{
    GcReport, HistoryEntry, ImageId, ImageInspect, ImageSummary, RemoveReport, Store, StoreError,
};
pub use unpack::{unpack, UnpackError};
