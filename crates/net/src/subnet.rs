//! IPv4 and IPv6 subnets: parsing, containment, overlap, host addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    #[error("subnet {0:?}: expected ADDRESS/PREFIX")]
    Syntax(String),
    #[error("subnet {0:?}: prefix length out of range")]
    Prefix(String),
    #[error("subnet {0:?}: host bits set (did you mean {1}?)")]
    HostBits(String, String),
}

/// A subnet of either family, kept as a 128-bit number plus width so both
/// families share the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, SubnetError> {
        let s = format!("{addr}/{prefix}");
        if prefix > bits(addr) {
            return Err(SubnetError::Prefix(s));
        }
        let n = Subnet { addr, prefix };
        if to_u128(addr) & !n.mask() != 0 {
            let fixed = Subnet {
                addr: from_u128(to_u128(addr) & n.mask(), addr.is_ipv6()),
                prefix,
            };
            return Err(SubnetError::HostBits(s, fixed.to_string()));
        }
        Ok(n)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    fn mask(&self) -> u128 {
        let width = bits(self.addr);
        let host = width - self.prefix;
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1).min(all)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_ipv6() && to_u128(ip) & self.mask() == to_u128(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.is_ipv6() == other.is_ipv6()
            && (self.contains(other.addr) || other.contains(self.addr))
    }

    /// The `n`th address of the subnet (0 is the network address), if inside.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let size = self.size();
        (n < size).then(|| from_u128(to_u128(self.addr) + n, self.is_ipv6()))
    }

    /// The offset of `ip` inside the subnet.
    pub fn offset(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip).then(|| to_u128(ip) - to_u128(self.addr))
    }

    /// Number of addresses (saturating for /0 IPv6).
    pub fn size(&self) -> u128 {
        let host = bits(self.addr) - self.prefix;
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }

    /// Usable host offsets: IPv4 excludes network and broadcast addresses.
    pub fn host_range(&self) -> std::ops::Range<u128> {
        let size = self.size();
        if self.is_ipv6() {
            1..size
        } else if size <= 2 {
            0..size
        } else {
            1..size - 1
        }
    }
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, SubnetError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| SubnetError::Syntax(s.to_owned()))?;
        let addr: IpAddr = a.parse().map_err(|_| SubnetError::Syntax(s.to_owned()))?;
        let prefix: u8 = p.parse().map_err(|_| SubnetError::Prefix(s.to_owned()))?;
        Subnet::new(addr, prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = SubnetError;
    fn try_from(s: String) -> Result<Self, SubnetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let n: Subnet = "10.88.0.0/16".parse().unwrap();
        assert!(n.contains("10.88.255.1".parse().unwrap()));
        assert!(!n.contains("10.89.0.1".parse().unwrap()));
        assert_eq!(n.nth(1), Some("10.88.0.1".parse().unwrap()));
        assert_eq!(n.host_range(), 1..65535);
        assert!(matches!(
            "10.88.0.1/16".parse::<Subnet>(),
            Err(SubnetError::HostBits(..))
        ));
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap() {
        let a: Subnet = "10.88.0.0/16".parse().unwrap();
        let b: Subnet = "10.88.4.0/24".parse().unwrap();
        let c: Subnet = "10.89.0.0/24".parse().unwrap();
        let d: Subnet = "fd00::/64".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&d));
        assert!(d.contains("fd00::5".parse().unwrap()));
        assert_eq!(d.nth(2), Some("fd00::2".parse().unwrap()));
    }

    #[test]
    fn zero_prefix() {
        let a: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(a.contains("1.2.3.4".parse().unwrap()));
    }
}
