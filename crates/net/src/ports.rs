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
}
