//! The engine's settings file: `/etc/hako/hako.toml` (rootless:
//! `$XDG_CONFIG_HOME/hako/hako.toml`), or the file `HAKO_CONFIG` names. A
//! missing file means the defaults; a bad one is one error naming the file
//! and the key, before any command does anything.
//!
//! ```toml
//! [network]
//! default_subnet = "10.77.0.0/16"   # the default network `hako`
//! default_bridge = "hako0"
//! subnet_pool = "10.78.0.0/16"      # /24s for `network create` without --subnet
//!
//! [engine]
//! cgroup_manager = "systemd"        # or "cgroupfs"; default: as podman
//! ```
//!
//! The default network is made on first use with these values and then
//! kept: to move it, change the file and `hako network rm hako` (as with
//! podman's `default_subnet`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: NetworkSettings,
    #[serde(default)]
    pub engine: EngineSettings,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Who makes containers' cgroups (`--cgroup-manager` overrides it).
    pub cgroup_manager: Option<CgroupManager>,
    /// Rootless without subordinate ids: map the user's own id alone (see
    /// [`crate::rootless`]).
    #[serde(default)]
    pub rootless_single_id: bool,
    /// A FUSE overlay program to mount container roots with instead of the
    /// kernel's overlayfs, as podman's `mount_program` (e.g.
    /// /usr/bin/fuse-overlayfs). Without it, fuse-overlayfs is used only
    /// where the kernel refuses an unprivileged overlay.
    pub mount_program: Option<std::path::PathBuf>,
    /// What gives rootless containers on the default network their way
    /// out: `pasta` or `slirp4netns` (default: pasta, else slirp4netns).
    pub rootless_network_cmd: Option<String>,
}

/// Who makes a container's cgroup: systemd (a transient scope, through
/// the runtime's systemd driver) or the runtime itself in cgroupfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    /// Also what records from before the choice existed used.
    #[default]
    Cgroupfs,
    Systemd,
}

impl std::str::FromStr for CgroupManager {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "systemd" => Ok(CgroupManager::Systemd),
            "cgroupfs" => Ok(CgroupManager::Cgroupfs),
            _ => Err(format!(
                "{s:?} is not a cgroup manager (systemd or cgroupfs)"
            )),
        }
    }
}

impl std::fmt::Display for CgroupManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupManager::Systemd => "systemd",
            CgroupManager::Cgroupfs => "cgroupfs",
        })
    }
}

/// What the host offers a systemd cgroup manager.
#[derive(Debug, Clone, Copy)]
pub struct SystemdHost {
    /// systemd is PID 1 (`/run/systemd/system` exists, as sd_booted()).
    pub booted: bool,
    /// cgroup2 only (`/sys/fs/cgroup` is the unified hierarchy).
    pub unified: bool,
    /// Rootless: the user's bus (`$XDG_RUNTIME_DIR/bus`) is there.
    pub user_bus: bool,
}

impl SystemdHost {
    pub fn detect() -> SystemdHost {
        let user_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| Path::new(&d).join("bus").exists());
        SystemdHost {
            booted: Path::new("/run/systemd/system").is_dir(),
            unified: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            user_bus,
        }
    }

    /// Why the systemd manager cannot work here, if it cannot.
    fn missing(&self, rootless: bool) -> Option<&'static str> {
        if !self.booted {
            Some("systemd is not running this host (no /run/systemd/system)")
        } else if !self.unified {
            Some("hako's systemd driver needs a cgroup2-only host, and this one mounts cgroup v1 controllers")
        } else if rootless && !self.user_bus {
            Some("there is no systemd user session bus ($XDG_RUNTIME_DIR/bus): log in through systemd-logind, or `loginctl enable-linger`")
        } else {
            None
        }
    }
}

/// The cgroup manager of a new container: `flag` (`--cgroup-manager`),
/// else the settings file, else as podman: systemd where it can work
/// (systemd as PID 1, cgroup2 only, and for a rootless user a user
/// session), cgroupfs elsewhere. A systemd that was asked for and cannot
/// work is an error naming why.
pub fn cgroup_manager(
    flag: Option<CgroupManager>,
    settings: &Config,
    host: &SystemdHost,
    rootless: bool,
) -> Result<CgroupManager> {
    let (chosen, from) = match (flag, settings.engine.cgroup_manager) {
        (Some(m), _) => (m, "--cgroup-manager systemd"),
        (None, Some(m)) => (m, "cgroup_manager = \"systemd\" (settings file)"),
        (None, None) if host.missing(rootless).is_none() => return Ok(CgroupManager::Systemd),
        (None, None) => return Ok(CgroupManager::Cgroupfs),
    };
    if chosen == CgroupManager::Systemd {
        if let Some(why) = host.missing(rootless) {
            return Err(Error::Usage(format!("{from}: {why}; use cgroupfs")));
        }
    }
    Ok(chosen)
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The default network's subnet (default 10.77.0.0/16).
    pub default_subnet: Option<hako_net::Subnet>,
    /// The default network's bridge (default hako0).
    pub default_bridge: Option<String>,
    /// Where networks without `--subnet` get a free /24 (default 10.78.0.0/16).
    pub subnet_pool: Option<hako_net::Subnet>,
}

/// The settings file: `HAKO_CONFIG`, else the system's or the user's.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("HAKO_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if crate::dirs::rootless() {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("/nonexistent"));
        return base.join("hako/hako.toml");
    }
    PathBuf::from("/etc/hako/hako.toml")
}

/// Read the settings at `path` (absent: the defaults).
pub fn load(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(crate::io_err("read", path)(e)),
    };
    parse(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Parse the settings; the error names the key (and its line).
pub fn parse(text: &str) -> std::result::Result<Config, String> {
    toml::from_str(text).map_err(|e| {
        // toml's message spans several lines (a source excerpt): keep the
        // one that says what is wrong, with the line number.
        let span = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        format!("{span}{}", e.message().trim())
    })
}

impl Config {
    /// The network manager's configuration with these settings applied.
    pub fn apply(&self, cfg: &mut hako_net::NetConfig) {
        let n = &self.network;
        if let Some(s) = n.default_subnet {
            cfg.default_network.subnet = Some(s);
        }
        if let Some(b) = &n.default_bridge {
            cfg.default_network.bridge = Some(b.clone());
        }
        if let Some(p) = n.subnet_pool {
            cfg.subnet_pool = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_ones_name_the_key() {
        let c = parse(
            "[network]\ndefault_subnet = \"10.90.0.0/16\"\ndefault_bridge = \"hk9\"\n\
             subnet_pool = \"10.91.0.0/16\"\n",
        )
        .unwrap();
        let mut cfg = hako_net::NetConfig::new("/x");
        c.apply(&mut cfg);
        assert_eq!(
            cfg.default_network.subnet.unwrap().to_string(),
            "10.90.0.0/16"
        );
        assert_eq!(cfg.default_network.bridge.as_deref(), Some("hk9"));
        assert_eq!(cfg.subnet_pool.to_string(), "10.91.0.0/16");
        assert_eq!(parse("").unwrap(), Config::default());

        let e = parse("[network]\ndefault_subnet = \"10.90.0.0/33\"\n").unwrap_err();
        assert!(
            e.starts_with("line 2: ") && e.contains("10.90.0.0/33"),
            "{e}"
        );
        let e = parse("[network]\ndefault_subnt = \"10.90.0.0/16\"\n").unwrap_err();
        assert!(
            e.starts_with("line 2: ") && e.contains("default_subnt"),
            "{e}"
        );
        let e = parse("[netwrk]\n").unwrap_err();
        assert!(e.contains("netwrk"), "{e}");
    }

    #[test]
    fn the_cgroup_manager_is_chosen_as_podman_does() {
        use CgroupManager::*;
        let sd = SystemdHost {
            booted: true,
            unified: true,
            user_bus: true,
        };
        let hybrid = SystemdHost {
            unified: false,
            ..sd
        };
        let none = SystemdHost {
            booted: false,
            ..sd
        };
        let no_session = SystemdHost {
            user_bus: false,
            ..sd
        };
        let c = Config::default();
        // Default: systemd where it works, else cgroupfs.
        assert_eq!(cgroup_manager(None, &c, &sd, false).unwrap(), Systemd);
        assert_eq!(cgroup_manager(None, &c, &sd, true).unwrap(), Systemd);
        assert_eq!(cgroup_manager(None, &c, &hybrid, false).unwrap(), Cgroupfs);
        assert_eq!(cgroup_manager(None, &c, &none, false).unwrap(), Cgroupfs);
        assert_eq!(
            cgroup_manager(None, &c, &no_session, true).unwrap(),
            Cgroupfs
        );
        assert_eq!(
            cgroup_manager(None, &c, &no_session, false).unwrap(),
            Systemd
        );
        // The settings file, and the flag over it.
        let file = parse("[engine]\ncgroup_manager = \"cgroupfs\"\n").unwrap();
        assert_eq!(cgroup_manager(None, &file, &sd, false).unwrap(), Cgroupfs);
        assert_eq!(
            cgroup_manager(Some(Systemd), &file, &sd, false).unwrap(),
            Systemd
        );
        // Asked for where it cannot work: one line saying why.
        let e = cgroup_manager(Some(Systemd), &c, &none, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cgroup-manager systemd") && e.contains("not running"),
            "{e}"
        );
        let e = cgroup_manager(Some(Systemd), &c, &hybrid, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cgroup2-only"), "{e}");
        let sdfile = parse("[engine]\ncgroup_manager = \"systemd\"\n").unwrap();
        let e = cgroup_manager(None, &sdfile, &no_session, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("settings file") && e.contains("user session"),
            "{e}"
        );
        let e = parse("[engine]\ncgroup_manager = \"sd\"\n").unwrap_err();
        assert!(e.starts_with("line 2: ") && e.contains("sd"), "{e}");
    }

    #[test]
    fn a_missing_file_is_the_defaults() {
        assert_eq!(
            load(Path::new("/nonexistent/hako.toml")).unwrap(),
            Config::default()
        );
    }
}
