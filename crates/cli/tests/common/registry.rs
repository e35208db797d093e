//! The loopback registry of scripts/test-registry.sh (busybox, layered
//! and owners images), stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn registry_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-registry.sh")
}

/// The registry on 127.0.0.1:`port`, its files in `dir`.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::Builder::new()
            .prefix("hako-reg-")
            .tempdir()
            .unwrap();
        let st = Command::new("bash")
            .arg(registry_script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "test-registry.sh start failed");
        Registry { dir, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(registry_script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
