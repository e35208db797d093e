//! The verbs, one module each. Each is a short function over [`crate::record`],
//! [`crate::status`], the runtime library, the image store and the network
//! manager; what a container's end undoes lives in [`crate::teardown`], and
//! the monitor (below the verbs) never calls back into them.

mod attach;
mod checkpoint;
mod commit;
mod cp;
mod create;
mod inspect;
mod logs;
mod pause;
mod port;
mod prune;
mod ps;
mod rename;
mod rm;
mod start;
mod stop;
mod system;
mod top;
mod update;
mod wait;

pub use attach::{attach, AttachOptions, Attached};
pub use checkpoint::{
    checkpoint, engine_network, image_dir as checkpoint_dir, import as restore_import, restore,
    CheckpointOptions,
};
pub use commit::{commit, diff, export, CommitArgs};
pub use cp::cp;
pub use create::create;
pub use inspect::inspect;
pub use logs::{logs, time_bound, LogOptions};
pub use pause::pause;
pub use port::port;
pub use prune::prune;
pub use ps::{ps, Filters};
pub use rename::rename;
pub use rm::rm;
pub use start::{run, spawn_monitor, start, start_all, start_attached};
pub use stop::{kill, restart, stop};
pub use system::{df, info, prune as system_prune, prune_images, Pruned};
pub use top::{pids, stats, top};
pub use update::update;
pub use wait::{wait, UNKNOWN_EXIT};
