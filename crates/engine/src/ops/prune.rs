//! `container prune`.

use super::rm::rm;
use crate::dirs::Dirs;
use crate::record;
use crate::status::status;
use crate::Result;

/// Remove every container that is not running (created or exited), as
/// `docker container prune`; their ids. Volumes stay (`volume prune`).
pub fn prune(dirs: &Dirs) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for r in record::scan(dirs).0 {
        if !status(dirs, &r).is_live() {
            rm(dirs, &r.id, false, false)?;
            gone.push(r.id);
        }
    }
    Ok(gone)
}
