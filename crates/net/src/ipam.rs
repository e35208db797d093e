//! Network definitions and address leases, persisted under the engine's
//! state dir:
//!
//! ```text
//! <state>/lock                 flock(2): exclusive for changes, shared for reads
//! <state>/networks/<name>.json one network's definition
//! <state>/leases/<name>.json   that network's leases (one per attached container)
//! ```
//!
//! Every read-modify-write happens under the exclusive lock, held for the
//! whole `run`/`rm` network step, so two concurrent `hako run`s can never be
//! handed the same address. Files are replaced by rename, so a crash leaves
//! either the old or the new file, never half of one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ports::PortMapping;
use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("create state dir {path}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("lock {path}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parse {path}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("network {network}: subnet {subnet} has no free address left")]
    Exhausted { network: String, subnet: Subnet },
    #[error("{ip} is not an address for containers in network {network}'s subnet {subnet}")]
    NotInSubnet {
        ip: IpAddr,
        network: String,
        subnet: Subnet,
    },
    #[error("{ip} on network {network} is taken by {owner}")]
    AddressTaken {
        ip: IpAddr,
        network: String,
        owner: String,
    },
}

/// Which IPv4 address a container gets on a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ipv4Choice {
    /// The lowest free one.
    #[default]
    Any,
    /// This one, or an error saying why not (`--ip`).
    Exactly(Ipv4Addr),
    /// This one if it is free, else the lowest free one (a restored
    /// container's address before its checkpoint).
    Preferably(Ipv4Addr),
}

/// A bridge network as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: IpAddr,
    #[serde(default)]
    pub subnet6: Option<Subnet>,
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    pub mtu: u32,
    /// No masquerade: the network only reaches the host and its peers.
    #[serde(default)]
    pub internal: bool,
    /// Nameservers for containers on this network; empty uses the host's.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// hako created the bridge (and deletes it with the network).
    #[serde(default)]
    pub owns_bridge: bool,
    /// Containers resolve each other by name through the network's own
    /// name server on the gateway (user networks, as Docker's).
    #[serde(default)]
    pub dns_enabled: bool,
}

impl Network {
    /// Whether `ip` can be a container's address here: inside the subnet,
    /// neither its network nor its broadcast address, nor the gateway.
    /// Its offset in the subnet.
    pub fn check_address(&self, ip: IpAddr) -> Result<u128, IpamError> {
        if ip == self.gateway {
            return Err(IpamError::AddressTaken {
                ip,
                network: self.name.clone(),
                owner: "the network's gateway".into(),
            });
        }
        self.subnet
            .offset(ip)
            .filter(|o| self.subnet.host_range().contains(o))
            .ok_or_else(|| IpamError::NotInSubnet {
                ip,
                network: self.name.clone(),
                subnet: self.subnet,
            })
    }
}

/// One container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub container_name: String,
    pub network: String,
    /// Interface name inside the container (eth0, eth1, …).
    pub ifname: String,
    /// Host end of the veth pair, enslaved to the network's bridge.
    pub host_veth: String,
    pub ipv4: IpAddr,
    #[serde(default)]
    pub ipv6: Option<IpAddr>,
    pub mac: String,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// More names for it on this network (`--network-alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

pub(crate) struct Store {
    dir: PathBuf,
}

/// Proof that the state lock is held; all file access goes through it.
pub(crate) struct Locked<'a> {
    dir: &'a Path,
    _file: File,
}

impl Store {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    pub(crate) fn lock(&self, exclusive: bool) -> Result<Locked<'_>, IpamError> {
        for sub in ["networks", "leases"] {
            let p = self.dir.join(sub);
            fs::create_dir_all(&p).map_err(|source| IpamError::StateDir { path: p, source })?;
        }
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| IpamError::Lock {
                path: path.clone(),
                source,
            })?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock takes an open descriptor we own and an int flag.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(IpamError::Lock { path, source: err });
            }
        }
        Ok(Locked {
            dir: &self.dir,
            _file: file,
        })
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, IpamError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| IpamError::Parse {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IpamError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), IpamError> {
    let err = |source| IpamError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(v).map_err(|e| err(e.into()))?;
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(&data).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

fn remove(path: &Path) -> Result<(), IpamError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IpamError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

impl Locked<'_> {
    fn net_path(&self, name: &str) -> PathBuf {
        self.dir.join("networks").join(format!("{name}.json"))
    }

    fn lease_path(&self, name: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{name}.json"))
    }

    pub(crate) fn networks(&self) -> Result<Vec<Network>, IpamError> {
        let dir = self.dir.join("networks");
        let rd = fs::read_dir(&dir).map_err(|source| IpamError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|source| IpamError::Read {
                path: dir.clone(),
                source,
            })?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(n) = read_json::<Network>(&p)? {
                    out.push(n);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn network(&self, name: &str) -> Result<Option<Network>, IpamError> {
        read_json(&self.net_path(name))
    }

    pub(crate) fn save_network(&self, n: &Network) -> Result<(), IpamError> {
        write_json(&self.net_path(&n.name), n)
    }

    pub(crate) fn remove_network(&self, name: &str) -> Result<(), IpamError> {
        remove(&self.lease_path(name))?;
        remove(&self.net_path(name))
    }

    pub(crate) fn leases(&self, network: &str) -> Result<Vec<Lease>, IpamError> {
        Ok(read_json(&self.lease_path(network))?.unwrap_or_default())
    }

    pub(crate) fn save_leases(&self, network: &str, leases: &[Lease]) -> Result<(), IpamError> {
        if leases.is_empty() {
            return remove(&self.lease_path(network));
        }
        write_json(&self.lease_path(network), &leases)
    }

    /// Every lease of a container across all networks.
    pub(crate) fn leases_of(&self, container_id: &str) -> Result<Vec<Lease>, IpamError> {
        let mut out = Vec::new();
        for n in self.networks()? {
            out.extend(
                self.leases(&n.name)?
                    .into_iter()
                    .filter(|l| l.container_id == container_id),
            );
        }
        Ok(out)
    }
}

/// The lowest free host address of `net`'s IPv4 subnet (and the IPv6
/// address at the same offset when the network has a v6 subnet).
pub(crate) fn pick_addresses(
    net: &Network,
    leases: &[Lease],
    choice: Ipv4Choice,
) -> Result<(IpAddr, Option<IpAddr>), IpamError> {
    // Who holds each address (the gateway counts as taken).
    let held: HashMap<IpAddr, &str> = leases
        .iter()
        .flat_map(|l| {
            let name = l.container_name.as_str();
            std::iter::once((l.ipv4, name)).chain(l.ipv6.map(|a| (a, name)))
        })
        .collect();
    let owner = |ip: IpAddr| -> Option<String> {
        if ip == net.gateway || Some(ip) == net.gateway6 {
            return Some("the network's gateway".into());
        }
        held.get(&ip).map(|n| format!("container {n}"))
    };
    // The addresses at offset `off`, or who holds one of them.
    let at = |off: u128| -> Result<(IpAddr, Option<IpAddr>), (IpAddr, String)> {
        let ip = net.subnet.nth(off).expect("offset inside the subnet");
        if let Some(o) = owner(ip) {
            return Err((ip, o));
        }
        let ip6 = match net.subnet6 {
            Some(s6) => match s6.nth(off) {
                Some(a) => match owner(a) {
                    Some(o) => return Err((a, o)),
                    None => Some(a),
                },
                None => return Err((ip, "no IPv6 address at the same offset".into())),
            },
            None => None,
        };
        Ok((ip, ip6))
    };
    let wanted = match choice {
        Ipv4Choice::Any => None,
        Ipv4Choice::Exactly(a) | Ipv4Choice::Preferably(a) => Some(IpAddr::V4(a)),
    };
    if let Some(ip) = wanted {
        let got = net.check_address(ip).and_then(|off| {
            at(off).map_err(|(ip, owner)| IpamError::AddressTaken {
                ip,
                network: net.name.clone(),
                owner,
            })
        });
        match (got, choice) {
            (Ok(a), _) => return Ok(a),
            (Err(e), Ipv4Choice::Exactly(_)) => return Err(e),
            (Err(_), _) => {}
        }
    }
    net.subnet
        .host_range()
        .find_map(|off| at(off).ok())
        .ok_or_else(|| IpamError::Exhausted {
            network: net.name.clone(),
            subnet: net.subnet,
        })
}

/// The lowest `ethN` not yet used by the container.
pub(crate) fn next_ifname(existing: &[Lease]) -> String {
    let used: HashSet<&str> = existing.iter().map(|l| l.ifname.as_str()).collect();
    (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.contains(n.as_str()))
        .expect("unbounded range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network {
            name: "n".into(),
            bridge: "br".into(),
            subnet: "10.213.0.0/29".parse().unwrap(),
            gateway: "10.213.0.1".parse().unwrap(),
            subnet6: Some("fd00:213::/64".parse().unwrap()),
            gateway6: Some("fd00:213::1".parse().unwrap()),
            mtu: 1500,
            internal: false,
            dns: vec![],
            owns_bridge: true,
            dns_enabled: false,
        }
    }

    fn lease(ip: &str, ifname: &str) -> Lease {
        Lease {
            container_id: "c".into(),
            container_name: "c".into(),
            network: "n".into(),
            ifname: ifname.into(),
            host_veth: "v".into(),
            ipv4: ip.parse().unwrap(),
            ipv6: None,
            mac: String::new(),
            ports: vec![],
            aliases: vec![],
        }
    }

    #[test]
    fn picks_lowest_free_and_exhausts() {
        let n = net();
        let mut leases = Vec::new();
        let (a, a6) = pick_addresses(&n, &leases, Ipv4Choice::Any).unwrap();
        assert_eq!(a, "10.213.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(a6, Some("fd00:213::2".parse().unwrap()));
        for i in 2..=6 {
            leases.push(lease(&format!("10.213.0.{i}"), "eth0"));
        }
        assert!(matches!(
            pick_addresses(&n, &leases, Ipv4Choice::Any),
            Err(IpamError::Exhausted { .. })
        ));
        leases.remove(1);
        assert_eq!(
            pick_addresses(&n, &leases, Ipv4Choice::Any).unwrap().0,
            "10.213.0.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_wanted_address_exactly_or_preferably() {
        let n = net();
        let leases = vec![lease("10.213.0.2", "eth0")];
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        let (a, a6) = pick_addresses(&n, &leases, Ipv4Choice::Exactly(ip("10.213.0.5"))).unwrap();
        assert_eq!(a.to_string(), "10.213.0.5");
        assert_eq!(a6.unwrap().to_string(), "fd00:213::5");
        let e = pick_addresses(&n, &leases, Ipv4Choice::Exactly(ip("10.213.0.2"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.213.0.2 on network n is taken by container c"
        );
        let e = pick_addresses(&n, &leases, Ipv4Choice::Exactly(ip("10.213.0.1"))).unwrap_err();
        assert!(e.to_string().contains("the network's gateway"), "{e}");
        for outside in ["10.9.9.9", "10.213.0.0", "10.213.0.7"] {
            let e = pick_addresses(&n, &leases, Ipv4Choice::Exactly(ip(outside))).unwrap_err();
            assert!(matches!(e, IpamError::NotInSubnet { .. }), "{outside}: {e}");
        }
        // Preferably: the wanted one when free, else the lowest free one.
        let p = |s| {
            pick_addresses(&n, &leases, Ipv4Choice::Preferably(ip(s)))
                .unwrap()
                .0
        };
        assert_eq!(p("10.213.0.4").to_string(), "10.213.0.4");
        assert_eq!(p("10.213.0.2").to_string(), "10.213.0.3");
        assert_eq!(p("10.9.9.9").to_string(), "10.213.0.3");
    }

    #[test]
    fn ifnames_fill_gaps() {
        assert_eq!(next_ifname(&[]), "eth0");
        assert_eq!(next_ifname(&[lease("10.0.0.2", "eth0")]), "eth1");
        assert_eq!(next_ifname(&[lease("10.0.0.2", "eth1")]), "eth0");
    }

    #[test]
    fn store_round_trip_under_lock() {
        let dir = std::env::temp_dir().join(format!("hako-ipam-{}", std::process::id()));
        let store = Store::new(&dir);
        {
            let l = store.lock(true).unwrap();
            l.save_network(&net()).unwrap();
            l.save_leases("n", &[lease("10.213.0.2", "eth0")]).unwrap();
            assert_eq!(l.networks().unwrap(), vec![net()]);
            assert_eq!(l.leases_of("c").unwrap().len(), 1);
            l.remove_network("n").unwrap();
            assert!(l.networks().unwrap().is_empty());
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
