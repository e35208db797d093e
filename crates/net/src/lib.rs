//! hako-net: container networking over netlink.
//!
//! - [`link`]: bridges, veth pairs, addresses, routes (rtnetlink);
//! - [`ipam`]: networks and address leases on disk under a file lock;
//! - [`nft`]: masquerade and published ports in an nf_tables table of
//!   hako's own (`table inet hako`);
//! - [`names`]: resolv.conf, hosts and hostname for the container;
//! - [`manager`]: the engine-facing API tying them together;
//! - [`rootless`]: `pasta` for unprivileged users.
//!
//! No command-line tools (`ip`, `iptables`, `nft`) are run: everything is
//! netlink, spoken synchronously (no async runtime) through a small shared
//! encoder.
//!
//! # A container's lifecycle, from the engine
//!
//! ```no_run
//! use hako_net::{Attach, Ipv4Choice, Manager, NetConfig, NetworkMode, Netns, PortMapping};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mgr = Manager::new(NetConfig::new("/var/lib/hako/net"));
//! let mode: NetworkMode = "bridge".parse()?;            // --network
//! let ports: Vec<PortMapping> = vec!["127.0.0.1:8080:80".parse()?]; // -p
//! let (id, pid) = ("4f3c…", 4242u32);
//! // After the runtime created the container's netns (before its process
//! // runs the user's command):
//! let netns = Netns::from_pid(pid); // or Netns::from_path(bind mount)
//! match &mode {
//!     NetworkMode::Bridge(nets) => {
//!         let nets = if nets.is_empty() {
//!             vec![mgr.ensure_default()?.name]
//!         } else {
//!             nets.clone()
//!         };
//!         for (i, n) in nets.iter().enumerate() {
//!             let p: &[PortMapping] = if i == 0 { &ports } else { &[] };
//!             let at = Attach {
//!                 container_id: id,
//!                 container_name: "web",
//!                 netns: &netns,
//!                 ports: p,
//!                 aliases: &[], // --network-alias
//!                 ipv4: Ipv4Choice::Any, // or Exactly(--ip)
//!                 mac: None, // or Some(--mac-address)
//!             };
//!             mgr.connect(n, &at)?; // eth0, eth1, …
//!         }
//!     }
//!     NetworkMode::None => Manager::setup_loopback(&netns)?,
//!     NetworkMode::Host | NetworkMode::Container(_) => {} // no new netns
//! }
//! // Name files, bind-mounted read-only over /etc/{resolv.conf,hosts,hostname}:
//! // (--dns, --dns-search, --dns-option, --add-host in the options; a
//! // network with `dns_enabled` gets its gateway, see `hako_net::dns`.)
//! let opts = hako_net::names::NameOptions::default();
//! let files = mgr.write_name_files(id, "web", "/run/hako/4f3c/net".as_ref(), &opts)?;
//! // … container runs; `hako network connect n2 web` = mgr.connect("n2", …) …
//! // When the container is removed (or its netns is gone after it stopped):
//! mgr.release(id)?;
//! # let _ = files; Ok(()) }
//! ```
//!
//! Rootless (`rootless::is_rootless()`): instead of `connect`, call
//! [`rootless::start_pasta`] with the container's PID and its ports, and
//! record the returned PID to [`rootless::stop_pasta`] it on removal.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod dns;
pub mod ipam;
pub mod link;
pub mod manager;
pub mod names;
pub mod netns;
pub mod nft;
mod nl;
pub mod ports;
pub mod rootless;
pub mod subnet;
pub mod sysctl;

pub use ipam::{Ipv4Choice, Lease, Network};
pub use manager::{
    Attach, Manager, NetConfig, NetError, NetworkInfo, NetworkMode, NetworkSpec, Release,
};
pub use names::NameFiles;
pub use netns::Netns;
pub use ports::{PortMapping, Proto};
pub use subnet::Subnet;
