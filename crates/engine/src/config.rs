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
    fn a_missing_file_is_the_defaults() {
        assert_eq!(
            load(Path::new("/nonexistent/hako.toml")).unwrap(),
            Config::default()
        );
    }
}
