//! `pause` and `unpause`.

use hako_runtime::container;

use crate::dirs::Dirs;
use crate::status::{live, set_frozen};
use crate::Result;

pub fn pause(dirs: &Dirs, name: &str, on: bool) -> Result<String> {
    let (id, r) = live(dirs, name)?;
    let root = dirs.runtime_root();
    let r2 = if on {
        container::pause(&root, &id)
    } else {
        container::resume(&root, &id)
    };
    if r2.is_err() {
        // No runtime state (a monitor from before a crash): the cgroup itself.
        set_frozen(&r, on)?;
    }
    crate::events::container(dirs, if on { "pause" } else { "unpause" }, &r, &[]);
    Ok(id)
}
