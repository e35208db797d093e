//! /etc/resolv.conf, /etc/hosts and /etc/hostname for a container.
//!
//! The files are generated into a directory of the engine's choosing (the
//! container's state dir); the engine bind-mounts them read-only over the
//! container's /etc/… after the rootfs is mounted.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("read host resolver config {path}")]
    ReadHost { path: PathBuf, source: io::Error },
    #[error("write {path}")]
    Write { path: PathBuf, source: io::Error },
}

/// Paths of the generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

/// An entry of /etc/hosts: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

/// A container's own resolver and hosts settings (Docker's `--dns`,
/// `--dns-search`, `--dns-option`, `--add-host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameOptions {
    /// Nameservers over the network's and the host's.
    pub dns: Vec<IpAddr>,
    /// Search domains instead of the host's (`.` alone: none).
    pub search: Vec<String>,
    /// Resolver options instead of the host's.
    pub options: Vec<String>,
    /// More /etc/hosts entries.
    pub extra_hosts: Vec<HostEntry>,
    /// Names for the host's address on the container's network
    /// (`--add-host NAME:host-gateway`).
    pub gateway_names: Vec<String>,
}

impl NameOptions {
    /// The container's resolv.conf: [`resolv_conf`] with its own servers
    /// first choice, then its search and options lines when it has them.
    pub fn resolv(&self, host: &str, network_dns: &[IpAddr]) -> String {
        let dns = if self.dns.is_empty() {
            network_dns
        } else {
            &self.dns
        };
        let base = resolv_conf(host, dns);
        let keep = |l: &&str| {
            let w = l.split_whitespace().next().unwrap_or("");
            !(!self.search.is_empty() && (w == "search" || w == "domain")
                || !self.options.is_empty() && w == "options")
        };
        let mut out: String = base
            .lines()
            .filter(keep)
            .map(|l| format!("{l}\n"))
            .collect();
        if !self.search.is_empty() && self.search != ["."] {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn is_loopback_nameserver(line: &str) -> bool {
    let mut w = line.split_whitespace();
    if w.next() != Some("nameserver") {
        return false;
    }
    // Strip an IPv6 zone (fe80::1%eth0) before parsing.
    match w
        .next()
        .map(|a| a.split('%').next().unwrap_or(a).parse::<IpAddr>())
    {
        Some(Ok(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// The container's resolv.conf from the host's: loopback nameservers
/// (systemd-resolved's 127.0.0.53, a local dnsmasq) are unreachable from the
/// container's namespace and are dropped; `search` and `options` stay. When
/// `dns` is non-empty (the network's servers) it replaces every nameserver.
pub fn resolv_conf(host: &str, dns: &[IpAddr]) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let t = line.trim_start();
        if t.starts_with("nameserver") && (!dns.is_empty() || is_loopback_nameserver(t)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for ip in dns {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    out
}

/// Reads the host's resolver config, preferring systemd-resolved's upstream
/// list when /etc/resolv.conf only names its loopback stub.
pub fn host_resolv_conf() -> Result<String, NamesError> {
    let etc = Path::new("/etc/resolv.conf");
    let text = match fs::read_to_string(etc) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(NamesError::ReadHost {
                path: etc.to_owned(),
                source,
            })
        }
    };
    let has_usable = text.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with("nameserver") && !is_loopback_nameserver(t)
    });
    if !has_usable {
        if let Ok(upstream) = fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return Ok(upstream);
        }
    }
    Ok(text)
}

/// /etc/hosts: loopback names, the container's own addresses, then peers.
pub fn hosts(own: &[HostEntry], peers: &[HostEntry]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for e in own.iter().chain(peers) {
        out.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
    }
    out
}

fn write(path: PathBuf, data: &str) -> Result<PathBuf, NamesError> {
    fs::write(&path, data).map_err(|source| NamesError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes `resolv.conf`, `hosts` and `hostname` into `dir`.
pub fn write_files(
    dir: &Path,
    hostname: &str,
    resolv: &str,
    hosts: &str,
) -> Result<NameFiles, NamesError> {
    fs::create_dir_all(dir).map_err(|source| NamesError::Write {
        path: dir.to_owned(),
        source,
    })?;
    Ok(NameFiles {
        resolv_conf: write(dir.join("resolv.conf"), resolv)?,
        hosts: write(dir.join("hosts"), hosts)?,
        hostname: write(dir.join("hostname"), &format!("{hostname}\n"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_own_servers_search_and_options_win() {
        let host = "nameserver 192.0.2.1\nsearch example.org\noptions edns0\n";
        let o = NameOptions {
            dns: vec!["198.51.100.7".parse().unwrap()],
            search: vec!["a.test".into(), "b.test".into()],
            options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            o.resolv(host, &["10.213.0.1".parse().unwrap()]),
            "nameserver 198.51.100.7\nsearch a.test b.test\noptions ndots:2\n"
        );
        let none = NameOptions {
            search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            none.resolv(host, &[]),
            "nameserver 192.0.2.1\noptions edns0\n"
        );
        assert_eq!(
            NameOptions::default().resolv(host, &[]),
            resolv_conf(host, &[])
        );
    }

    #[test]
    fn drops_loopback_nameservers() {
        let host = "# x\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";
        let r = resolv_conf(host, &[]);
        assert_eq!(
            r,
            "# x\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n"
        );
        let r = resolv_conf(host, &["10.213.0.1".parse().unwrap()]);
        assert!(r.ends_with("nameserver 10.213.0.1\n"));
        assert!(!r.contains("192.0.2.1"));
    }

    #[test]
    fn hosts_lists_self_then_peers() {
        let own = [HostEntry {
            ip: "10.213.0.2".parse().unwrap(),
            names: vec!["web".into(), "abc123".into()],
        }];
        let peers = [HostEntry {
            ip: "10.213.0.3".parse().unwrap(),
            names: vec!["db".into()],
        }];
        let h = hosts(&own, &peers);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.213.0.2\tweb abc123\n10.213.0.3\tdb\n"));
    }
}
