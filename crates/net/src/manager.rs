//! The engine-facing API: networks (create/ls/inspect/rm) and container
//! attachments (connect/disconnect/release), plus the name files.
//!
//! Every call takes the state lock for its whole duration, applies kernel
//! state first and records it on disk last; a failure part-way undoes what
//! the call did, so the disk never names a link or rule that does not exist
//! (a crash between the two can leave an orphan link or rule, which the
//! next `release`/`remove` of the same container/network deletes by name).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::ipam::{self, IpamError, Ipv4Choice, Lease, Locked, Network, Store};
use crate::link::{self, LinkChange, LinkError, Rtnl, VethPeer};
use crate::names::{self, HostEntry, NameFiles, NamesError};
use crate::netns::{Netns, NetnsError};
use crate::nft::{Nft, NftError};
use crate::ports::PortMapping;
use crate::subnet::Subnet;
use crate::sysctl::{self, SysctlError};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Names(#[from] NamesError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(
        "network name {0:?}: use 1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    BadName(String),
    #[error("bridge name {0:?}: use 1-15 characters of [A-Za-z0-9_-]")]
    BadBridgeName(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {name}: subnet {subnet} overlaps network {other} ({other_subnet})")]
    Overlap {
        name: String,
        subnet: Subnet,
        other: String,
        other_subnet: Subnet,
    },
    #[error("network {name}: subnet {subnet} overlaps host address {addr} on another link")]
    HostOverlap {
        name: String,
        subnet: Subnet,
        addr: IpAddr,
    },
    #[error("network {name}: subnet {subnet} overlaps the host's route to {route} (give another with --subnet)")]
    RouteOverlap {
        name: String,
        subnet: Subnet,
        route: Subnet,
    },
    #[error("-p {mapping}: host port {port} is already published by container {owner}")]
    PortTaken {
        mapping: PortMapping,
        port: u16,
        owner: String,
    },
    #[error("{0}")]
    PortInUse(crate::ports::PortInUse),
    #[error("network {name}: bridge {bridge} is already used by network {other}")]
    BridgeTaken {
        name: String,
        bridge: String,
        other: String,
    },
    #[error("network {name}: gateway {gateway} is not a host address of {subnet}")]
    BadGateway {
        name: String,
        gateway: IpAddr,
        subnet: Subnet,
    },
    #[error("network {name}: {what} subnet {subnet} has the wrong address family")]
    Family {
        name: String,
        what: &'static str,
        subnet: Subnet,
    },
    #[error("network {name}: no free /24 left in pool {pool}")]
    NoFreeSubnet { name: String, pool: Subnet },
    #[error("network {name} is in use by container(s) {containers}")]
    InUse { name: String, containers: String },
    #[error("--mac-address {mac}: already used on network {network} by container {owner}")]
    MacTaken {
        mac: String,
        network: String,
        owner: String,
    },
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("network mode {0:?}: expected bridge, none, host, container:NAME or a network name")]
    BadMode(String),
}

/// The default network's subnet. Not Docker's (172.17.0.0/16, its pools in
/// 172.16.0.0/12 and 192.168.0.0/16) nor podman's (10.88.0.0/16, and
/// 10.89.0.0/16 up for its other networks), so the engines can share a host.
pub const DEFAULT_SUBNET: &str = "10.77.0.0/16";
/// Where networks created without `--subnet` get a free /24.
pub const DEFAULT_POOL: &str = "10.78.0.0/16";

/// Where state lives and which names hako owns on the host.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Directory for networks, leases and the lock, e.g. `/var/lib/hako/net`.
    pub state_dir: PathBuf,
    /// The nf_tables table (family ip) holding every hako rule.
    pub nft_table: String,
    /// What [`Manager::ensure_default`] creates.
    pub default_network: NetworkSpec,
    /// Networks created without `--subnet` get the first free /24 here.
    pub subnet_pool: Subnet,
}

impl NetConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        NetConfig {
            state_dir: state_dir.into(),
            nft_table: "hako".into(),
            default_network: NetworkSpec {
                bridge: Some("hako0".into()),
                subnet: Some(DEFAULT_SUBNET.parse().expect("valid literal")),
                ..NetworkSpec::new("hako")
            },
            subnet_pool: DEFAULT_POOL.parse().expect("valid literal"),
        }
    }
}

/// What `hako network create` asks for; unset fields get defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// Default: `hako<N>`, the lowest N free.
    pub bridge: Option<String>,
    /// Default: the first free /24 of [`NetConfig::subnet_pool`].
    pub subnet: Option<Subnet>,
    /// Default: the subnet's first host address.
    pub gateway: Option<IpAddr>,
    /// An IPv6 subnet makes the network dual-stack.
    pub subnet6: Option<Subnet>,
    pub gateway6: Option<IpAddr>,
    /// Default 1500.
    pub mtu: Option<u32>,
    /// No masquerade (and no ip_forward): containers reach only the host
    /// and each other.
    pub internal: bool,
    pub dns: Vec<IpAddr>,
    /// The network's own name server for its containers (see
    /// [`crate::dns`]); user networks have one, the default does not.
    pub dns_enabled: bool,
}

impl NetworkSpec {
    pub fn new(name: impl Into<String>) -> Self {
        NetworkSpec {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// `--network` of `hako run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new netns attached to these bridge networks (empty: the default).
    Bridge(Vec<String>),
    /// A new netns with only `lo` (see [`Manager::setup_loopback`]).
    None,
    /// The host's namespace: no netns, no NIC, the host's name files.
    Host,
    /// Join another container's netns (the engine resolves the name).
    Container(String),
}

impl FromStr for NetworkMode {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        Ok(match s {
            "" => return Err(NetError::BadMode(s.to_owned())),
            "bridge" => NetworkMode::Bridge(Vec::new()),
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => match s.strip_prefix("container:") {
                Some("") => return Err(NetError::BadMode(s.to_owned())),
                Some(c) => NetworkMode::Container(c.to_owned()),
                None => {
                    let nets: Vec<String> = s.split(',').map(str::to_owned).collect();
                    for n in &nets {
                        check_name(n)?;
                    }
                    NetworkMode::Bridge(nets)
                }
            },
        })
    }
}

/// A container to attach to a network.
#[derive(Debug, Clone, Copy)]
pub struct Attach<'a> {
    pub container_id: &'a str,
    /// Its name, written to peers' /etc/hosts.
    pub container_name: &'a str,
    pub netns: &'a Netns,
    pub ports: &'a [PortMapping],
    /// More names for it on the network (`--network-alias`).
    pub aliases: &'a [String],
    /// Its IPv4 address there (`--ip`, or a restored one's), or any.
    pub ipv4: Ipv4Choice,
    /// Its interface's MAC address (`--mac-address`), else one derived
    /// from the IPv4 address (02:42 and the address, as Docker's).
    pub mac: Option<[u8; 6]>,
}

/// `network inspect`: the definition plus who is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub network: Network,
    pub leases: Vec<Lease>,
}

pub struct Manager {
    cfg: NetConfig,
    store: Store,
}

fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(NetError::BadName(name.to_owned()))
    }
}

fn check_bridge_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(NetError::BadBridgeName(name.to_owned()))
    }
}

/// FNV-1a, for short stable host-side veth names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn net_tag(network: &str) -> String {
    format!("hako:net:{network}")
}

fn ctr_tag(container_id: &str, network: &str) -> String {
    format!("hako:ctr:{container_id}@{network}")
}

fn gateway_for(
    name: &str,
    subnet: Subnet,
    given: Option<IpAddr>,
    what: &'static str,
) -> Result<IpAddr, NetError> {
    let range = subnet.host_range();
    let gw = match given {
        Some(g) => g,
        None => subnet.nth(range.start).ok_or(NetError::Family {
            name: name.to_owned(),
            what,
            subnet,
        })?,
    };
    match subnet.offset(gw) {
        Some(off) if range.contains(&off) => Ok(gw),
        _ => Err(NetError::BadGateway {
            name: name.to_owned(),
            gateway: gw,
            subnet,
        }),
    }
}

impl Manager {
    pub fn new(cfg: NetConfig) -> Self {
        let store = Store::new(&cfg.state_dir);
        Manager { cfg, store }
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Creates a bridge network: the bridge (reused if it exists, and then
    /// left in place by [`Manager::remove`]), its
    /// gateway address(es), masquerade rules, and the definition on disk.
    pub fn create(&self, spec: &NetworkSpec) -> Result<Network, NetError> {
        let lk = self.store.lock(true)?;
        self.create_locked(&lk, spec)
    }

    /// The default network's name (never pruned).
    pub fn default_name(&self) -> &str {
        &self.cfg.default_network.name
    }

    /// The default network (`hako`, bridge `hako0`, [`DEFAULT_SUBNET`]), created
    /// on first use.
    pub fn ensure_default(&self) -> Result<Network, NetError> {
        let lk = self.store.lock(true)?;
        if let Some(n) = lk.network(&self.cfg.default_network.name)? {
            return Ok(n);
        }
        self.create_locked(&lk, &self.cfg.default_network)
    }

    fn create_locked(&self, lk: &Locked<'_>, spec: &NetworkSpec) -> Result<Network, NetError> {
        let name = spec.name.as_str();
        check_name(name)?;
        if lk.network(name)?.is_some() {
            return Err(NetError::Exists(name.to_owned()));
        }
        let others = lk.networks()?;
        let mut rtnl = Rtnl::new()?;

        let bridge = match &spec.bridge {
            Some(b) => b.clone(),
            None => {
                let mut n = 0;
                loop {
                    let b = format!("hako{n}");
                    if !others.iter().any(|o| o.bridge == b) && rtnl.index(&b)?.is_none() {
                        break b;
                    }
                    n += 1;
                }
            }
        };
        check_bridge_name(&bridge)?;
        if let Some(o) = others.iter().find(|o| o.bridge == bridge) {
            return Err(NetError::BridgeTaken {
                name: name.to_owned(),
                bridge,
                other: o.name.clone(),
            });
        }

        let host_addrs = rtnl.addresses()?;
        let host_routes = rtnl.routes()?;
        let bridge_index = rtnl.index(&bridge)?;
        let taken = |s: &Subnet| -> Result<(), NetError> {
            for o in &others {
                for os in std::iter::once(o.subnet).chain(o.subnet6) {
                    if os.overlaps(s) {
                        return Err(NetError::Overlap {
                            name: name.to_owned(),
                            subnet: *s,
                            other: o.name.clone(),
                            other_subnet: os,
                        });
                    }
                }
            }
            // A host address in the subnet (other than on the bridge being
            // reused) means the host already routes it somewhere else.
            if let Some((_, addr, _)) = host_addrs
                .iter()
                .find(|(idx, a, _)| Some(*idx) != bridge_index && s.contains(*a))
            {
                return Err(NetError::HostOverlap {
                    name: name.to_owned(),
                    subnet: *s,
                    addr: *addr,
                });
            }
            // A route to it (a VPN, another engine's bridge, a LAN) means
            // the host sends those addresses elsewhere.
            for (dst, prefix, oif) in &host_routes {
                if Some(*oif) == bridge_index {
                    continue;
                }
                if let Ok(route) = Subnet::new(*dst, *prefix) {
                    if route.overlaps(s) {
                        return Err(NetError::RouteOverlap {
                            name: name.to_owned(),
                            subnet: *s,
                            route,
                        });
                    }
                }
            }
            Ok(())
        };

        let subnet = match spec.subnet {
            Some(s) => {
                taken(&s)?;
                s
            }
            None => {
                let pool = self.cfg.subnet_pool;
                let count = 1u128 << 24u8.saturating_sub(pool.prefix()).min(24);
                (0..count)
                    .filter_map(|i| pool.nth(i * 256))
                    .filter_map(|a| Subnet::new(a, 24).ok())
                    .find(|s| taken(s).is_ok())
                    .ok_or(NetError::NoFreeSubnet {
                        name: name.to_owned(),
                        pool,
                    })?
            }
        };
        if subnet.is_ipv6() {
            return Err(NetError::Family {
                name: name.to_owned(),
                what: "IPv4",
                subnet,
            });
        }
        let gateway = gateway_for(name, subnet, spec.gateway, "IPv4")?;
        let (subnet6, gateway6) = match spec.subnet6 {
            Some(s6) => {
                if !s6.is_ipv6() {
                    return Err(NetError::Family {
                        name: name.to_owned(),
                        what: "IPv6",
                        subnet: s6,
                    });
                }
                taken(&s6)?;
                (
                    Some(s6),
                    Some(gateway_for(name, s6, spec.gateway6, "IPv6")?),
                )
            }
            None => (None, None),
        };
        let net = Network {
            name: name.to_owned(),
            bridge,
            subnet,
            gateway,
            subnet6,
            gateway6,
            mtu: spec.mtu.unwrap_or(1500),
            internal: spec.internal,
            dns: spec.dns.clone(),
            owns_bridge: false,
            dns_enabled: spec.dns_enabled,
        };

        let created = rtnl.create_bridge(&net.bridge, Some(net.mtu))?;
        let net = Network {
            owns_bridge: created,
            ..net
        };
        let applied = self.apply_network(&mut rtnl, &net);
        if let Err(e) = applied.and_then(|()| Ok(lk.save_network(&net)?)) {
            let _ = Nft::new(&self.cfg.nft_table).and_then(|mut n| n.delete_tagged(&net_tag(name)));
            if created {
                let _ = rtnl.delete(&net.bridge);
            }
            return Err(e);
        }
        Ok(net)
    }

    fn apply_network(&self, rtnl: &mut Rtnl, net: &Network) -> Result<(), NetError> {
        let prefix = net.subnet.prefix();
        rtnl.add_addr(&net.bridge, net.gateway, prefix)?;
        if let (Some(s6), Some(g6)) = (net.subnet6, net.gateway6) {
            rtnl.add_addr(&net.bridge, g6, s6.prefix())?;
        }
        rtnl.change(
            &net.bridge,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )?;
        sysctl::set(&format!("net.ipv4.conf.{}.route_localnet", net.bridge), "1")?;
        let mut nft = Nft::new(&self.cfg.nft_table)?;
        nft.ensure_table()?;
        nft.delete_tagged(&net_tag(&net.name))?;
        nft.add_network_rules(
            &net_tag(&net.name),
            &net.subnet,
            net.subnet6.as_ref(),
            &net.bridge,
            !net.internal,
        )?;
        if !net.internal {
            sysctl::enable_ip_forward()?;
        }
        Ok(())
    }

    /// Re-creates what the kernel lost while the definition stayed on
    /// disk (a reboot, or a deleted bridge or nft table): the bridge, its
    /// addresses and the network's rules. Cheap when all is there (one
    /// link lookup, one rule dump); called by every attach, so nothing has
    /// to run at boot.
    fn ensure_kernel_state(
        &self,
        lk: &Locked<'_>,
        rtnl: &mut Rtnl,
        net: &Network,
    ) -> Result<(), NetError> {
        let tag = net_tag(&net.name);
        let has_bridge = rtnl.index(&net.bridge)?.is_some();
        let has_rules = Nft::new(&self.cfg.nft_table)?
            .rules()?
            .iter()
            .any(|r| r.comment.as_deref() == Some(tag.as_str()));
        if has_bridge && has_rules {
            return Ok(());
        }
        if !has_bridge && rtnl.create_bridge(&net.bridge, Some(net.mtu))? && !net.owns_bridge {
            // An admin's bridge that is gone is ours now: delete it with
            // the network.
            lk.save_network(&Network {
                owns_bridge: true,
                ..net.clone()
            })?;
        }
        self.apply_network(rtnl, net)
    }

    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        Ok(self.store.lock(false)?.networks()?)
    }

    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetError> {
        let lk = self.store.lock(false)?;
        let network = lk
            .network(name)?
            .ok_or_else(|| NetError::NotFound(name.to_owned()))?;
        let leases = lk.leases(name)?;
        Ok(NetworkInfo { network, leases })
    }

    /// Removes a network with no containers: its rules, its bridge, its
    /// files; and hako's nft table once it holds no rule at all.
    pub fn remove(&self, name: &str) -> Result<(), NetError> {
        let lk = self.store.lock(true)?;
        let net = lk
            .network(name)?
            .ok_or_else(|| NetError::NotFound(name.to_owned()))?;
        let leases = lk.leases(name)?;
        if !leases.is_empty() {
            let ids: Vec<&str> = leases.iter().map(|l| l.container_id.as_str()).collect();
            return Err(NetError::InUse {
                name: name.to_owned(),
                containers: ids.join(", "),
            });
        }
        let mut nft = Nft::new(&self.cfg.nft_table)?;
        nft.delete_tagged(&net_tag(name))?;
        // A bridge that existed before the network (an admin's) is left in
        // place, with the gateway address hako added to it.
        if net.owns_bridge {
            Rtnl::new()?.delete(&net.bridge)?;
        }
        lk.remove_network(name)?;
        if nft.rules()?.is_empty() {
            nft.delete_table()?;
        }
        Ok(())
    }

    /// Attaches a container's netns to `network`: a veth pair whose inner
    /// end is `eth0` (`eth1`, … for further networks) with a leased
    /// address, `lo` up, the default route via the gateway (first network
    /// only), and DNAT rules for `ports`.
    pub fn connect(&self, network: &str, ctr: &Attach<'_>) -> Result<Lease, NetError> {
        ctr.netns.ensure_foreign()?;
        let lk = self.store.lock(true)?;
        let net = lk
            .network(network)?
            .ok_or_else(|| NetError::NotFound(network.to_owned()))?;
        let mut leases = lk.leases(network)?;
        if leases.iter().any(|l| l.container_id == ctr.container_id) {
            return Err(NetError::AlreadyConnected {
                container: ctr.container_id.to_owned(),
                network: network.to_owned(),
            });
        }
        self.check_ports(&lk, ctr)?;
        let mut rtnl = Rtnl::new()?;
        self.ensure_kernel_state(&lk, &mut rtnl, &net)?;
        let mine = lk.leases_of(ctr.container_id)?;
        let ifname = ipam::next_ifname(&mine);
        let (ipv4, ipv6) = ipam::pick_addresses(&net, &leases, ctr.ipv4)?;
        let IpAddr::V4(v4) = ipv4 else {
            unreachable!("IPv4 subnet yields IPv4 addresses")
        };
        let mac = ctr.mac.unwrap_or_else(|| link::mac_for(v4));
        // Two equal addresses on one bridge would each get half the frames.
        if let Some(l) = leases.iter().find(|l| l.mac == link::format_mac(&mac)) {
            return Err(NetError::MacTaken {
                mac: l.mac.clone(),
                network: network.to_owned(),
                owner: l.container_name.clone(),
            });
        }

        let mut host_veth = String::new();
        for salt in 0u32.. {
            let h = fnv1a(&[ctr.container_id, network, &salt.to_string()]);
            let cand = format!("hk{:012x}", h & 0xffff_ffff_ffff);
            if rtnl.index(&cand)?.is_none() {
                host_veth = cand;
                break;
            }
        }
        let lease = Lease {
            container_id: ctr.container_id.to_owned(),
            container_name: ctr.container_name.to_owned(),
            network: network.to_owned(),
            ifname,
            host_veth,
            ipv4,
            ipv6,
            mac: link::format_mac(&mac),
            ports: ctr.ports.to_vec(),
            aliases: ctr.aliases.to_vec(),
        };
        let default_route = mine.is_empty();
        let done = self
            .plumb(&mut rtnl, &net, &lease, ctr.netns, mac, default_route)
            .and_then(|()| {
                leases.push(lease.clone());
                Ok(lk.save_leases(network, &leases)?)
            });
        if let Err(e) = done {
            // Best-effort rollback: the original error is the one to report.
            let _ = self.unplumb(&lease);
            return Err(e);
        }
        Ok(lease)
    }

    /// A host port has one owner: not another container's published port
    /// (on any network), not twice in one request, and not a port a host
    /// program holds (checked by binding it, see [`PortMapping::reserve`]).
    fn check_ports(&self, lk: &Locked<'_>, ctr: &Attach<'_>) -> Result<(), NetError> {
        if ctr.ports.is_empty() {
            return Ok(());
        }
        for (i, p) in ctr.ports.iter().enumerate() {
            if let Some(q) = ctr.ports[..i].iter().find(|q| q.clashes_with(p)) {
                return Err(NetError::PortTaken {
                    mapping: *p,
                    port: p.host_port,
                    owner: format!("{} (its own -p {q})", ctr.container_name),
                });
            }
        }
        for n in lk.networks()? {
            for l in lk.leases(&n.name)? {
                for q in &l.ports {
                    if let Some(p) = ctr.ports.iter().find(|p| p.clashes_with(q)) {
                        return Err(NetError::PortTaken {
                            mapping: *p,
                            port: p.host_port,
                            owner: l.container_name.clone(),
                        });
                    }
                }
            }
        }
        let held: Vec<_> = ctr
            .ports
            .iter()
            .map(|p| p.reserve().map_err(NetError::PortInUse))
            .collect::<Result<_, _>>()?;
        drop(held);
        Ok(())
    }

    fn plumb(
        &self,
        rtnl: &mut Rtnl,
        net: &Network,
        lease: &Lease,
        netns: &Netns,
        mac: [u8; 6],
        default_route: bool,
    ) -> Result<(), NetError> {
        let nsfile = netns.open()?;
        let nspath = netns.path().display().to_string();
        {
            use std::os::fd::AsFd;
            rtnl.create_veth(
                &lease.host_veth,
                Some(net.mtu),
                &VethPeer {
                    name: &lease.ifname,
                    netns: nsfile.as_fd(),
                    netns_path: &nspath,
                    mac: Some(mac),
                    mtu: Some(net.mtu),
                },
            )?;
        }
        let master = rtnl.require(&net.bridge)?;
        rtnl.change(
            &lease.host_veth,
            &LinkChange {
                up: Some(true),
                master: Some(master),
                ..Default::default()
            },
        )?;
        // Inside the container: `lo` and the new NIC up, addresses, route.
        netns.run(|| -> Result<(), LinkError> {
            let mut c = Rtnl::new()?;
            let up = LinkChange {
                up: Some(true),
                ..Default::default()
            };
            c.change("lo", &up)?;
            c.add_addr(&lease.ifname, lease.ipv4, net.subnet.prefix())?;
            if let (Some(ip6), Some(s6)) = (lease.ipv6, net.subnet6) {
                c.add_addr(&lease.ifname, ip6, s6.prefix())?;
            }
            c.change(&lease.ifname, &up)?;
            if default_route {
                c.add_default_route(&lease.ifname, net.gateway)?;
                if let Some(g6) = net.gateway6 {
                    c.add_default_route(&lease.ifname, g6)?;
                }
            }
            Ok(())
        })??;
        if !lease.ports.is_empty() {
            let IpAddr::V4(v4) = lease.ipv4 else {
                unreachable!("IPv4 lease")
            };
            let mut nft = Nft::new(&self.cfg.nft_table)?;
            nft.ensure_table()?;
            nft.add_port_rules(
                &ctr_tag(&lease.container_id, &lease.network),
                v4,
                &lease.ports,
            )?;
        }
        Ok(())
    }

    /// Best-effort removal of a lease's kernel state (rules, veth); the
    /// container's end of the veth goes with the host end.
    fn unplumb(&self, lease: &Lease) -> Result<(), NetError> {
        let rules = self.delete_rules(lease);
        let veth = delete_veth(lease);
        rules.and(veth)
    }

    /// The DNAT rules of a lease's published ports.
    fn delete_rules(&self, lease: &Lease) -> Result<(), NetError> {
        Nft::new(&self.cfg.nft_table)
            .and_then(|mut n| n.delete_tagged(&ctr_tag(&lease.container_id, &lease.network)))?;
        Ok(())
    }

    /// Detaches a container from one network: rules, veth, lease.
    pub fn disconnect(&self, network: &str, container_id: &str) -> Result<(), NetError> {
        let lk = self.store.lock(true)?;
        let mut leases = lk.leases(network)?;
        let Some(pos) = leases.iter().position(|l| l.container_id == container_id) else {
            return Err(NetError::NotConnected {
                container: container_id.to_owned(),
                network: network.to_owned(),
            });
        };
        self.unplumb(&leases[pos])?;
        leases.remove(pos);
        lk.save_leases(network, &leases)?;
        Ok(())
    }

    /// Detaches a container from every network (call when it is removed,
    /// or when it stopped: its port rules, veths and leases).
    pub fn release(&self, container_id: &str) -> Result<(), NetError> {
        self.begin_release(container_id)?.finish()
    }

    /// [`Manager::release`] in two halves, for a caller that need not wait
    /// for the kernel: this one takes the store's lock and deletes the
    /// container's port rules; [`Release::finish`] takes its veths off
    /// their bridges and down and deletes its leases, under the same lock,
    /// and then deletes the veths (each `RTM_DELLINK` waits ~15 ms for the
    /// kernel's RCU grace periods) without it. Every other user of the
    /// store waits for that lock, so none sees a lease whose address is
    /// still on a bridge, or a freed address that still is; and the lock is
    /// an flock(2): a child process that inherited it can `finish` while
    /// its parent goes on (closing the parent's copy keeps it held).
    pub fn begin_release(&self, container_id: &str) -> Result<Release<'_>, NetError> {
        let lk = self.store.lock(true)?;
        let leases = lk
            .leases_of(container_id)?
            .into_iter()
            .map(|l| {
                let rules = self.delete_rules(&l);
                (l, rules)
            })
            .collect();
        Ok(Release {
            lk,
            container_id: container_id.to_owned(),
            leases,
        })
    }

    /// A renamed container: its leases carry the new name (what peers'
    /// /etc/hosts list and port conflicts name).
    pub fn rename(&self, container_id: &str, name: &str) -> Result<(), NetError> {
        let lk = self.store.lock(true)?;
        for l in lk.leases_of(container_id)? {
            let mut leases = lk.leases(&l.network)?;
            for x in leases.iter_mut().filter(|x| x.container_id == container_id) {
                x.container_name = name.to_string();
            }
            lk.save_leases(&l.network, &leases)?;
        }
        Ok(())
    }

    /// The container's leases on all networks, eth0 first.
    pub fn leases_of(&self, container_id: &str) -> Result<Vec<Lease>, NetError> {
        let mut v = self.store.lock(false)?.leases_of(container_id)?;
        v.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        Ok(v)
    }

    /// For `--network none`: bring up `lo` in the container's namespace.
    pub fn setup_loopback(netns: &Netns) -> Result<(), NetError> {
        netns.run(|| -> Result<(), LinkError> {
            Rtnl::new()?.change(
                "lo",
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )
        })??;
        Ok(())
    }

    /// Writes resolv.conf, hosts and hostname for a container into `dir`,
    /// for the engine to bind-mount read-only over /etc/… . resolv.conf uses
    /// the first network's DNS servers if it has any, else the host's minus
    /// loopback servers; hosts lists the container's own addresses then
    /// every other container on its networks. With no lease (mode none) only
    /// the loopback names are listed; for `--network host` the engine binds
    /// the host's own files instead.
    ///
    /// Files are rewritten in place (same inode), so calling this again for
    /// the peers of a container that just joined refreshes their bind-mounted
    /// /etc/hosts.
    pub fn write_name_files(
        &self,
        container_id: &str,
        hostname: &str,
        dir: &Path,
        opts: &names::NameOptions,
    ) -> Result<NameFiles, NetError> {
        let lk = self.store.lock(false)?;
        let mut mine = lk.leases_of(container_id)?;
        mine.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        let mut own = Vec::new();
        let mut peers = Vec::new();
        let mut dns = Vec::new();
        for (i, l) in mine.iter().enumerate() {
            let mut names = vec![hostname.to_owned()];
            if l.container_name != hostname {
                names.push(l.container_name.clone());
            }
            for ip in std::iter::once(l.ipv4).chain(l.ipv6) {
                own.push(HostEntry {
                    ip,
                    names: names.clone(),
                });
            }
            if let Some(net) = lk.network(&l.network)? {
                if i == 0 {
                    // A network with its own name server: the container asks
                    // it (on the gateway), and it asks the network's or the
                    // host's servers.
                    dns = if net.dns_enabled {
                        vec![net.gateway]
                    } else {
                        net.dns.clone()
                    };
                    if !opts.gateway_names.is_empty() {
                        own.push(HostEntry {
                            ip: net.gateway,
                            names: opts.gateway_names.clone(),
                        });
                    }
                }
            }
            for p in lk.leases(&l.network)? {
                if p.container_id == container_id {
                    continue;
                }
                for ip in std::iter::once(p.ipv4).chain(p.ipv6) {
                    peers.push(HostEntry {
                        ip,
                        names: vec![p.container_name.clone()],
                    });
                }
            }
        }
        let resolv = opts.resolv(&names::host_resolv_conf()?, &dns);
        own.extend(opts.extra_hosts.iter().cloned());
        let hosts = names::hosts(&own, &peers);
        Ok(names::write_files(dir, hostname, &resolv, &hosts)?)
    }
}

/// A host veth, and with it its peer in the container (the kernel
/// deletes both ends of a pair).
fn delete_veth(lease: &Lease) -> Result<(), NetError> {
    Rtnl::new().and_then(|mut r| r.delete(&lease.host_veth))?;
    Ok(())
}

/// Takes a lease's host veth off its bridge and down (fast: no RCU grace
/// period to wait for, unlike its deletion): the container's address is
/// then nowhere on the network. Ok when the veth is already gone.
fn detach_veth(lease: &Lease) -> Result<(), NetError> {
    let mut r = Rtnl::new()?;
    if r.index(&lease.host_veth)?.is_none() {
        return Ok(());
    }
    r.change(
        &lease.host_veth,
        &LinkChange {
            up: Some(false),
            master: Some(0),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// A container's release with its port rules gone and the store still
/// locked: see [`Manager::begin_release`].
pub struct Release<'a> {
    lk: Locked<'a>,
    container_id: String,
    /// Each lease with the outcome of deleting its rules.
    leases: Vec<(Lease, Result<(), NetError>)>,
}

impl Release<'_> {
    /// Whether the container had no leases (nothing for `finish` to wait on).
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Under the lock, takes each veth off its bridge and deletes each
    /// lease whose port rules and veth are off the network (one that
    /// failed stays, for a later release to retry); then, with the store
    /// unlocked, deletes the veths. The first error, if any, once the rest
    /// is done.
    pub fn finish(self) -> Result<(), NetError> {
        let Release {
            lk,
            container_id,
            leases,
        } = self;
        let mut first = None;
        let mut detached = Vec::new();
        for (l, rules) in leases {
            if let Err(e) = rules.and(detach_veth(&l)) {
                first.get_or_insert(e);
                continue;
            }
            let mut all = lk.leases(&l.network)?;
            all.retain(|x| x.container_id != container_id);
            lk.save_leases(&l.network, &all)?;
            detached.push(l);
        }
        // A start waiting for the store (back to back, the next `run`)
        // goes on now, not after the kernel's unregistering.
        drop(lk);
        for l in &detached {
            if let Err(e) = delete_veth(l) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(
            "bridge".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge(vec![])
        );
        assert_eq!("none".parse::<NetworkMode>().unwrap(), NetworkMode::None);
        assert_eq!("host".parse::<NetworkMode>().unwrap(), NetworkMode::Host);
        assert_eq!(
            "container:web".parse::<NetworkMode>().unwrap(),
            NetworkMode::Container("web".into())
        );
        assert_eq!(
            "a,b".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge(vec!["a".into(), "b".into()])
        );
        assert!("container:".parse::<NetworkMode>().is_err());
        assert!("bad name".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn names_and_gateways() {
        assert!(check_name("my-net_1.x").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_bridge_name("hkt0123456789ab").is_ok());
        assert!(check_bridge_name("hkt0123456789abc").is_err());
        let s: Subnet = "10.213.5.0/24".parse().unwrap();
        assert_eq!(
            gateway_for("n", s, None, "IPv4").unwrap(),
            "10.213.5.1".parse::<IpAddr>().unwrap()
        );
        assert!(gateway_for("n", s, Some("10.213.5.255".parse().unwrap()), "IPv4").is_err());
        assert!(gateway_for("n", s, Some("10.213.6.1".parse().unwrap()), "IPv4").is_err());
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let h = fnv1a(&["a".repeat(64).as_str(), "net", "0"]);
        let name = format!("hk{:012x}", h & 0xffff_ffff_ffff);
        assert_eq!(name.len(), 14);
    }
}
