//! The few sysctls networking needs, written through /proc/sys.
//!
//! - `net.ipv4.ip_forward`: set to 1 when a non-internal bridge network is
//!   created (containers reaching beyond the host, and published ports
//!   reached from other hosts, are forwarded traffic). hako never sets it
//!   back to 0: other software may have come to rely on it, and Docker and
//!   Podman behave the same. Internal networks leave it alone.
//! - `net.ipv4.conf.<bridge>.route_localnet`: set to 1 on hako's own bridges
//!   so that connections to ports published on 127.0.0.1 can be DNATed to a
//!   container; it lives and dies with the bridge and affects no other link.

use std::fs;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl such as `net.ipv4.ip_forward`.
pub fn get(key: &str) -> Result<String, SysctlError> {
    let p = path(key);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysctlError::Read { path: p, source })
}

/// Writes a sysctl; interface names with dots are not supported (hako's
/// bridge names have none).
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    let p = path(key);
    fs::write(&p, value).map_err(|source| SysctlError::Write {
        path: p,
        value: value.to_owned(),
        source,
    })
}

/// Turns on IPv4 forwarding if it is off; returns the previous value.
pub fn enable_ip_forward() -> Result<String, SysctlError> {
    let old = get("net.ipv4.ip_forward")?;
    if old != "1" {
        set("net.ipv4.ip_forward", "1")?;
    }
    Ok(old)
}
