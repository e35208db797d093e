//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A tar archive built from raw headers, so names the tar crate's checked
/// setters would refuse (`..`, absolute) can be written.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }
    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(tar::EntryType::Regular, name, data.len() as u64);
        self.b.append(&h, data).unwrap();
        self
    }
    pub fn dir(mut self, name: &str) -> Self {
        let h = Self::header(tar::EntryType::Directory, name, 0);
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
        let mut h = Self::header(kind, name, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn done(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn put(dir: &Path, bytes: &[u8]) -> (String, u64) {
    let d = sha256(bytes);
    fs::write(dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
    (d, bytes.len() as u64)
}

/// Writes an OCI image layout with uncompressed layers.
pub fn oci_layout(dir: &Path, ref_name: &str, layers: &[Vec<u8>]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (d, n) = put(dir, l);
        diff_ids.push(d.clone());
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}));
    }
    let config = serde_json::json!({
        "architecture": hako_image::manifest::Platform::current().architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cn) = put(dir, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs,
    });
    let (md, mn) = put(dir, &serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The fixture script shared with the lead's CI.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-registry.sh")
}

/// A running test registry; stopped by PID when dropped, even on panic.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    /// Starts the fixture on 127.0.0.1:5000 (or a free port if that is
    /// taken), or returns why it could not.
    pub fn start() -> Result<Self, String> {
        Self::start_with(free_port(), None)
    }

    /// Starts a registry that requires basic auth for `user`/`password`,
    /// on an ephemeral port.
    pub fn start_with_auth(user: &str, password: &str) -> Result<Self, String> {
        Self::start_with(ephemeral_port(), Some((user, password)))
    }

    fn start_with(port: u16, auth: Option<(&str, &str)>) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("hako-registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let reg = Registry { dir, port };
        let mut cmd = Command::new("bash");
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 5).map_err(|e| e.to_string())?;
            let file = reg.dir.path().join("htpasswd");
            fs::write(&file, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
            cmd.env("HAKO_REGISTRY_HTPASSWD", &file)
                .env("HAKO_REGISTRY_CREDS", format!("{user}:{password}"));
        }
        let out = cmd
            .arg(script())
            .arg("start")
            .arg(reg.dir.path())
            .arg(port.to_string())
            .output()
            .map_err(|e| format!("run {}: {e}", script().display()))?;
        if !out.status.success() {
            return Err(format!(
                "test-registry.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(reg)
    }

    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// 5000 as in the acceptance criteria when it is free, else any free port.
fn free_port() -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", 5000)).is_ok() {
        return 5000;
    }
    ephemeral_port()
}

fn ephemeral_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(5000)
}

/// Runs `chroot <root> /bin/busybox <args>` and returns whether it succeeded.
pub fn chroot_ok(root: &Path, args: &[&str]) -> bool {
    Command::new("chroot")
        .arg(root)
        .arg("/bin/busybox")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether `p` is a mount point in this mount namespace.
pub fn is_mounted(p: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// A store in a temp dir. Dropping it unmounts and removes every container
/// rootfs left in it (a failed assertion between prepare_rootfs and
/// unmount_and_remove must not leave a mount behind), then the directory.
pub struct TestStore {
    store: hako_image::Store,
    dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hako-store-")
            .tempdir()
            .unwrap();
        let store = hako_image::Store::open(dir.path()).unwrap();
        Self { store, dir }
    }

    /// The data dir the store was opened with.
    pub fn data_path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for TestStore {
    type Target = hako_image::Store;
    fn deref(&self) -> &hako_image::Store {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(self.store.root().join("containers")) {
            for e in rd.flatten() {
                let _ = self.store.remove_rootfs(&e.file_name().to_string_lossy());
            }
        }
    }
}
