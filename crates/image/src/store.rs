//! The content-addressed image store.
//!
//! Layout under `<data dir>/image/`:
//!
//! ```text
//! blobs/sha256/<hex>     verified blobs (manifests, configs, layers), read-only
//! layers/<hex>/          a layer blob unpacked, usable as an overlay lowerdir
//! images/<id hex>.json   one record per image: manifest, layers, names
//! containers/<id>/       a container's rootfs (overlay upper/work/merged, or a copy)
//! tmp/                   blobs and layers being written
//! lock, gc.lock          flock(2) files
//! ```
//!
//! Nothing appears under its final name until it is complete: blobs are
//! written to `tmp/`, verified, then renamed; layers are unpacked into a
//! temporary directory and renamed. Records are written the same way.
//!
//! Locking: `lock` (exclusive) serialises short read-modify-write of the
//! records. `gc.lock` is held shared by everything that adds content
//! (pull, import, load, prepare_rootfs) for its whole duration and exclusive
//! by [`Store::gc`], so a collection never deletes a blob that a pull has
//! stored but not yet recorded.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError, VerifyingWriter};
use crate::manifest::{self, media, Descriptor, ImageConfig, Manifest, ManifestError};
use crate::reference::{Reference, ReferenceError};
use crate::unpack::{self, UnpackError};

/// An image's ID: the digest of its config, as Docker defines it.
pub type ImageId = Digest;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("unpack layer {digest}: {source}")]
    Unpack {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    #[error(
        "layer {digest}: uncompressed content has digest {actual}, the config says {expected}"
    )]
    DiffId {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// A decompressing copy stopped by a size or free-space limit.
    #[error("{what}: {reason}")]
    Limit {
        what: String,
        reason: unpack::LimitError,
    },
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("{name:?} matches several images: {ids}")]
    Ambiguous { name: String, ids: String },
    #[error("image {name} ({id}) is used by a container; use force to remove it anyway")]
    InUse { name: String, id: ImageId },
    #[error("image record {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid container id {0:?}: use letters, digits, '_', '-' and '.'")]
    ContainerId(String),
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}

/// One layer of a stored image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob as the manifest lists it (possibly compressed).
    pub blob: Descriptor,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// What the store keeps about an image (`images/<id>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: ImageId,
    /// The image manifest blob.
    pub manifest: Descriptor,
    /// The index the manifest was selected from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    pub config: Descriptor,
    pub layers: Vec<LayerRecord>,
    /// Tagged names, canonical (`docker.io/library/alpine:latest`).
    pub names: Vec<String>,
    /// `name@digest` of the manifest (or index) each pull came from.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    #[serde(default)]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    /// Seconds since the epoch when the store got the image.
    pub added: u64,
    /// A step of a build (its cache), hidden from `images`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermediate: bool,
}

impl ImageRecord {
    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size).sum()
    }
}

/// One line of `images` (serialises for `--format json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub size: u64,
}

/// `image inspect` output (serialises like Docker's, reduced).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    pub size: u64,
    pub manifest_media_type: String,
    pub manifest_digest: String,
    /// The image's run configuration (`config` of the config blob).
    pub config: serde_json::Value,
    #[serde(rename = "RootFS")]
    pub rootfs: InspectRootFs,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

/// What `remove` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveReport {
    pub untagged: Vec<String>,
    pub deleted: Option<ImageId>,
}

/// What `gc` freed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub layers_removed: usize,
    pub bytes_freed: u64,
}

/// The image store. Cheap to clone; every method is safe to call from
/// several processes at once.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// A held flock; released on drop.
pub(crate) struct Lock(#[allow(dead_code)] File);

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file or directory in the store's `tmp/`, removed on drop
/// unless kept.
///
/// A writer that is killed cannot clean up, so [`Store::open`] removes
/// what dead writers left. Two things tell a live entry from a leftover:
/// its writer holds an exclusive flock(2) on it for as long as it exists
/// (`lock`), and its name carries the writer's pid and process start time
/// (`WHAT@PID.START.N`), which covers the moment between creating the
/// entry and locking it. Only an entry whose lock can be taken and whose
/// writer is not running is removed.
pub(crate) struct TempPath {
    path: PathBuf,
    keep: bool,
    #[allow(dead_code)]
    lock: Option<File>,
}

impl TempPath {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

/// Start time of process `pid` (clock ticks after boot, field 22 of
/// `/proc/PID/stat`), or `None` if there is no such process.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn own_start_time() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| process_start_time(std::process::id()).unwrap_or(0))
}

/// Whether the writer named in a `tmp/` entry's name may still be running.
fn temp_owner_alive(name: &str) -> bool {
    if let Some((_, owner)) = name.rsplit_once('@') {
        let mut it = owner.split('.');
        let (Some(Ok(pid)), Some(Ok(start))) = (
            it.next().map(str::parse::<u32>),
            it.next().map(str::parse::<u64>),
        ) else {
            return false;
        };
        return process_start_time(pid) == Some(start);
    }
    // Older versions: WHAT-PID-N, without a lock; the pid is all there is.
    let mut parts = name.rsplit('-');
    parts.next();
    match parts.next().map(str::parse::<u32>) {
        Some(Ok(pid)) => Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Takes `p`'s lock without waiting: `Ok(None)` if someone holds it.
fn try_lock_entry(p: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(File::from(fd))),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = remove_tree(&self.path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// `remove_dir_all` that also copes with read-only directories, which
/// image content has (an unprivileged user cannot delete entries of a 0555
/// directory): on a permission error every directory is made writable by
/// its owner, without following symlinks, and removal is tried again.
pub(crate) fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(p);
            fs::remove_dir_all(p)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(p) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = fs::set_permissions(
        p,
        fs::Permissions::from_mode(m.permissions().mode() | 0o700),
    );
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            make_writable(&e.path());
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC timestamp for `secs` since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// The engine's default data directory: `/var/lib/hako` for root,
    /// `$XDG_DATA_HOME/hako` or `~/.local/share/hako` otherwise.
    pub fn default_data_dir() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/hako");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("hako");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        home.join(".local/share/hako")
    }

    /// Opens (creating if needed) the store under `data_dir/image`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data_dir = data_dir.as_ref();
        let root = data_dir.join("image");
        for sub in ["blobs/sha256", "layers", "images", "containers", "tmp"] {
            let p = root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(io_err("create store directory", &p))?;
        }
        let store = Self { root };
        store.repair_modes(data_dir)?;
        store.clean_tmp();
        Ok(store)
    }

    /// Removes what killed writers left in `tmp/` (see [`TempPath`]).
    /// Best effort: a leftover that cannot be removed now is tried again
    /// on the next open, and by [`Store::gc`].
    fn clean_tmp(&self) {
        let tdir = self.root.join("tmp");
        let Ok(rd) = fs::read_dir(&tdir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if temp_owner_alive(&name) {
                continue;
            }
            let p = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let _held = match try_lock_entry(&p) {
                Ok(Some(l)) => Some(l),
                Ok(None) => continue,
                // A symlink nobody made on purpose: nothing to lock.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => None,
                Err(_) => continue,
            };
            let _ = if is_dir {
                remove_tree(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }

    /// Makes the store's directories owner-only again. Older versions
    /// created `<data>`, `image/`, `image/containers/` and each container
    /// directory 0711 (so other users could traverse to a rootfs); image
    /// and container data must not be reachable by other users at all.
    /// The contents of layers are image data and keep their modes.
    fn repair_modes(&self, data_dir: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        // `<data>` is the engine's directory (it may be any path a caller
        // passes, even `/`): only undo the exact mode older versions set.
        if let Ok(m) = fs::symlink_metadata(data_dir) {
            if m.is_dir() && m.permissions().mode() & 0o7777 == 0o711 {
                let _ = fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700));
            }
        }
        // The container directories are listed only while `containers/`
        // itself still has the old mode (it is tightened after them): a
        // repaired store pays a few stats per open, not one per container.
        let cdir = self.containers_dir();
        let loose = |m: &fs::Metadata| m.permissions().mode() & 0o077 != 0;
        let mut dirs: Vec<PathBuf> = Vec::new();
        if fs::symlink_metadata(&cdir).is_ok_and(|m| loose(&m)) {
            for e in fs::read_dir(&cdir).map_err(io_err("list containers", &cdir))? {
                let e = e.map_err(io_err("list containers", &cdir))?;
                dirs.push(e.path());
            }
        }
        dirs.extend(
            [
                "",
                "blobs",
                "blobs/sha256",
                "layers",
                "images",
                "tmp",
                "containers",
            ]
            .iter()
            .map(|s| self.root.join(s)),
        );
        for d in dirs {
            let m = match fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => m,
                _ => continue,
            };
            let mode = m.permissions().mode() & 0o7777;
            if loose(&m) {
                fs::set_permissions(&d, fs::Permissions::from_mode(mode & !0o077))
                    .map_err(io_err("make store directory owner-only", &d))?;
            }
        }
        Ok(())
    }

    /// The store's directory (`<data dir>/image`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock(&self, name: &str, op: FlockOperation) -> Result<Lock, StoreError> {
        let p = self.root.join(name);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err("open lock", &p))?;
        rustix::fs::flock(&f, op).map_err(|e| io_err("lock", &p)(e.into()))?;
        Ok(Lock(f))
    }

    /// Held by operations that add content; see the module docs.
    pub(crate) fn content_lock(&self) -> Result<Lock, StoreError> {
        self.lock("gc.lock", FlockOperation::LockShared)
    }

    pub(crate) fn meta_lock(&self) -> Result<Lock, StoreError> {
        self.lock("lock", FlockOperation::LockExclusive)
    }

    fn temp_path(&self, what: &str) -> TempPath {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        TempPath {
            path: self.root.join("tmp").join(format!(
                "{what}@{}.{}.{n}",
                std::process::id(),
                own_start_time()
            )),
            keep: false,
            lock: None,
        }
    }

    /// Creates a temp directory with `mode`, locked for as long as the
    /// returned value lives.
    pub(crate) fn create_temp_dir(&self, what: &str, mode: u32) -> Result<TempPath, StoreError> {
        let mut tmp = self.temp_path(what);
        fs::DirBuilder::new()
            .mode(mode)
            .create(tmp.path())
            .map_err(io_err("create temp directory", tmp.path()))?;
        let lock = try_lock_entry(tmp.path())
            .and_then(|l| l.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock)))
            .map_err(io_err("lock temp directory", tmp.path()))?;
        tmp.lock = Some(lock);
        Ok(tmp)
    }

    /// Where a blob lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a whole blob (manifests and configs: small).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        match fs::read(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(d.clone()))
            }
            r => r.map_err(io_err("read blob", p)),
        }
    }

    /// Opens a temp file for a blob; used with [`Store::commit_blob_file`].
    pub(crate) fn create_temp_file(&self, what: &str) -> Result<(TempPath, File), StoreError> {
        let mut tmp = self.temp_path(what);
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.path())
            .map_err(io_err("create temp file", tmp.path()))?;
        // The lock belongs to the open file description, which the clone
        // shares; it lasts until both are closed.
        rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_err("lock temp file", tmp.path())(e.into()))?;
        tmp.lock = Some(
            f.try_clone()
                .map_err(io_err("lock temp file", tmp.path()))?,
        );
        Ok((tmp, f))
    }

    /// Moves a verified temp file to its digest's place.
    pub(crate) fn commit_blob_file(
        &self,
        tmp: TempPath,
        file: File,
        d: &Digest,
    ) -> Result<(), StoreError> {
        file.sync_all().map_err(io_err("sync blob", tmp.path()))?;
        drop(file);
        let dst = self.blob_path(d);
        let _ = fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        );
        fs::rename(tmp.path(), &dst).map_err(io_err("store blob", &dst))?;
        tmp.keep();
        Ok(())
    }

    /// Stores a blob from a reader. With `expected`, the content must match
    /// that digest and size or nothing is stored; without, the digest is
    /// computed and returned.
    pub fn put_blob(
        &self,
        mut r: impl Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some((d, size)) = expected {
            if self.has_blob(d) {
                return Ok((d.clone(), size));
            }
        }
        let (tmp, file) = self.create_temp_file("blob")?;
        let (digest, size, file) = match expected {
            Some((d, size)) => {
                let mut w = VerifyingWriter::new(io::BufWriter::new(file), d.clone(), Some(size));
                copy_verifying(&mut r, &mut w, tmp.path())?;
                let file = w
                    .finish()?
                    .into_inner()
                    .map_err(|e| io_err("write blob", tmp.path())(e.into_error()))?;
                (d.clone(), size, file)
            }
            None => {
                let mut w = crate::digest::HashingWriter::new(io::BufWriter::new(file));
                io::copy(&mut r, &mut w).map_err(io_err("write blob", tmp.path()))?;
                let (d, n, bw) = w.finish();
                let file = bw
                    .into_inner()
                    .map_err(|e| io_err("write blob", tmp.path())(e.into_error()))?;
                (d, n, file)
            }
        };
        self.commit_blob_file(tmp, file, &digest)?;
        Ok((digest, size))
    }

    /// Stores an in-memory blob and returns its descriptor.
    pub fn put_blob_bytes(&self, bytes: &[u8], media_type: &str) -> Result<Descriptor, StoreError> {
        let d = Digest::of(bytes);
        self.put_blob(bytes, Some((&d, bytes.len() as u64)))?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest: d,
            size: bytes.len() as u64,
            platform: None,
            annotations: None,
        })
    }

    /// Directory of an unpacked layer.
    pub fn layer_path(&self, blob: &Digest) -> PathBuf {
        self.root.join("layers").join(blob.hex())
    }

    /// [`Store::ensure_layer`] for each layer, several at once: they are
    /// independent directories, and unpacking (decompression and the
    /// diff's sha256) is CPU-bound, so a pull's layers use every core. The
    /// first error (in layer order) is returned once the workers stop;
    /// nothing is taken after an error.
    pub(crate) fn ensure_layers(&self, layers: &[LayerRecord]) -> Result<(), StoreError> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(layers.len());
        if workers <= 1 {
            return layers
                .iter()
                .try_for_each(|l| self.ensure_layer(l).map(drop));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let mut errors: Vec<(usize, StoreError)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut errs = Vec::new();
                        while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(l) = layers.get(i) else { break };
                            if let Err(e) = self.ensure_layer(l) {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                errs.push((i, e));
                            }
                        }
                        errs
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a layer worker panicked"))
                .collect()
        });
        errors.sort_by_key(|(i, _)| *i);
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Unpacks a layer blob once; later calls return the existing directory.
    /// The uncompressed digest must equal `diff_id`.
    pub fn ensure_layer(&self, layer: &LayerRecord) -> Result<PathBuf, StoreError> {
        let dst = self.layer_path(&layer.blob.digest);
        if dst.is_dir() {
            return Ok(dst);
        }
        let blob = self.blob_path(&layer.blob.digest);
        let f = File::open(&blob).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(layer.blob.digest.clone())
            } else {
                io_err("open layer blob", &blob)(e)
            }
        })?;
        let tmp = self.create_temp_dir(&format!("layer-{}", layer.blob.digest.short()), 0o755)?;
        let compressed = f
            .metadata()
            .map_err(io_err("open layer blob", &blob))?
            .len();
        let opts = unpack::UnpackOptions {
            max_bytes: Some(unpack::max_uncompressed(compressed)),
            ..unpack::UnpackOptions::default()
        };
        // On error `tmp` goes with whatever was unpacked so far.
        let stats = unpack::unpack_with(
            io::BufReader::new(f),
            &layer.blob.media_type,
            tmp.path(),
            &opts,
        )
        .map_err(|source| StoreError::Unpack {
            digest: layer.blob.digest.clone(),
            source,
        })?;
        if stats.diff_id != layer.diff_id {
            return Err(StoreError::DiffId {
                digest: layer.blob.digest.clone(),
                expected: layer.diff_id.clone(),
                actual: stats.diff_id,
            });
        }
        match fs::rename(tmp.path(), &dst) {
            Ok(()) => {
                tmp.keep();
                Ok(dst)
            }
            // Another process unpacked it first; ours is dropped.
            Err(_) if dst.is_dir() => Ok(dst),
            Err(e) => Err(io_err("store layer", &dst)(e)),
        }
    }

    pub(crate) fn record_path(&self, id: &ImageId) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    pub(crate) fn read_records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list images", &dir))? {
            let e = e.map_err(io_err("list images", &dir))?;
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = match fs::read(&p) {
                Ok(b) => b,
                // Removed concurrently.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read image record", &p)(e)),
            };
            out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::Record { path: p, source })?,
            );
        }
        out.sort_by(|a: &ImageRecord, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub(crate) fn write_record(&self, rec: &ImageRecord) -> Result<(), StoreError> {
        let p = self.record_path(&rec.id);
        let bytes = serde_json::to_vec_pretty(rec).map_err(|source| StoreError::Record {
            path: p.clone(),
            source,
        })?;
        let (tmp, mut f) = self.create_temp_file("record")?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_err("write image record", tmp.path()))?;
        fs::rename(tmp.path(), &p).map_err(io_err("write image record", &p))?;
        tmp.keep();
        Ok(())
    }

    /// Records an image whose manifest, config and layer blobs are all in
    /// the store: unpacks every layer (once), checks diff IDs, then writes
    /// the record and moves `names` to it.
    pub(crate) fn commit_image(
        &self,
        manifest_desc: &Descriptor,
        index: Option<&Digest>,
        names: &[Reference],
        repo_digest: Option<&Digest>,
    ) -> Result<ImageId, StoreError> {
        let bytes = self.read_blob(&manifest_desc.digest)?;
        let m: Manifest = match manifest::parse(
            &bytes,
            &manifest_desc.digest,
            Some(&manifest_desc.media_type),
        )? {
            manifest::Parsed::Image(m) => m,
            manifest::Parsed::Index(_) => {
                return Err(ManifestError::UnsupportedMediaType {
                    digest: manifest_desc.digest.clone(),
                    media_type: "nested index".into(),
                }
                .into())
            }
        };
        let config_bytes = self.read_blob(&m.config.digest)?;
        let config = ImageConfig::parse(&config_bytes, &m.config.digest)?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(ManifestError::LayerCount {
                digest: m.config.digest.clone(),
                diff_ids: config.rootfs.diff_ids.len(),
                layers: m.layers.len(),
            }
            .into());
        }
        let layers: Vec<LayerRecord> = m
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(blob, diff_id)| LayerRecord {
                blob: blob.clone(),
                diff_id: diff_id.clone(),
            })
            .collect();
        self.ensure_layers(&layers)?;
        let id = m.config.digest.clone();
        let _g = self.meta_lock()?;
        let records = self.read_records()?;
        let new_names: Vec<String> = names
            .iter()
            .filter_map(|n| n.tag().map(|t| n.with_tag(t).to_string()))
            .collect();
        let mut rec = records
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap_or(ImageRecord {
                id: id.clone(),
                manifest: manifest_desc.clone(),
                index: index.cloned(),
                config: m.config.clone(),
                layers: layers.clone(),
                names: Vec::new(),
                repo_digests: Vec::new(),
                created: config.created.clone(),
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                added: now_secs(),
                intermediate: false,
            });
        if !new_names.is_empty() {
            rec.intermediate = false;
        }
        rec.manifest = manifest_desc.clone();
        rec.index = index.cloned().or(rec.index);
        rec.layers = layers;
        for n in &new_names {
            if !rec.names.contains(n) {
                rec.names.push(n.clone());
            }
        }
        if let Some(d) = repo_digest {
            for n in names {
                let rd = format!("{}@{d}", n.name());
                if !rec.repo_digests.contains(&rd) {
                    rec.repo_digests.push(rd);
                }
            }
        }
        // A name points at one image: take it from any other.
        for mut other in records.into_iter().filter(|r| r.id != id) {
            let before = other.names.len();
            other.names.retain(|n| !new_names.contains(n));
            if other.names.len() != before {
                self.write_record(&other)?;
            }
        }
        self.write_record(&rec)?;
        Ok(id)
    }

    /// Finds an image by name (`alpine`, `host/repo:tag`, `repo@sha256:…`)
    /// or by ID or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let records = self.read_records()?;
        Self::find(&records, name).cloned()
    }

    fn find<'r>(records: &'r [ImageRecord], name: &str) -> Result<&'r ImageRecord, StoreError> {
        if let Ok(r) = name.parse::<Reference>() {
            let hit = match r.digest() {
                Some(d) => records.iter().find(|rec| {
                    rec.repo_digests.contains(&format!("{}@{d}", r.name()))
                        || (rec.manifest.digest == *d
                            && rec.names.iter().any(|n| n.starts_with(&r.name())))
                }),
                None => {
                    let full = r.to_string();
                    records.iter().find(|rec| rec.names.contains(&full))
                }
            };
            if let Some(h) = hit {
                return Ok(h);
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&ImageRecord> = records
                .iter()
                .filter(|r| r.id.hex().starts_with(hex))
                .collect();
            match hits.as_slice() {
                [one] => return Ok(one),
                [] => {}
                many => {
                    return Err(StoreError::Ambiguous {
                        name: name.to_owned(),
                        ids: many
                            .iter()
                            .map(|r| r.id.short())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        Err(StoreError::NoSuchImage(name.to_owned()))
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        Ok(self
            .read_records()?
            .into_iter()
            .filter(|r| !r.intermediate)
            .map(|r| ImageSummary {
                id: r.id.to_string(),
                size: r.size(),
                repo_tags: r.names,
                repo_digests: r.repo_digests,
                created: r.created,
            })
            .collect())
    }

    /// Details of one image.
    pub fn inspect(&self, name: &str) -> Result<ImageInspect, StoreError> {
        let r = self.resolve(name)?;
        let cfg_bytes = self.read_blob(&r.config.digest)?;
        let cfg = ImageConfig::parse(&cfg_bytes, &r.config.digest)?;
        Ok(ImageInspect {
            id: r.id.to_string(),
            size: r.size(),
            repo_tags: r.names.clone(),
            repo_digests: r.repo_digests.clone(),
            created: r.created.clone(),
            architecture: r.architecture.clone(),
            os: r.os.clone(),
            manifest_media_type: r.manifest.media_type.clone(),
            manifest_digest: r.manifest.digest.to_string(),
            config: cfg.config.unwrap_or(serde_json::Value::Null),
            rootfs: InspectRootFs {
                kind: "layers".into(),
                layers: r.layers.iter().map(|l| l.diff_id.to_string()).collect(),
            },
        })
    }

    /// The image's history (`hako history`), newest first: each entry of
    /// its config's history with the size of the layer it made (0 for
    /// entries that made none).
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let r = self.resolve(name)?;
        let cfg_bytes = self.read_blob(&r.config.digest)?;
        let cfg = ImageConfig::parse(&cfg_bytes, &r.config.digest)?;
        let entries = cfg
            .history
            .as_ref()
            .and_then(|h| h.as_array().cloned())
            .unwrap_or_default();
        // Entries that made a layer, matched to the layers from the last:
        // an image whose early layers have no history entry (some
        // importers write none) still gets the sizes of its recent ones.
        let made = entries
            .iter()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .count();
        let mut layers = r.layers.iter().skip(r.layers.len().saturating_sub(made));
        let mut out: Vec<HistoryEntry> = entries
            .iter()
            .map(|h| {
                let empty = h["empty_layer"].as_bool().unwrap_or(false);
                HistoryEntry {
                    created: h["created"].as_str().unwrap_or("").to_string(),
                    created_by: h["created_by"].as_str().unwrap_or("").to_string(),
                    comment: h["comment"].as_str().unwrap_or("").to_string(),
                    size: if empty {
                        0
                    } else {
                        layers.next().map_or(0, |l| l.blob.size)
                    },
                }
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Docker's `rmi`: a name of an image that has other names is only
    /// untagged; otherwise the image record goes (its blobs and layers stay
    /// until [`Store::gc`]). An image `in_use` reports as used by a
    /// container is refused unless `force`.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&ImageId) -> bool,
    ) -> Result<RemoveReport, StoreError> {
        let _g = self.meta_lock()?;
        let records = self.read_records()?;
        let mut rec = Self::find(&records, name)?.clone();
        let by_name = name
            .parse::<Reference>()
            .ok()
            .map(|r| r.to_string())
            .filter(|full| rec.names.contains(full));
        let mut report = RemoveReport::default();
        if let Some(full) = by_name {
            if rec.names.len() > 1 {
                rec.names.retain(|n| *n != full);
                self.write_record(&rec)?;
                report.untagged.push(full);
                return Ok(report);
            }
        }
        if in_use(&rec.id) && !force {
            return Err(StoreError::InUse {
                name: name.to_owned(),
                id: rec.id.clone(),
            });
        }
        let p = self.record_path(&rec.id);
        fs::remove_file(&p).map_err(io_err("remove image record", &p))?;
        report.untagged = rec.names;
        report.deleted = Some(rec.id);
        Ok(report)
    }

    /// Deletes blobs and unpacked layers no image refers to, keeping the
    /// layers of existing container root filesystems, and clears leftovers
    /// of interrupted operations in `tmp/`.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _gc = self.lock("gc.lock", FlockOperation::LockExclusive)?;
        let _g = self.meta_lock()?;
        let mut blobs: HashSet<String> = HashSet::new();
        let mut layers: HashSet<String> = HashSet::new();
        for r in self.read_records()? {
            blobs.insert(r.manifest.digest.hex().to_owned());
            blobs.insert(r.config.digest.hex().to_owned());
            if let Some(i) = &r.index {
                blobs.insert(i.hex().to_owned());
            }
            for l in &r.layers {
                blobs.insert(l.blob.digest.hex().to_owned());
                layers.insert(l.blob.digest.hex().to_owned());
            }
        }
        for id in self.container_ids()? {
            for l in self.container_layers(&id).unwrap_or_default() {
                layers.insert(l);
            }
        }
        let mut report = GcReport::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir).map_err(io_err("list blobs", &bdir))? {
            let e = e.map_err(io_err("list blobs", &bdir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                report.bytes_freed += e.metadata().map_or(0, |m| m.len());
                fs::remove_file(e.path()).map_err(io_err("remove blob", e.path()))?;
                report.blobs_removed += 1;
            }
        }
        let ldir = self.root.join("layers");
        for e in fs::read_dir(&ldir).map_err(io_err("list layers", &ldir))? {
            let e = e.map_err(io_err("list layers", &ldir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !layers.contains(&name) {
                remove_tree(&e.path()).map_err(io_err("remove layer", e.path()))?;
                report.layers_removed += 1;
            }
        }
        // No writer holds the content lock now, so tmp/ is all leftovers.
        let tdir = self.root.join("tmp");
        for e in fs::read_dir(&tdir).map_err(io_err("list tmp", &tdir))? {
            let e = e.map_err(io_err("list tmp", &tdir))?;
            let p = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err("remove leftover", &p))?;
        }
        Ok(report)
    }

    /// Every blob digest in the store (for tests and diagnostics).
    pub fn blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let bdir = self.root.join("blobs/sha256");
        let mut out = BTreeSet::new();
        for e in fs::read_dir(&bdir).map_err(io_err("list blobs", &bdir))? {
            let e = e.map_err(io_err("list blobs", &bdir))?;
            if let Ok(d) = Digest::from_hex(&e.file_name().to_string_lossy()) {
                out.insert(d);
            }
        }
        Ok(out)
    }

    /// Adds `name` to an existing image.
    pub fn tag(&self, image: &str, name: &str) -> Result<(), StoreError> {
        let r: Reference = name.parse()?;
        let rec = self.resolve(image)?;
        let _c = self.content_lock()?;
        self.commit_image(&rec.manifest, rec.index.as_ref(), &[r], None)?;
        Ok(())
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn container_ids(&self) -> Result<Vec<String>, StoreError> {
        let d = self.containers_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&d).map_err(io_err("list containers", &d))? {
            let e = e.map_err(io_err("list containers", &d))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn container_layers(&self, id: &str) -> Option<Vec<String>> {
        let bytes = fs::read(self.containers_dir().join(id).join("layers.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A fresh OCI manifest + config for a single-layer image made here
    /// (import). Returns the manifest descriptor.
    pub(crate) fn synthesize_image(
        &self,
        layer: Descriptor,
        diff_id: Digest,
        created_by: &str,
        config: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Descriptor, StoreError> {
        let now = rfc3339(now_secs());
        let platform = manifest::Platform::current();
        let config = serde_json::json!({
            "created": now,
            "architecture": platform.architecture,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "created_by": created_by}],
        });
        let config_desc = self.put_blob_bytes(
            &serde_json::to_vec(&config).expect("json"),
            media::OCI_CONFIG,
        )?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: config_desc,
            layers: vec![layer],
            annotations: None,
        };
        self.put_blob_bytes(&serde_json::to_vec(&m).expect("json"), media::OCI_MANIFEST)
    }
}

fn copy_verifying<W: Write>(
    r: &mut impl Read,
    w: &mut VerifyingWriter<W>,
    path: &Path,
) -> Result<(), StoreError> {
    match io::copy(r, w) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.downcast::<DigestError>() {
            Ok(d) => StoreError::Digest(d),
            Err(e) => io_err("write blob", path)(e),
        }),
    }
}

/// One entry of [`Store::history`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryEntry {
    pub created: String,
    pub created_by: String,
    pub comment: String,
    pub size: u64,
}

/// Checks a container id before it becomes a path component.
pub(crate) fn check_container_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::ContainerId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_040_000), "2025-11-25T03:06:40Z");
    }

    #[test]
    fn put_blob_verifies_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        let e = s.put_blob(&b"hellO"[..], Some((&good, 5))).unwrap_err();
        assert!(
            matches!(e, StoreError::Digest(DigestError::Mismatch { .. })),
            "{e}"
        );
        let e = s
            .put_blob(&b"hello world"[..], Some((&good, 5)))
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Digest(DigestError::TooLarge { .. })),
            "{e}"
        );
        assert!(!s.has_blob(&good));
        assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
        s.put_blob(&b"hello"[..], Some((&good, 5))).unwrap();
        assert_eq!(s.read_blob(&good).unwrap(), b"hello");
        let (d, n) = s.put_blob(&b"xyz"[..], None).unwrap();
        assert_eq!((d, n), (Digest::of(b"xyz"), 3));
    }

    #[test]
    fn layers_unpack_at_once_and_the_first_error_in_order_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let layer = |i: usize| {
            let mut b = tar::Builder::new(Vec::new());
            let data = format!("layer {i}\n");
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("f{i}"), data.as_bytes())
                .unwrap();
            let tar = b.into_inner().unwrap();
            let blob = s
                .put_blob_bytes(&tar, "application/vnd.oci.image.layer.v1.tar")
                .unwrap();
            LayerRecord {
                blob,
                diff_id: Digest::of(&tar),
            }
        };
        let good: Vec<LayerRecord> = (0..6).map(layer).collect();
        s.ensure_layers(&good).unwrap();
        for (i, l) in good.iter().enumerate() {
            let f = s.layer_path(&l.blob.digest).join(format!("f{i}"));
            assert_eq!(fs::read_to_string(f).unwrap(), format!("layer {i}\n"));
        }
        // Layer 2 is not what its diff id says, layer 3's blob is gone:
        // layer 2's error is the one told, whichever worker ended first.
        let mut bad: Vec<LayerRecord> = (6..10).map(layer).collect();
        bad[2].diff_id = Digest::of(b"something else");
        fs::remove_file(s.blob_path(&bad[3].blob.digest)).unwrap();
        let e = s.ensure_layers(&bad).unwrap_err();
        assert!(matches!(e, StoreError::DiffId { .. }), "{e}");
        assert!(!s.layer_path(&bad[2].blob.digest).exists());
        assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn container_ids_are_checked() {
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
        check_container_id("c0ffee_1.x-y").unwrap();
    }
}
