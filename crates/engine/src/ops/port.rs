//! `port`: a container's published ports.

use crate::dirs::Dirs;
use crate::record;
use crate::Result;

/// The container's published ports, by container port.
pub fn port(dirs: &Dirs, name: &str) -> Result<Vec<hako_net::PortMapping>> {
    let mut v = record::load(dirs, &record::resolve(dirs, name)?)?.ports()?;
    v.sort_by_key(|m| (m.container_port, m.to_string()));
    Ok(v)
}
