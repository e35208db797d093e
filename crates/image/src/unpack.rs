//! Safe layer unpacking.
//!
//! A layer is a tar stream (plain, gzip or zstd) that comes from somewhere we
//! do not trust. The rules, in the order they are checked for each entry:
//!
//! 1. The path is split into components; an absolute path or a `..`
//!    component is refused outright (never silently rewritten).
//! 2. The parent directory is reached one component at a time from an fd on
//!    the layer directory, with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//!    and `O_NOFOLLOW`, so a symlink planted by an earlier entry can never
//!    redirect a later one: following it is refused with an error.
//! 3. The entry itself is created relative to that parent fd with `O_EXCL` /
//!    `O_NOFOLLOW` (or `mknodat`, `symlinkat`, `linkat` that do not follow).
//! 4. A hardlink target goes through the same checks (1–2) and must already
//!    exist inside the layer.
//!
//! Whiteouts are converted to overlayfs's on-disk form so a layer directory
//! can be used directly as an overlay lowerdir: `.wh.NAME` becomes a 0:0
//! character device `NAME` (creating one needs no privilege since Linux 5.8)
//! and `.wh..wh..opq` sets the `overlay.opaque` xattr on its directory
//! (`trusted.` when root, `user.` for rootless overlay with `userxattr`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;

use crate::digest::{Digest, HashingReader};

/// Prefix of a whiteout entry name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker entry.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Errors from unpacking one layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("media type {0:?} is not a tar layer")]
    MediaType(String),
    #[error("reading layer stream: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("{op} {path:?} under {dest}: {source}")]
    Io {
        op: &'static str,
        path: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why an unpack (or a decompressing copy) was stopped before it could fill
/// the store's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "expands to more than {limit} bytes uncompressed (the limit is \
         max({RATIO} x compressed size, 1 GiB); {MAX_ENV} overrides it)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "stopped: the filesystem of {} has {avail} bytes free and {reserve} \
         must stay free ({RESERVE_ENV} overrides the reserve)", path.display()
    )]
    NoSpace {
        path: PathBuf,
        avail: u64,
        reserve: u64,
    },
}

/// Overrides [`max_uncompressed`] (bytes), mainly for tests.
pub const MAX_ENV: &str = "HAKO_MAX_LAYER_BYTES";
/// Overrides [`free_space_reserve`] (bytes).
pub const RESERVE_ENV: &str = "HAKO_STORE_RESERVE_BYTES";
/// Allowed expansion of a compressed layer, see [`max_uncompressed`].
pub const RATIO: u64 = 64;
const GIB: u64 = 1 << 30;
/// How often (in bytes read) the free space is checked again.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

fn env_bytes(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The most a layer of `compressed` bytes may expand to: the uncompressed
/// tar stream may be at most max(64 x compressed, 1 GiB).
///
/// Why these numbers: real layers compress 2-10x (text and binaries);
/// runs of zeros (preallocated files, empty disk images) compress much
/// more, which is what a bomb is made of (deflate reaches ~1000x, zstd
/// far more). 64x leaves room for zero-heavy but legitimate layers, and
/// the 1 GiB floor means no small layer is refused for its ratio alone.
/// There is no fixed ceiling: what bounds a big layer absolutely is the
/// free space check ([`free_space_reserve`]), which also covers
/// uncompressed layers, for which no ratio says anything. The limit is
/// on the stream, so it never changes what the diff ID is computed over:
/// a layer is either unpacked whole or refused.
pub fn max_uncompressed(compressed: u64) -> u64 {
    env_bytes(MAX_ENV).unwrap_or_else(|| compressed.saturating_mul(RATIO).max(GIB))
}

/// Space that must stay free on the store's filesystem while unpacking:
/// 2% of the filesystem, at least 64 MiB and at most 1 GiB, so the host
/// (logs, the engine's own state) keeps working when an image is too
/// big for the disk.
pub fn free_space_reserve(fs_size: u64) -> u64 {
    env_bytes(RESERVE_ENV).unwrap_or_else(|| (fs_size / 50).clamp(64 << 20, GIB))
}

/// A reader that stops with a [`LimitError`] once more than `limit`
/// bytes came through or the filesystem holding `space_of` runs low.
/// Errors pass through other layers (the tar crate) as `io::Error`s, so
/// the cause is also kept in [`Budget::hit`].
pub(crate) struct Budget<R> {
    inner: R,
    limit: u64,
    space_of: Option<PathBuf>,
    read: u64,
    next_check: u64,
    hit: Option<LimitError>,
}

impl<R: Read> Budget<R> {
    pub(crate) fn new(inner: R, limit: Option<u64>, space_of: Option<&Path>) -> Self {
        Self {
            inner,
            limit: limit.unwrap_or(u64::MAX),
            space_of: space_of.map(Path::to_owned),
            read: 0,
            next_check: 0,
            hit: None,
        }
    }

    /// Why reading was stopped, if it was.
    pub(crate) fn hit(&self) -> Option<&LimitError> {
        self.hit.as_ref()
    }

    fn check_space(&self) -> Result<(), LimitError> {
        let Some(p) = &self.space_of else {
            return Ok(());
        };
        // A filesystem that cannot say is not a reason to fail.
        let Ok(st) = rustix::fs::statvfs(p) else {
            return Ok(());
        };
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        let reserve = free_space_reserve(st.f_blocks.saturating_mul(st.f_frsize));
        if avail < reserve {
            return Err(LimitError::NoSpace {
                path: p.clone(),
                avail,
                reserve,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.hit {
            return Err(io::Error::other(e.clone()));
        }
        let r = (|| {
            if self.read >= self.next_check {
                self.check_space()?;
                self.next_check = self.read.saturating_add(SPACE_CHECK_EVERY);
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.hit = Some(e);
            return Err(io::Error::other(self.hit.clone().expect("set")));
        }
        let n = self.inner.read(buf)?;
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.limit {
            let e = LimitError::TooLarge { limit: self.limit };
            self.hit = Some(e.clone());
            return Err(io::Error::other(e));
        }
        Ok(n)
    }
}

/// The [`LimitError`] a [`Budget`] put into an `io::Error`, if it is one.
pub(crate) fn limit_of(e: &io::Error) -> Option<LimitError> {
    e.get_ref()?.downcast_ref::<LimitError>().cloned()
}

/// How the stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises the stream by its magic bytes (media types lie too often:
    /// `docker save` has none, and some registries label plain tars gzip).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// What to do with `.wh.` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Convert to overlayfs form; the opaque marker uses `trusted.overlay.opaque`.
    Overlay,
    /// Convert to overlayfs form for a `userxattr` mount (`user.overlay.opaque`).
    OverlayUserXattr,
    /// Keep them as ordinary files (for archives that are not layers).
    Keep,
}

impl Whiteouts {
    /// The right form for the current user: `trusted.` xattrs need root in
    /// the initial user namespace; root of a user namespace (rootless) gets
    /// the `user.` form that overlayfs reads with `userxattr`.
    pub fn for_current_user() -> Self {
        if privileged() {
            Self::Overlay
        } else {
            Self::OverlayUserXattr
        }
    }

    /// The opaque xattr name, if whiteouts are converted.
    pub fn opaque_xattr(self) -> Option<&'static str> {
        match self {
            Self::Overlay => Some("trusted.overlay.opaque"),
            Self::OverlayUserXattr => Some("user.overlay.opaque"),
            Self::Keep => None,
        }
    }
}

/// Unpacking options; [`UnpackOptions::default`] suits the current user.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    pub whiteouts: Whiteouts,
    /// Apply the archive's uid/gid (needs root).
    pub same_owner: bool,
    /// Create block and character devices (needs root); otherwise skipped.
    pub devices: bool,
    /// Most bytes the uncompressed tar stream may have; see
    /// [`max_uncompressed`]. `None`: no limit other than free space.
    pub max_bytes: Option<u64>,
    /// Stop when the destination's filesystem gets below
    /// [`free_space_reserve`].
    pub check_free_space: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            whiteouts: Whiteouts::for_current_user(),
            // Root of a user namespace can chown to the ids it maps.
            same_owner: rustix::process::geteuid().is_root(),
            // mknod of real devices needs root in the initial namespace.
            devices: privileged(),
            max_bytes: None,
            check_free_space: true,
        }
    }
}

/// Whether we are root in the initial user namespace (so trusted xattrs
/// and device nodes are available), as opposed to an unprivileged user or
/// root inside a user namespace.
pub fn privileged() -> bool {
    rustix::process::geteuid().is_root() && in_initial_userns()
}

/// The process is in the initial user namespace (its map is the identity
/// of every id; no /proc: assumed so).
pub(crate) fn in_initial_userns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"],
        Err(_) => true,
    }
}

/// What an unpack produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream (the layer's diff ID).
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    pub entries: u64,
    /// Device nodes skipped because we are not root.
    pub skipped_devices: u64,
}

/// Unpacks a layer into `dest` (which must exist) with default options.
/// `media_type` may be empty; the compression is recognised from the data,
/// but a media type that is not a tar layer is refused.
pub fn unpack(layer: impl Read, media_type: &str, dest: &Path) -> Result<UnpackStats, UnpackError> {
    unpack_with(layer, media_type, dest, &UnpackOptions::default())
}

/// [`unpack`] with explicit options.
pub fn unpack_with(
    layer: impl Read,
    media_type: &str,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    if !media_type.is_empty() && !media_type.contains("tar") {
        return Err(UnpackError::MediaType(media_type.to_owned()));
    }
    let mut buffered = BufReader::with_capacity(64 * 1024, layer);
    let head = buffered.fill_buf().map_err(UnpackError::Read)?;
    let decoded: Box<dyn Read + '_> = match Compression::sniff(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?)
        }
    };
    let budget = Budget::new(
        decoded,
        opts.max_bytes,
        opts.check_free_space.then_some(dest),
    );
    let mut hashing = HashingReader::new(budget);
    let mut unpacker = Unpacker::new(dest, opts)?;
    let r = (|| -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let entry = entry.map_err(UnpackError::Read)?;
            unpacker.entry(entry)?;
        }
        Ok(())
    })();
    // Whatever error the limit surfaced as, report the limit.
    if let Some(e) = hashing.get_ref().hit() {
        return Err(UnpackError::Limit(e.clone()));
    }
    r?;
    unpacker.finish_dirs()?;
    // The diff ID covers the whole stream, including tar's end padding.
    let (diff_id, tar_size) = hashing.finish().map_err(|e| match limit_of(&e) {
        Some(l) => UnpackError::Limit(l),
        None => UnpackError::Read(e),
    })?;
    Ok(UnpackStats {
        diff_id,
        tar_size,
        entries: unpacker.entries,
        skipped_devices: unpacker.skipped_devices,
    })
}

/// Copies `r` to `f`, leaving holes where whole blocks are zero, and sets
/// the length (a file that ends in a hole is still as long as it was).
fn write_with_holes(r: &mut impl Read, f: &mut File) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut at = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for block in buf[..n].chunks(4096) {
            if block.iter().any(|&b| b != 0) {
                if at != pos {
                    f.seek(SeekFrom::Start(pos))?;
                }
                f.write_all(block)?;
                at = pos + block.len() as u64;
            }
            pos += block.len() as u64;
        }
    }
    f.set_len(pos)
}

/// Splits an archive path into plain components; refuses `..` and absolute
/// paths. `./` and empty components are dropped; an empty result is the
/// layer root itself.
pub fn clean_path(raw: &[u8]) -> Result<Vec<OsString>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains \"..\"".into()),
            _ => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(out)
}

/// Metadata from one tar header.
#[derive(Clone, Debug)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(OsString, Vec<u8>)>,
    /// `GNU.sparse.*` PAX records: the entry is a sparse file.
    sparse: Option<PaxSparse>,
}

/// Most data chunks one sparse file may list (each costs a seek and a
/// little memory; real sparse files have a few).
const MAX_SPARSE_CHUNKS: u64 = 1 << 20;
/// Most bytes old-GNU sparse files of one layer may expand to: the tar
/// crate hands their holes over as zeros, which costs CPU to skip.
const MAX_GNU_SPARSE_EXPANSION: u64 = 1 << 40;

/// A sparse file in the PAX formats GNU tar writes (`--format=posix
/// --sparse`): 0.0 lists `GNU.sparse.offset`/`numbytes` pairs, 0.1 one
/// `GNU.sparse.map`, both with the data chunks back to back as the entry's
/// content; 1.0 puts the map at the start of the content (decimal lines,
/// padded to 512 bytes). 0.1 and 1.0 also rename the entry
/// (`GNUSparseFile.PID/NAME`) and give the real name as `GNU.sparse.name`.
#[derive(Clone, Debug, Default)]
struct PaxSparse {
    major: Option<String>,
    name: Option<Vec<u8>>,
    real_size: Option<String>,
    offsets: Vec<String>,
    numbytes: Vec<String>,
    map: Option<String>,
}

fn parse_u64(what: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("sparse file: bad {what} {v:?}"))
}

impl PaxSparse {
    fn is_v1(&self) -> bool {
        self.major.as_deref() == Some("1")
    }

    fn real_size(&self) -> Result<u64, String> {
        let v = self
            .real_size
            .as_deref()
            .ok_or("sparse file without a real size")?;
        parse_u64("size", v)
    }

    /// The map of the 0.x formats, from the PAX records.
    fn pax_map(&self) -> Result<Vec<(u64, u64)>, String> {
        let nums: Vec<&str> = match &self.map {
            Some(m) if m.is_empty() => Vec::new(),
            Some(m) => m.split(',').collect(),
            None => {
                if self.offsets.len() != self.numbytes.len() {
                    return Err("sparse file: offsets and sizes do not pair up".into());
                }
                self.offsets
                    .iter()
                    .zip(&self.numbytes)
                    .flat_map(|(o, n)| [o.as_str(), n.as_str()])
                    .collect()
            }
        };
        if nums.len() % 2 != 0 {
            return Err("sparse file: odd number of map entries".into());
        }
        if nums.len() as u64 / 2 > MAX_SPARSE_CHUNKS {
            return Err("sparse file: too many chunks".into());
        }
        nums.chunks(2)
            .map(|c| Ok((parse_u64("offset", c[0])?, parse_u64("size", c[1])?)))
            .collect()
    }
}

/// Checks a sparse map: chunks in order, not overlapping, inside the file,
/// and together exactly the data the entry carries. Returns the data size.
fn check_sparse_map(map: &[(u64, u64)], real_size: u64) -> Result<u64, String> {
    let mut end = 0u64;
    let mut data = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err("sparse file: chunks out of order or overlapping".into());
        }
        end = off
            .checked_add(len)
            .filter(|e| *e <= real_size)
            .ok_or("sparse file: chunk beyond the file's size")?;
        data += len;
    }
    Ok(data)
}

#[derive(Default)]
struct DirState {
    meta: Option<Meta>,
    opaque: bool,
}

struct Unpacker<'a> {
    root: OwnedFd,
    dest: &'a Path,
    opts: &'a UnpackOptions,
    /// Directory metadata is applied last, deepest first: creating entries
    /// inside a directory would change its mtime, and a read-only mode would
    /// stop us from creating them.
    dirs: BTreeMap<Vec<OsString>, DirState>,
    entries: u64,
    skipped_devices: u64,
    /// Apparent size of old-GNU sparse files so far.
    gnu_sparse_bytes: u64,
    /// Display form of the entry being processed, for errors.
    cur: String,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens `name`, a single path component, in `dir` as a directory, never
/// following a symlink.
fn open_dir_beneath(dir: impl AsFd, name: &OsStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat2(&dir, name, flags, Mode::empty(), RESOLVE) {
        // Kernels before 5.6: a single component opened with O_NOFOLLOW |
        // O_DIRECTORY is just as safe.
        Err(Errno::NOSYS) => rustix::fs::openat(&dir, name, flags, Mode::empty()),
        r => r,
    }
}

impl<'a> Unpacker<'a> {
    fn new(dest: &'a Path, opts: &'a UnpackOptions) -> Result<Self, UnpackError> {
        let root = rustix::fs::openat(
            CWD,
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::Io {
            op: "open layer directory",
            path: String::new(),
            dest: dest.to_owned(),
            source: errno(e),
        })?;
        Ok(Self {
            root,
            dest,
            opts,
            dirs: BTreeMap::new(),
            entries: 0,
            skipped_devices: 0,
            gnu_sparse_bytes: 0,
            cur: String::new(),
        })
    }

    fn refused(&self, reason: impl Into<String>) -> UnpackError {
        UnpackError::Refused {
            path: self.cur.clone(),
            reason: reason.into(),
        }
    }

    fn io(&self, op: &'static str, e: impl Into<io::Error>) -> UnpackError {
        UnpackError::Io {
            op,
            path: self.cur.clone(),
            dest: self.dest.to_owned(),
            source: e.into(),
        }
    }

    /// Walks `comps` from the layer root without following symlinks,
    /// creating missing directories when `create` is set.
    fn walk(&self, comps: &[OsString], create: bool) -> Result<OwnedFd, UnpackError> {
        let mut fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io("open layer root", errno(e)))?;
        for c in comps {
            let next = match open_dir_beneath(&fd, c, OFlags::PATH) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.io("create parent directory", errno(e))),
                    }
                    open_dir_beneath(&fd, c, OFlags::PATH)
                }
                r => r,
            };
            fd = match next {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    return Err(self.refused(format!(
                        "{:?} does not exist in the layer",
                        c.to_string_lossy()
                    )))
                }
                Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => {
                    let what =
                        match rustix::fs::statat(&fd, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                                "is a symlink; refusing to follow it"
                            }
                            _ => "is not a directory",
                        };
                    return Err(
                        self.refused(format!("parent component {:?} {what}", c.to_string_lossy()))
                    );
                }
                Err(e) => return Err(self.io("open parent directory", errno(e))),
            };
        }
        Ok(fd)
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.entries += 1;
        let mut raw_path = entry.path_bytes().into_owned();
        self.cur = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        let mut meta = self.meta(&mut entry)?;
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            meta.sparse = None;
        }
        // A PAX sparse file's real name; it gets the same checks.
        if let Some(n) = meta.sparse.as_ref().and_then(|s| s.name.clone()) {
            raw_path = n;
            self.cur = String::from_utf8_lossy(&raw_path).into_owned();
        }
        let comps = clean_path(&raw_path).map_err(|r| self.refused(r))?;

        let Some((name, parent)) = comps.split_last() else {
            // "./": the layer root's own metadata.
            if kind.is_dir() {
                self.dirs.entry(Vec::new()).or_default().meta = Some(meta);
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();

        if self.opts.whiteouts != Whiteouts::Keep {
            if name_bytes == OPAQUE_MARKER.as_bytes() {
                self.walk(parent, true)?;
                self.dirs.entry(parent.to_vec()).or_default().opaque = true;
                return Ok(());
            }
            if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(self.refused("malformed whiteout name"));
                }
                let dir = self.walk(parent, true)?;
                return self.whiteout(&dir, OsStr::from_bytes(hidden));
            }
        }

        let dir = self.walk(parent, true)?;
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st =
                            rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                                .map_err(|e| self.io("stat", errno(e)))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.replace(&dir, name)?;
                            rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(0o700))
                                .map_err(|e| self.io("create directory", errno(e)))?;
                        }
                    }
                    Err(e) => return Err(self.io("create directory", errno(e))),
                }
                self.dirs.entry(comps.clone()).or_default().meta = Some(meta);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if kind == tar::EntryType::GNUSparse {
                    // The tar crate has read the sparse map already (also
                    // from extension headers); the entry reads as the full
                    // file, holes as zeros.
                    self.gnu_sparse_bytes = self.gnu_sparse_bytes.saturating_add(entry.size());
                    if self.gnu_sparse_bytes > MAX_GNU_SPARSE_EXPANSION {
                        return Err(self.refused(format!(
                            "old GNU sparse files of this layer are over \
                             {MAX_GNU_SPARSE_EXPANSION} bytes"
                        )));
                    }
                }
                self.replace(&dir, name)?;
                let fd = rustix::fs::openat(
                    &dir,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io("create file", errno(e)))?;
                let mut file = File::from(fd);
                if let Some(sp) = &meta.sparse {
                    self.write_pax_sparse(&mut entry, &mut file, sp)?;
                } else if kind == tar::EntryType::GNUSparse {
                    write_with_holes(&mut entry, &mut file)
                        .map_err(|e| self.io("write file", e))?;
                } else {
                    io::copy(&mut entry, &mut file).map_err(|e| self.io("write file", e))?;
                }
                self.apply_fd_meta(file.as_fd(), &meta)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refused("symlink without a target"))?
                    .into_owned();
                self.replace(&dir, name)?;
                // The target is stored as is and never followed here: it is
                // resolved only inside the container's root.
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, name.as_os_str())
                    .map_err(|e| self.io("create symlink", errno(e)))?;
                self.apply_at_meta(&dir, name, &meta, false)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refused("hardlink without a target"))?
                    .into_owned();
                let tcomps = clean_path(&target).map_err(|r| {
                    self.refused(format!(
                        "hardlink target {:?}: {r}",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.refused("hardlink to the layer root"));
                };
                let tdir = self.walk(tparent, false)?;
                self.replace(&dir, name)?;
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself,
                // never what it points to.
                rustix::fs::linkat(
                    &tdir,
                    tname.as_os_str(),
                    &dir,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    Errno::NOENT => self.refused(format!(
                        "hardlink target {:?} is not in the layer",
                        String::from_utf8_lossy(&target)
                    )),
                    e => self.io("create hardlink", errno(e)),
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if ft != FileType::Fifo && !self.opts.devices {
                    self.skipped_devices += 1;
                    return Ok(());
                }
                let h = entry.header();
                let dev = rustix::fs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                self.replace(&dir, name)?;
                rustix::fs::mknodat(&dir, name.as_os_str(), ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.io("create device node", errno(e)))?;
                self.apply_at_meta(&dir, name, &meta, true)?;
            }
            other => {
                return Err(self.refused(format!("unsupported tar entry type {other:?}")));
            }
        }
        Ok(())
    }

    /// Writes a PAX-format sparse file: each data chunk at its offset, the
    /// rest left as holes, the file extended to its real size.
    fn write_pax_sparse(
        &self,
        entry: &mut impl Read,
        file: &mut File,
        sp: &PaxSparse,
    ) -> Result<(), UnpackError> {
        use std::io::{Seek, SeekFrom};
        let real_size = sp.real_size().map_err(|r| self.refused(r))?;
        let mut r = BufReader::new(entry);
        let map = if sp.is_v1() {
            self.read_v1_map(&mut r)?
        } else {
            sp.pax_map().map_err(|e| self.refused(e))?
        };
        check_sparse_map(&map, real_size).map_err(|e| self.refused(e))?;
        for (off, len) in map {
            file.seek(SeekFrom::Start(off))
                .map_err(|e| self.io("write file", e))?;
            let n =
                io::copy(&mut (&mut r).take(len), file).map_err(|e| self.io("write file", e))?;
            if n != len {
                return Err(self.refused("sparse file: the data is shorter than its map"));
            }
        }
        // Anything after the listed chunks is not part of the file.
        let mut rest = [0u8; 1];
        if r.read(&mut rest).map_err(|e| self.io("read entry", e))? != 0 {
            return Err(self.refused("sparse file: more data than its map lists"));
        }
        file.set_len(real_size)
            .map_err(|e| self.io("write file", e))
    }

    /// The 1.0 map at the start of the data: a count, then offset and size
    /// lines, padded with NULs to a 512-byte block.
    fn read_v1_map(&self, r: &mut impl BufRead) -> Result<Vec<(u64, u64)>, UnpackError> {
        let mut consumed = 0u64;
        let mut line = || -> Result<u64, UnpackError> {
            let mut buf = Vec::new();
            // Decimal u64s: 20 digits and the newline at most.
            r.take(21)
                .read_until(b'\n', &mut buf)
                .map_err(|e| self.io("read sparse map", e))?;
            consumed += buf.len() as u64;
            let text = buf
                .strip_suffix(b"\n")
                .ok_or_else(|| self.refused("sparse file: truncated map"))?;
            parse_u64("map entry", &String::from_utf8_lossy(text)).map_err(|e| self.refused(e))
        };
        let count = line()?;
        if count > MAX_SPARSE_CHUNKS {
            return Err(self.refused("sparse file: too many chunks"));
        }
        let mut map = Vec::new();
        for _ in 0..count {
            map.push((line()?, line()?));
        }
        let pad = (512 - consumed % 512) % 512;
        let skipped = io::copy(&mut r.take(pad), &mut io::sink())
            .map_err(|e| self.io("read sparse map", e))?;
        if skipped != pad {
            return Err(self.refused("sparse file: truncated map"));
        }
        Ok(map)
    }

    /// Removes whatever is at `name` so an entry can take its place (a later
    /// entry for the same path wins). A non-empty directory is never
    /// removed: a well-formed layer does not replace one with a file.
    fn replace(&self, dir: &OwnedFd, name: &OsStr) -> Result<(), UnpackError> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
                .map_err(|e| self.io("replace directory", errno(e))),
            Err(e) => Err(self.io("replace", errno(e))),
        }
    }

    fn whiteout(&mut self, dir: &OwnedFd, hidden: &OsStr) -> Result<(), UnpackError> {
        // If this layer also has the hidden name itself, that entry stays:
        // the whiteout is about lower layers only.
        match rustix::fs::mknodat(
            dir,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        ) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(self.io("create whiteout", errno(e))),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode().map_err(|e| self.io("read mode", e))? & 0o7777,
            // Some writers leave the id fields blank: that is root.
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            xattrs: Vec::new(),
            sparse: None,
        };
        if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
            for ext in exts {
                let ext = ext.map_err(UnpackError::Read)?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse().ok())
                };
                match key {
                    "uid" => meta.uid = num().unwrap_or(meta.uid),
                    "gid" => meta.gid = num().unwrap_or(meta.gid),
                    "mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                    _ if key.starts_with("GNU.sparse.") => {
                        let sp = meta.sparse.get_or_insert_with(PaxSparse::default);
                        let text = || String::from_utf8_lossy(value).into_owned();
                        match &key["GNU.sparse.".len()..] {
                            "major" => sp.major = Some(text()),
                            "name" => sp.name = Some(value.to_vec()),
                            // 1.0 and 0.x spell the real size differently.
                            "realsize" | "size" => sp.real_size = Some(text()),
                            "offset" => sp.offsets.push(text()),
                            "numbytes" => sp.numbytes.push(text()),
                            "map" => sp.map = Some(text()),
                            _ => {}
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            // A layer must not forge overlayfs's own metadata
                            // (redirects, metacopy, opacity): that would let it
                            // reach into other layers.
                            if name.starts_with("trusted.overlay.")
                                || name.starts_with("user.overlay.")
                            {
                                continue;
                            }
                            meta.xattrs.push((name.into(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    fn uid_gid(&self, meta: &Meta) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
        if !self.opts.same_owner {
            return None;
        }
        let uid = u32::try_from(meta.uid).ok()?;
        let gid = u32::try_from(meta.gid).ok()?;
        Some((
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        ))
    }

    fn times(meta: &Meta) -> Timestamps {
        let t = rustix::fs::Timespec {
            tv_sec: i64::try_from(meta.mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    fn set_xattrs(&self, fd: impl AsFd, meta: &Meta) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(&fd, name.as_os_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                // Not every filesystem or user can hold every namespace;
                // losing e.g. security.selinux is what docker does too.
                Err(Errno::OPNOTSUPP | Errno::PERM | Errno::ACCESS) if !self.opts.same_owner => {}
                Err(Errno::OPNOTSUPP) => {}
                Err(e) => return Err(self.io("set xattr", errno(e))),
            }
        }
        Ok(())
    }

    /// Owner, then mode (chown clears set-id bits), xattrs, times.
    fn apply_fd_meta(&self, fd: impl AsFd, meta: &Meta) -> Result<(), UnpackError> {
        if let Some((u, g)) = self.uid_gid(meta) {
            rustix::fs::fchown(&fd, Some(u), Some(g)).map_err(|e| self.io("chown", errno(e)))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.io("chmod", errno(e)))?;
        self.set_xattrs(&fd, meta)?;
        rustix::fs::futimens(&fd, &Self::times(meta)).map_err(|e| self.io("set times", errno(e)))
    }

    /// Metadata for nodes that cannot be opened for writing (symlinks,
    /// devices, fifos): everything through the parent fd, never following.
    fn apply_at_meta(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        if let Some((u, g)) = self.uid_gid(meta) {
            rustix::fs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io("chown", errno(e)))?;
        }
        if chmod {
            // Not a symlink (checked by the caller), so this cannot follow one.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| self.io("chmod", errno(e)))?;
        }
        rustix::fs::utimensat(dir, name, &Self::times(meta), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.io("set times", errno(e)))
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, state) in dirs.into_iter().rev() {
            self.cur = comps
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let fd = match comps.split_last() {
                None => rustix::fs::openat(
                    &self.root,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io("open directory", errno(e)))?,
                Some((name, parent)) => {
                    let p = self.walk(parent, false)?;
                    match open_dir_beneath(&p, name, OFlags::RDONLY) {
                        Ok(fd) => fd,
                        // Replaced by a later non-directory entry.
                        Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => continue,
                        Err(e) => return Err(self.io("open directory", errno(e))),
                    }
                }
            };
            if state.opaque {
                if let Some(x) = self.opts.whiteouts.opaque_xattr() {
                    rustix::fs::fsetxattr(&fd, x, b"y", XattrFlags::empty())
                        .map_err(|e| self.io("mark directory opaque", errno(e)))?;
                }
            }
            if let Some(meta) = &state.meta {
                self.apply_fd_meta(&fd, meta)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        privileged()
    }

    /// Builds a tar archive from raw headers, so tests can write names the
    /// tar crate's safe helpers would refuse.
    struct Tar {
        b: tar::Builder<Vec<u8>>,
    }

    impl Tar {
        fn new() -> Self {
            Self {
                b: tar::Builder::new(Vec::new()),
            }
        }
        fn header(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_mtime(1_000_000_000);
            h.set_uid(0);
            h.set_gid(0);
            // Raw bytes: set_path would refuse `..`.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            h
        }
        fn file(mut self, name: &str, data: &[u8]) -> Self {
            let h = Self::header(tar::EntryType::Regular, name, data.len() as u64);
            self.b.append(&h, data).unwrap();
            self
        }
        fn dir(mut self, name: &str) -> Self {
            let h = Self::header(tar::EntryType::Directory, name, 0);
            self.b.append(&h, &[][..]).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::header(kind, name, 0);
            let field = &mut h.as_old_mut().linkname;
            field[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            self.b.append(&h, &[][..]).unwrap();
            self
        }
        fn done(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let r = unpack(bytes, "application/vnd.oci.image.layer.v1.tar", &layer);
        (dir, r)
    }

    fn assert_refused(r: Result<UnpackStats, UnpackError>, needle: &str) {
        match r {
            Err(e @ UnpackError::Refused { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    /// Everything under the temp dir except the layer must be untouched.
    fn outside(dir: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plain_gzip_and_zstd_layers() {
        let tar = Tar::new()
            .dir("etc")
            .file("etc/hostname", b"hako\n")
            .file("bin/sh", b"#!")
            .done();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, &tar).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for bytes in [&tar, &gz, &zst] {
            let (dir, r) = unpack_bytes(bytes);
            let stats = r.unwrap();
            assert_eq!(stats.diff_id, Digest::of(&tar));
            assert_eq!(stats.tar_size, tar.len() as u64);
            let l = dir.path().join("layer");
            assert_eq!(std::fs::read(l.join("etc/hostname")).unwrap(), b"hako\n");
            // Parent created implicitly for bin/sh.
            assert!(l.join("bin").is_dir());
            let md = std::fs::metadata(l.join("etc/hostname")).unwrap();
            assert_eq!(md.permissions().mode() & 0o7777, 0o644);
            assert_eq!(md.mtime(), 1_000_000_000);
            let md = std::fs::metadata(l.join("etc")).unwrap();
            assert_eq!(
                md.mtime(),
                1_000_000_000,
                "dir mtime applied after its children"
            );
        }
    }

    #[test]
    fn refuses_dotdot() {
        let (dir, r) = unpack_bytes(&Tar::new().file("../escape", b"x").done());
        assert_refused(r, "\"..\"");
        assert_eq!(outside(&dir), ["layer"]);
        let (_d, r) = unpack_bytes(&Tar::new().file("a/../../escape", b"x").done());
        assert_refused(r, "\"..\"");
    }

    #[test]
    fn refuses_pax_and_gnu_long_names_too() {
        // The checked name comes from the PAX header, not the ustar field.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"../pax-escape"[..])])
            .unwrap();
        b.append(
            &Tar::header(tar::EntryType::Regular, "innocent", 1),
            &b"x"[..],
        )
        .unwrap();
        let (dir, r) = unpack_bytes(&b.into_inner().unwrap());
        assert_refused(r, "\"..\"");
        assert_eq!(outside(&dir), ["layer"]);
        // A GNU long name (over 100 bytes) is checked as well.
        let long = format!("{}/../../escape", "d".repeat(120));
        let mut b = tar::Builder::new(Vec::new());
        let mut ln = tar::Header::new_gnu();
        ln.set_entry_type(tar::EntryType::GNULongName);
        ln.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        ln.set_size(long.len() as u64 + 1);
        ln.set_cksum();
        let mut name = long.into_bytes();
        name.push(0);
        b.append(&ln, &name[..]).unwrap();
        b.append(&Tar::header(tar::EntryType::Regular, "short", 1), &b"x"[..])
            .unwrap();
        let (_d, r) = unpack_bytes(&b.into_inner().unwrap());
        assert_refused(r, "\"..\"");
    }

    #[test]
    fn refuses_absolute() {
        let (_d, r) = unpack_bytes(
            &Tar::new()
                .file("/etc/passwd", b"root::0:0::/:/bin/sh\n")
                .done(),
        );
        assert_refused(r, "absolute path");
    }

    #[test]
    fn refuses_writing_through_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        // A symlink to a directory outside, then a file "through" it.
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "root", victim.to_str().unwrap())
            .file("root/planted", b"x")
            .done();
        let r = unpack(&tar[..], "", &layer);
        assert_refused(r, "symlink");
        assert!(!victim.join("planted").exists());
        // The same with a relative link to "/" and deeper nesting.
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "up", "/")
            .file("up/tmp/planted", b"x")
            .done();
        let (_d, r) = unpack_bytes(&tar);
        assert_refused(r, "symlink");
        assert!(!Path::new("/tmp/planted").exists());
    }

    #[test]
    fn symlinks_are_kept_verbatim() {
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "etc/mtab", "/proc/mounts")
            .link(tar::EntryType::Symlink, "bin/sh", "busybox")
            .done();
        let (dir, r) = unpack_bytes(&tar);
        r.unwrap();
        let l = dir.path().join("layer");
        assert_eq!(
            std::fs::read_link(l.join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
        assert_eq!(
            std::fs::read_link(l.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }

    #[test]
    fn refuses_hardlinks_outside() {
        let (_d, r) = unpack_bytes(
            &Tar::new()
                .link(tar::EntryType::Link, "shadow", "/etc/shadow")
                .done(),
        );
        assert_refused(r, "absolute path");
        let (_d, r) = unpack_bytes(
            &Tar::new()
                .link(tar::EntryType::Link, "shadow", "../../etc/shadow")
                .done(),
        );
        assert_refused(r, "\"..\"");
        // Through a symlinked parent.
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "etc", "/etc")
            .link(tar::EntryType::Link, "shadow", "etc/shadow")
            .done();
        let (_d, r) = unpack_bytes(&tar);
        assert_refused(r, "symlink");
        // To a name that does not exist in the layer.
        let (_d, r) = unpack_bytes(&Tar::new().link(tar::EntryType::Link, "x", "missing").done());
        assert_refused(r, "not in the layer");
    }

    #[test]
    fn hardlinks_inside_work() {
        let tar = Tar::new()
            .file("bin/busybox", b"elf")
            .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
            .done();
        let (dir, r) = unpack_bytes(&tar);
        r.unwrap();
        let l = dir.path().join("layer");
        let a = std::fs::metadata(l.join("bin/busybox")).unwrap();
        let b = std::fs::metadata(l.join("bin/ls")).unwrap();
        assert_eq!(a.ino(), b.ino());
    }

    #[test]
    fn hardlink_to_symlink_links_the_symlink() {
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "s", "/etc/shadow")
            .link(tar::EntryType::Link, "h", "s")
            .done();
        let (dir, r) = unpack_bytes(&tar);
        r.unwrap();
        let h = dir.path().join("layer/h");
        assert!(std::fs::symlink_metadata(&h)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn whiteouts_become_overlay_markers() {
        let tar = Tar::new()
            .dir("etc")
            .file("etc/.wh.motd", b"")
            .dir("var/cache")
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/new", b"n")
            .done();
        let (dir, r) = unpack_bytes(&tar);
        r.unwrap();
        let l = dir.path().join("layer");
        let wh = std::fs::symlink_metadata(l.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!l.join("etc/.wh.motd").exists());
        assert!(!l.join("var/cache/.wh..wh..opq").exists());
        let x = Whiteouts::for_current_user().opaque_xattr().unwrap();
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(l.join("var/cache"), x, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(l.join("var/cache/new").exists());
    }

    #[test]
    fn keep_mode_leaves_whiteout_names() {
        let dir = tempfile::tempdir().unwrap();
        let tar = Tar::new().file(".wh.x", b"").done();
        let opts = UnpackOptions {
            whiteouts: Whiteouts::Keep,
            ..UnpackOptions::default()
        };
        unpack_with(&tar[..], "", dir.path(), &opts).unwrap();
        assert!(dir.path().join(".wh.x").is_file());
    }

    #[test]
    fn forged_overlay_xattrs_are_dropped() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("d").unwrap();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..])])
            .unwrap();
        b.append(&h, &[][..]).unwrap();
        let (dir, r) = unpack_bytes(&b.into_inner().unwrap());
        r.unwrap();
        let mut buf = [0u8; 16];
        assert!(rustix::fs::lgetxattr(
            dir.path().join("layer/d"),
            "trusted.overlay.redirect",
            &mut buf[..]
        )
        .is_err());
    }

    #[test]
    #[ignore = "needs root"]
    fn ownership_and_setuid_when_root() {
        assert!(is_root(), "needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
        let mut h = Tar::header(tar::EntryType::Regular, "bin/su", 1);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mode(0o4755);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let mut dev = Tar::header(tar::EntryType::Char, "dev/null", 0);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        dev.set_cksum();
        b.append(&dev, &[][..]).unwrap();
        let (dir, r) = unpack_bytes(&b.into_inner().unwrap());
        r.unwrap();
        let md = std::fs::metadata(dir.path().join("layer/bin/su")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 4321));
        assert_eq!(md.permissions().mode() & 0o7777, 0o4755);
        let md = std::fs::symlink_metadata(dir.path().join("layer/dev/null")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    }

    #[test]
    fn refuses_non_tar_media_type() {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack(
            &b"{}"[..],
            "application/vnd.oci.image.config.v1+json",
            dir.path(),
        );
        assert!(matches!(r, Err(UnpackError::MediaType(_))));
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tar = Tar::new().file("a", b"1").file("a", b"2").done();
        let (dir, r) = unpack_bytes(&tar);
        r.unwrap();
        assert_eq!(std::fs::read(dir.path().join("layer/a")).unwrap(), b"2");
    }

    fn pax_sparse(exts: &[(&str, &[u8])], data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(exts.iter().copied()).unwrap();
        b.append(
            &Tar::header(
                tar::EntryType::Regular,
                "GNUSparseFile.1/f",
                data.len() as u64,
            ),
            data,
        )
        .unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn pax_sparse_names_and_maps_are_checked() {
        // 0.1 with a good map.
        let ok = pax_sparse(
            &[
                ("GNU.sparse.size", b"10"),
                ("GNU.sparse.map", b"2,3,9,1"),
                ("GNU.sparse.name", b"d/f"),
            ],
            b"abcz",
        );
        let (dir, r) = unpack_bytes(&ok);
        r.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("layer/d/f")).unwrap(),
            b"\0\0abc\0\0\0\0z"
        );
        // The real name is checked like any path.
        let (d, r) = unpack_bytes(&pax_sparse(
            &[
                ("GNU.sparse.size", b"1"),
                ("GNU.sparse.map", b"0,1"),
                ("GNU.sparse.name", b"../escape"),
            ],
            b"x",
        ));
        assert_refused(r, "\"..\"");
        assert_eq!(outside(&d), ["layer"]);
        for (map, data, needle) in [
            (&b"8,4"[..], &b"abcd"[..], "beyond"),
            (b"4,1,2,1", b"ab", "out of order"),
            (b"0,1", b"ab", "more data"),
            (b"0,3", b"ab", "shorter"),
            (b"0,x", b"ab", "bad size"),
        ] {
            let (_d, r) = unpack_bytes(&pax_sparse(
                &[("GNU.sparse.size", b"10"), ("GNU.sparse.map", map)],
                data,
            ));
            assert_refused(r, needle);
        }
        // 1.0 with a map that claims more chunks than it has.
        let mut data = b"5\n0\n1\n".to_vec();
        data.resize(512, 0);
        let (_d, r) = unpack_bytes(&pax_sparse(
            &[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.realsize", b"10"),
            ],
            &data,
        ));
        assert_refused(r, "truncated map");
    }

    #[test]
    fn clean_path_cases() {
        assert_eq!(clean_path(b"./a//b/./c").unwrap(), ["a", "b", "c"]);
        assert!(clean_path(b"./").unwrap().is_empty());
        assert!(clean_path(b"/a").is_err());
        assert!(clean_path(b"a/..").is_err());
        assert_eq!(clean_path(b"a/..b").unwrap(), ["a", "..b"]);
    }
}
