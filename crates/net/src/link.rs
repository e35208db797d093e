//! Links, addresses and routes over rtnetlink.
//!
//! An [`Rtnl`] acts on the namespace its socket was created in: build it on
//! the host for bridges and host veth ends, or inside [`crate::Netns::run`]
//! for the container's side.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::nl::{self, Msg, Socket, NLM_F_CREATE, NLM_F_EXCL};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTA_TABLE: u16 = 15;
const RTPROT_STATIC: u8 = 4;
const RTN_UNICAST: u8 = 1;

const IFF_UP: u32 = libc::IFF_UP as u32;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("open rtnetlink socket")]
    Socket(#[source] io::Error),
    #[error("look up link {name}")]
    Lookup { name: String, source: io::Error },
    #[error("link {name} not found")]
    NotFound { name: String },
    #[error("create bridge {name}")]
    CreateBridge { name: String, source: io::Error },
    #[error("create veth pair {host} <-> {peer} (peer in {netns})")]
    CreateVeth {
        host: String,
        peer: String,
        netns: String,
        source: io::Error,
    },
    #[error("configure link {name}")]
    Configure { name: String, source: io::Error },
    #[error("delete link {name}")]
    Delete { name: String, source: io::Error },
    #[error("add address {addr}/{prefix} to {name}")]
    AddAddr {
        name: String,
        addr: IpAddr,
        prefix: u8,
        source: io::Error,
    },
    #[error("list addresses")]
    ListAddrs(#[source] io::Error),
    #[error("list routes")]
    ListRoutes(#[source] io::Error),
    #[error("add default route via {gateway} dev {name}")]
    AddRoute {
        name: String,
        gateway: IpAddr,
        source: io::Error,
    },
}

/// Attributes of a link to set in one RTM_NEWLINK.
#[derive(Debug, Default, Clone)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// The peer end of a new veth pair.
pub struct VethPeer<'a> {
    pub name: &'a str,
    /// Created directly in this namespace, so its name never clashes with
    /// host links (every container has an `eth0`).
    pub netns: BorrowedFd<'a>,
    pub netns_path: &'a str,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

pub struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    /// An rtnetlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, LinkError> {
        Ok(Rtnl {
            sock: Socket::route().map_err(LinkError::Socket)?,
        })
    }

    /// The ifindex of `name`, or None when no such link exists.
    pub fn index(&mut self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.header(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        // A GETLINK by name answers with the link, not an ack; use dump-less
        // request through `dump`, which collects the reply until the ack.
        match self.sock.dump_one(m) {
            Ok(Some(payload)) if payload.len() >= 16 => {
                Ok(Some(u32::from_ne_bytes(payload[4..8].try_into().unwrap())))
            }
            Ok(_) => Ok(None),
            Err(e) if nl::errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(source) => Err(LinkError::Lookup {
                name: name.to_owned(),
                source,
            }),
        }
    }

    pub fn require(&mut self, name: &str) -> Result<u32, LinkError> {
        self.index(name)?.ok_or_else(|| LinkError::NotFound {
            name: name.to_owned(),
        })
    }

    /// Creates bridge `name`; Ok(false) when it already exists (reused).
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<bool, LinkError> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        if let Some(mtu) = mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        m.nest(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end_nest();
        match self.sock.request(m) {
            Ok(()) => Ok(true),
            Err(e) if nl::errno(&e) == Some(libc::EEXIST) => Ok(false),
            Err(source) => Err(LinkError::CreateBridge {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Creates veth `host` in this namespace with its peer in `peer.netns`.
    pub fn create_veth(
        &mut self,
        host: &str,
        host_mtu: Option<u32>,
        peer: &VethPeer<'_>,
    ) -> Result<(), LinkError> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, host);
        if let Some(mtu) = host_mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        m.nest(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
        m.nest(IFLA_INFO_DATA).nest(VETH_INFO_PEER);
        m.header(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, peer.name);
        m.attr_u32(IFLA_NET_NS_FD, peer.netns.as_raw_fd() as u32);
        if let Some(mtu) = peer.mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        if let Some(mac) = peer.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        m.end_nest().end_nest().end_nest();
        self.sock
            .request(m)
            .map_err(|source| LinkError::CreateVeth {
                host: host.to_owned(),
                peer: peer.name.to_owned(),
                netns: peer.netns_path.to_owned(),
                source,
            })
    }

    pub fn change(&mut self, name: &str, c: &LinkChange) -> Result<(), LinkError> {
        let index = self.require(name)?;
        let (flags, change) = match c.up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.header(&ifinfomsg(index, flags, change));
        if let Some(mtu) = c.mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        if let Some(master) = c.master {
            m.attr_u32(IFLA_MASTER, master);
        }
        if let Some(mac) = c.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        self.sock.request(m).map_err(|source| LinkError::Configure {
            name: name.to_owned(),
            source,
        })
    }

    /// Deletes link `name`; Ok(false) when it was already gone.
    pub fn delete(&mut self, name: &str) -> Result<bool, LinkError> {
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.header(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.sock.request(m) {
            Ok(()) => Ok(true),
            Err(e) if nl::errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(source) => Err(LinkError::Delete {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Adds `addr/prefix` to link `name`; an address already there is kept.
    /// IPv6 addresses skip duplicate address detection: IPAM already
    /// guarantees uniqueness and DAD would delay the container by seconds.
    pub fn add_addr(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let index = self.require(name)?;
        let (family, bytes, flags) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
        };
        let mut h = [0u8; 8];
        h[0] = family;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&h)
            .attr(IFA_LOCAL, &bytes)
            .attr(IFA_ADDRESS, &bytes)
            .attr_u32(IFA_FLAGS, flags);
        match self.sock.request(m) {
            Ok(()) => Ok(()),
            Err(e) if nl::errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(source) => Err(LinkError::AddAddr {
                name: name.to_owned(),
                addr,
                prefix,
                source,
            }),
        }
    }

    /// Every address in this namespace as (ifindex, address, prefix length).
    pub fn addresses(&mut self) -> Result<Vec<(u32, IpAddr, u8)>, LinkError> {
        let mut m = Msg::new(RTM_GETADDR, 0);
        m.header(&[0u8; 8]);
        let replies = self.sock.dump(m).map_err(LinkError::ListAddrs)?;
        let mut out = Vec::new();
        for (ty, p) in replies {
            if ty != RTM_NEWADDR || p.len() < 8 {
                continue;
            }
            let prefix = p[1];
            let index = u32::from_ne_bytes(p[4..8].try_into().unwrap());
            for (aty, data) in nl::attrs(&p[8..]) {
                if aty != IFA_ADDRESS {
                    continue;
                }
                let ip = match data.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(data).unwrap()),
                    16 => IpAddr::from(<[u8; 16]>::try_from(data).unwrap()),
                    _ => continue,
                };
                out.push((index, ip, prefix));
            }
        }
        Ok(out)
    }

    /// Routes of the main table with a destination (not the default route)
    /// as (destination, prefix length, output ifindex or 0).
    pub fn routes(&mut self) -> Result<Vec<(IpAddr, u8, u32)>, LinkError> {
        let mut m = Msg::new(RTM_GETROUTE, 0);
        m.header(&[0u8; 12]);
        let replies = self.sock.dump(m).map_err(LinkError::ListRoutes)?;
        let mut out = Vec::new();
        for (ty, p) in replies {
            if ty != RTM_NEWROUTE || p.len() < 12 {
                continue;
            }
            let prefix = p[1];
            let mut table = u32::from(p[4]);
            let (mut dst, mut oif) = (None, 0);
            for (aty, data) in nl::attrs(&p[12..]) {
                match (aty, data.len()) {
                    (RTA_DST, 4) => dst = Some(IpAddr::from(<[u8; 4]>::try_from(data).unwrap())),
                    (RTA_DST, 16) => dst = Some(IpAddr::from(<[u8; 16]>::try_from(data).unwrap())),
                    (RTA_OIF, 4) => oif = u32::from_ne_bytes(data.try_into().unwrap()),
                    (RTA_TABLE, 4) => table = u32::from_ne_bytes(data.try_into().unwrap()),
                    _ => {}
                }
            }
            if table != u32::from(RT_TABLE_MAIN) || prefix == 0 {
                continue;
            }
            if let Some(d) = dst {
                out.push((d, prefix, oif));
            }
        }
        Ok(out)
    }

    /// Adds the default route via `gateway` out of link `name`.
    pub fn add_default_route(&mut self, name: &str, gateway: IpAddr) -> Result<(), LinkError> {
        let index = self.require(name)?;
        let (family, gw) = match gateway {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut h = [0u8; 12];
        h[0] = family;
        h[4] = RT_TABLE_MAIN;
        h[5] = RTPROT_STATIC;
        h[6] = 0; // RT_SCOPE_UNIVERSE
        h[7] = RTN_UNICAST;
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&h).attr(RTA_GATEWAY, &gw).attr_u32(RTA_OIF, index);
        match self.sock.request(m) {
            Ok(()) => Ok(()),
            Err(e) if nl::errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(source) => Err(LinkError::AddRoute {
                name: name.to_owned(),
                gateway,
                source,
            }),
        }
    }
}

/// A stable locally administered MAC for an IPv4 address (02:42:a.b.c.d),
/// so ARP caches of other containers stay valid when an address is reused
/// by a new container with the same IP.
pub fn mac_for(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A MAC address a container's interface can have: six hex bytes split
/// by ':' or '-', unicast, not all zero.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err("not a MAC address (six hex bytes, e.g. 92:d0:c6:0a:29:33)".into());
    }
    for (b, p) in mac.iter_mut().zip(&parts) {
        *b = match p.len() {
            1 | 2 => u8::from_str_radix(p, 16).map_err(|_| format!("{p:?} is not a hex byte"))?,
            _ => return Err(format!("{p:?} is not a hex byte")),
        };
    }
    if mac[0] & 1 != 0 {
        return Err("a multicast address (the first byte is odd)".into());
    }
    if mac == [0; 6] {
        return Err("the zero address".into());
    }
    Ok(mac)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_as_docker_takes_them() {
        assert_eq!(
            parse_mac("92:d0:c6:0a:29:33").unwrap(),
            [0x92, 0xd0, 0xc6, 0x0a, 0x29, 0x33]
        );
        assert_eq!(parse_mac("2-42-a-0-0-1").unwrap(), [2, 0x42, 10, 0, 0, 1]);
        assert_eq!(
            format_mac(&parse_mac("02:42:0A:00:00:01").unwrap()),
            "02:42:0a:00:00:01"
        );
        for (bad, why) in [
            ("92:d0:c6:0a:29", "six hex bytes"),
            ("92:d0:c6:0a:29:33:44", "six hex bytes"),
            ("92:d0:c6:0a:29:zz", "\"zz\" is not a hex byte"),
            ("92:d0:c6:0a:29:333", "\"333\" is not a hex byte"),
            ("01:00:5e:00:00:01", "multicast"),
            ("00:00:00:00:00:00", "zero"),
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
