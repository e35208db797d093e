//! Where the engine keeps things.
//!
//! Root: `/var/lib/hako` (containers, images, networks, volumes) and
//! `/run/hako` (the runtime's state, which must not survive a reboot).
//! Rootless: `$XDG_DATA_HOME/hako` and `$XDG_RUNTIME_DIR/hako` (or
//! `/tmp/hako-UID`). `HAKO_DATA_DIR` / `HAKO_RUN_DIR` (or the CLI's
//! `--data-root` / `--run-root`) override both, e.g. for tests.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub run: PathBuf,
    /// The settings file's values (see [`crate::config`]).
    pub config: crate::config::Config,
    /// `--cgroup-manager` (the CLI passes it as HAKO_CGROUP_MANAGER).
    pub cgroup_manager_flag: Option<crate::config::CgroupManager>,
}

/// Not root of the initial user namespace: an unprivileged user, or the
/// monitor of one after it entered its own user namespace (where it is
/// "root" but still cannot touch the host's cgroups or network).
pub fn rootless() -> bool {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() != 0 || !hako_runtime::os::in_initial_userns() }
}

impl Dirs {
    /// The directories from the environment, and the settings file: a bad
    /// one is an error here, before any command does anything.
    pub fn from_env() -> crate::Result<Dirs> {
        let data = std::env::var_os("HAKO_DATA_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(hako_image::Store::default_data_dir);
        let run = std::env::var_os("HAKO_RUN_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_run_dir);
        let config = crate::config::load(&crate::config::path())?;
        let cgroup_manager_flag = match std::env::var("HAKO_CGROUP_MANAGER") {
            Ok(v) if !v.is_empty() => Some(
                v.parse()
                    .map_err(|e| crate::Error::Usage(format!("--cgroup-manager: {e}")))?,
            ),
            _ => None,
        };
        let d = Dirs {
            data,
            run,
            config,
            cgroup_manager_flag,
        };
        if d.data.exists() {
            d.repair_permissions();
        }
        Ok(d)
    }

    pub fn containers(&self) -> PathBuf {
        self.data.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn volumes(&self) -> PathBuf {
        self.data.join("volumes")
    }
    pub fn net_state(&self) -> PathBuf {
        self.data.join("net")
    }
    /// The runtime library's state root (`hako_runtime::container`).
    pub fn runtime_root(&self) -> PathBuf {
        self.run.join("runtime")
    }
    /// Sockets and other per-boot files of one container.
    pub fn run_container(&self, id: &str) -> PathBuf {
        self.run.join("containers").join(id)
    }
    pub fn lock_file(&self) -> PathBuf {
        self.containers().join(".lock")
    }

    pub fn ensure(&self) -> crate::Result<()> {
        for d in [self.containers(), self.volumes(), self.runtime_root()] {
            mkdir_p(&d)?;
        }
        Ok(())
    }

    /// Earlier versions loosened the data root, the store and container
    /// directories to 0711 for `--userns` containers and wrote configs and
    /// logs world-readable. Take that back once per data root: directories
    /// owner-only, configs (`-e` secrets) and logs 0600. A marker file
    /// records that it was done, so later commands pay one stat.
    fn repair_permissions(&self) {
        use std::os::unix::fs::PermissionsExt;
        let marker = self.data.join(".permissions-v2");
        if marker.exists() {
            return;
        }
        let tighten = |p: &Path, keep: u32| {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                let mode = m.permissions().mode() & 0o7777;
                if !m.file_type().is_symlink() && mode & !keep != 0 {
                    let _ =
                        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & keep));
                }
            }
        };
        for d in [
            self.data.clone(),
            self.containers(),
            self.volumes(),
            self.net_state(),
            self.data.join("image"),
            self.data.join("image/containers"),
            self.run.clone(),
        ] {
            tighten(&d, 0o700);
        }
        for sub in [self.containers(), self.data.join("image/containers")] {
            let Ok(rd) = std::fs::read_dir(&sub) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                tighten(&p, 0o700);
                for f in [
                    "config.json",
                    "record.json",
                    crate::record::LOG,
                    "monitor.log",
                ] {
                    tighten(&p.join(f), 0o600);
                }
            }
        }
        let _ = std::fs::write(&marker, b"");
    }

    pub fn net_manager(&self) -> hako_net::Manager {
        hako_net::Manager::new(self.net_config())
    }

    /// The network settings: state under the data root, the nft table
    /// (HAKO_NFT_TABLE), and the settings file's default network.
    pub fn net_config(&self) -> hako_net::NetConfig {
        let mut cfg = hako_net::NetConfig::new(self.net_state());
        if let Some(t) = std::env::var("HAKO_NFT_TABLE")
            .ok()
            .filter(|t| !t.is_empty())
        {
            cfg.nft_table = t;
        }
        self.config.apply(&mut cfg);
        cfg
    }

    pub fn image_store(&self) -> crate::Result<hako_image::Store> {
        Ok(hako_image::Store::open(&self.data)?)
    }
}

pub(crate) fn mkdir_p(d: &Path) -> crate::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(crate::io_err("create directory", d))
}

fn default_run_dir() -> PathBuf {
    if !rootless() {
        return PathBuf::from("/run/hako");
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("hako");
    }
    // SAFETY: getuid has no failure mode.
    PathBuf::from(format!("/tmp/hako-{}", unsafe { libc::getuid() }))
}
