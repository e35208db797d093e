//! `rename`.

use crate::dirs::Dirs;
use crate::{network, record, Result};

/// `rename OLD NEW`, running or not, as Docker: the record, then what
/// other containers see of the name.
pub fn rename(dirs: &Dirs, name: &str, new: &str) -> Result<String> {
    let old = record::load(dirs, &record::resolve(dirs, name)?)?.name;
    let r = record::rename(dirs, name, new)?;
    network::renamed(dirs, &r.id, new)?;
    crate::events::container(dirs, "rename", &r, &[("oldName", &old)]);
    Ok(r.id)
}
