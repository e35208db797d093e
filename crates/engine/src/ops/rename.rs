//! `rename`.

use crate::dirs::Dirs;
use crate::{network, record, Result};

/// `rename OLD NEW`, running or not, as Docker: the record, then what
/// other containers see of the name.
pub fn rename(dirs: &Dirs, name: &str, new: &str) -> Result<String> {
    let r = record::rename(dirs, name, new)?;
    network::renamed(dirs, &r.id, new)?;
    Ok(r.id)
}
