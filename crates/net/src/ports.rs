//! Published ports: `-p [hostip:]hostport:containerport[/tcp|udp]`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port mapping {0:?}: expected [hostip:]hostport:containerport[/tcp|udp]")]
    Syntax(String),
    #[error("port mapping {0:?}: bad protocol (tcp or udp)")]
    Proto(String),
    #[error("port mapping {0:?}: bad port number")]
    Port(String),
    #[error("port mapping {0:?}: bad host IPv4 address")]
    HostIp(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (meta l4proto).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// One published port. `host_ip` None means every local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl FromStr for PortMapping {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, PortError> {
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Proto::Tcp),
            Some((spec, "udp")) => (spec, Proto::Udp),
            Some(_) => return Err(PortError::Proto(s.to_owned())),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host_ip, hp, cp) = match parts.as_slice() {
            [hp, cp] => (None, *hp, *cp),
            [ip, hp, cp] => {
                let ip = if ip.is_empty() {
                    None
                } else {
                    Some(
                        ip.parse::<Ipv4Addr>()
                            .map_err(|_| PortError::HostIp(s.to_owned()))?,
                    )
                };
                (ip, *hp, *cp)
            }
            _ => return Err(PortError::Syntax(s.to_owned())),
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(PortError::Port(s.to_owned())),
            Ok(n) => Ok(n),
        };
        Ok(PortMapping {
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_port: port(hp)?,
            container_port: port(cp)?,
            proto,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{}:{}/{proto}", self.host_port, self.container_port)
    }
}

impl PortMapping {
    /// Whether two mappings want the same host port: same protocol and
    /// port, and host addresses that overlap (none means every address).
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Binds the host side of the mapping, as podman does: while the socket
    /// is held no other program can take the port, and a port some program
    /// already has is refused here, with that program named. The DNAT rules
    /// catch the traffic before it reaches this socket.
    pub fn reserve(&self) -> Result<std::os::fd::OwnedFd, PortInUse> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let ty = match self.proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp => libc::SOCK_DGRAM,
        };
        let in_use = |errno: i32| PortInUse {
            mapping: *self,
            owner: if errno == libc::EADDRINUSE {
                owner_of(self.proto, self.host_port)
            } else {
                None
            },
            errno,
        };
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(in_use(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        // SAFETY: fd is a fresh socket nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: self.host_port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sa is a valid sockaddr_in and its size is passed with it.
        let r = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(in_use(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        Ok(fd)
    }
}

/// A host port that could not be reserved.
#[derive(Debug, PartialEq, Eq)]
pub struct PortInUse {
    pub mapping: PortMapping,
    /// "pid 123 (nginx)" when /proc tells who holds it.
    pub owner: Option<String>,
    pub errno: i32,
}

impl fmt::Display for PortInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.mapping;
        let addr = m.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        let what = std::io::Error::from_raw_os_error(self.errno);
        write!(
            f,
            "-p {m}: cannot bind host port {addr}:{}: {what}",
            m.host_port
        )?;
        if let Some(o) = &self.owner {
            write!(f, " (held by {o})")?;
        }
        Ok(())
    }
}

/// Who has a local socket on this port: the socket's inode from
/// /proc/net/{tcp,udp}[6], then the process holding it. Best effort (only
/// when a port is refused): None when it cannot be told.
fn owner_of(proto: Proto, port: u16) -> Option<String> {
    let files: &[&str] = match proto {
        Proto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let mut inodes = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let lport = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // TCP: listeners (0A) and bound-only sockets (07, CLOSE).
            let bound = proto == Proto::Udp || *state == "0A" || *state == "07";
            if lport == Some(port) && bound && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", comm.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let p: PortMapping = "127.0.0.1:18080:80".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (p.host_port, p.container_port, p.proto),
            (18080, 80, Proto::Tcp)
        );
        let p: PortMapping = "53:5353/udp".parse().unwrap();
        assert_eq!((p.host_ip, p.proto), (None, Proto::Udp));
        let p: PortMapping = "0.0.0.0:8080:80/tcp".parse().unwrap();
        assert_eq!(p.host_ip, None);
        assert_eq!(p.to_string(), "8080:80/tcp");
        assert!("80".parse::<PortMapping>().is_err());
        assert!("1:2/sctp".parse::<PortMapping>().is_err());
        assert!("x:1:2".parse::<PortMapping>().is_err());
        assert!("0:80".parse::<PortMapping>().is_err());
    }

    #[test]
    fn clashes() {
        let p = |s: &str| s.parse::<PortMapping>().unwrap();
        assert!(p("127.0.0.1:8080:80").clashes_with(&p("127.0.0.1:8080:81")));
        assert!(p("8080:80").clashes_with(&p("127.0.0.1:8080:80")));
        assert!(!p("127.0.0.1:8080:80").clashes_with(&p("127.0.0.2:8080:80")));
        assert!(!p("8080:80").clashes_with(&p("8080:80/udp")));
        assert!(!p("8080:80").clashes_with(&p("8081:80")));
    }

    #[test]
    fn a_port_someone_holds_is_refused_with_the_holder_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let m: PortMapping = format!("127.0.0.1:{port}:80").parse().unwrap();
        let e = m.reserve().unwrap_err();
        assert_eq!(e.errno, libc::EADDRINUSE);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(l);
        let held = m.reserve().unwrap();
        // Now hako holds it: a program can no longer take it.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        drop(held);
    }
}
