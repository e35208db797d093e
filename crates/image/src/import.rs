//! `import` (a root filesystem directory or `docker export` tarball) and
//! `load` (a `docker save` archive or an OCI image layout, as a directory or
//! a tar).

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use serde::Deserialize;

use crate::digest::{Digest, HashingWriter};
use crate::manifest::{self, media, Descriptor, ImageConfig, Platform};
use crate::reference::Reference;
use crate::store::{io_err, ImageId, Store, StoreError};
use crate::unpack::{self, Compression, UnpackOptions, Whiteouts};

/// Errors specific to import and load.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{path}: neither a docker save archive (manifest.json) nor an OCI layout (index.json)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{archive}: {file}: {reason}")]
    BadArchive {
        archive: PathBuf,
        file: String,
        reason: String,
    },
    #[error("--{0}")]
    Change(String),
    #[error("{archive}: unpack: {source}")]
    Unpack {
        archive: PathBuf,
        #[source]
        source: unpack::UnpackError,
    },
}

/// An image that `load` stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub id: ImageId,
    /// Canonical names given to it (may be empty: an OCI layout entry
    /// without a name annotation).
    pub names: Vec<String>,
}

impl Store {
    /// `hako import`: a root filesystem directory, or a tarball of one (as
    /// `docker export` writes; gzip and zstd are recognised), becomes a
    /// one-layer image named `name`.
    pub fn import_rootfs(
        &self,
        path: impl AsRef<Path>,
        name: &str,
    ) -> Result<ImageId, ImportError> {
        self.import_rootfs_with(path, name, &[])
    }

    /// [`import_rootfs`](Self::import_rootfs) with Dockerfile instructions
    /// for the image's config (`import --change`, see [`crate::changes`]).
    pub fn import_rootfs_with(
        &self,
        path: impl AsRef<Path>,
        name: &str,
        changes: &[String],
    ) -> Result<ImageId, ImportError> {
        let path = path.as_ref();
        let mut config = serde_json::Map::new();
        for c in changes {
            crate::changes::apply(&mut config, c).map_err(ImportError::Change)?;
        }
        let reference: Reference = name.parse().map_err(StoreError::from)?;
        let _c = self.content_lock()?;
        let (tmp, file) = self.create_temp_file("import")?;
        let mut w = HashingWriter::new(io::BufWriter::new(file));
        let meta = fs::metadata(path).map_err(io_err("import", path))?;
        if meta.is_dir() {
            let mut b = tar::Builder::new(&mut w);
            b.follow_symlinks(false);
            b.mode(tar::HeaderMode::Complete);
            b.append_dir_all(".", path)
                .map_err(io_err("archive directory", path))?;
            b.finish().map_err(io_err("archive directory", path))?;
        } else {
            // The layer is stored uncompressed, so its digest is its diff ID.
            // Decompressing is bounded like unpacking a layer is.
            let f = File::open(path).map_err(io_err("open tarball", path))?;
            let limit = unpack::max_uncompressed(meta.len());
            let r = decompressed(BufReader::new(f)).map_err(io_err("read tarball", path))?;
            let mut r = unpack::Budget::new(r, Some(limit), Some(tmp.path()));
            if let Err(e) = io::copy(&mut r, &mut w) {
                return Err(match r.hit() {
                    Some(reason) => StoreError::Limit {
                        what: format!("import {}", path.display()),
                        reason: reason.clone(),
                    },
                    None => io_err("read tarball", path)(e),
                }
                .into());
            }
        }
        let (digest, size, bw) = w.finish();
        let file = bw
            .into_inner()
            .map_err(|e| io_err("write layer", tmp.path())(e.into_error()))?;
        self.commit_blob_file(tmp, file, &digest)?;
        let layer = Descriptor {
            media_type: media::OCI_LAYER.into(),
            digest: digest.clone(),
            size,
            platform: None,
            annotations: None,
        };
        let created_by = format!("hako import {}", path.display());
        let m = self.synthesize_image(layer, digest, &created_by, config)?;
        Ok(self.commit_image(&m, None, &[reference], None)?)
    }

    /// `hako load -i ARCHIVE`: a `docker save` archive or an OCI image
    /// layout, either a directory or a tar (optionally compressed).
    pub fn load(&self, archive: impl AsRef<Path>) -> Result<Vec<Loaded>, ImportError> {
        let archive = archive.as_ref();
        let _c = self.content_lock()?;
        let meta = fs::metadata(archive).map_err(io_err("load", archive))?;
        // Keep the extraction alive until everything is stored.
        let (_tmp, dir) = if meta.is_dir() {
            (None, archive.to_owned())
        } else {
            let tmp = self.create_temp_dir("load", 0o700)?;
            let f = File::open(archive).map_err(io_err("open archive", archive))?;
            let opts = UnpackOptions {
                whiteouts: Whiteouts::Keep,
                same_owner: false,
                devices: false,
                max_bytes: Some(unpack::max_uncompressed(meta.len())),
                check_free_space: true,
            };
            unpack::unpack_with(BufReader::new(f), "", tmp.path(), &opts).map_err(|source| {
                ImportError::Unpack {
                    archive: archive.to_owned(),
                    source,
                }
            })?;
            let p = tmp.path().to_owned();
            (Some(tmp), p)
        };
        let ctx = Archive {
            store: self,
            archive,
            root: rustix::fs::openat(
                CWD,
                &dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("open", &dir)(e.into()))?,
        };
        if dir.join("manifest.json").is_file() {
            ctx.docker_save()
        } else if dir.join("index.json").is_file() {
            ctx.oci_layout()
        } else {
            Err(ImportError::UnknownFormat {
                path: archive.to_owned(),
            })
        }
    }
}

/// Wraps a reader in the decompressor its magic bytes call for (gzip,
/// zstd, or none).
pub fn decompressed<'a>(mut r: impl io::BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

struct Archive<'a> {
    store: &'a Store,
    archive: &'a Path,
    /// The archive's directory; files are opened beneath it only.
    root: OwnedFd,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Archive<'_> {
    fn bad(&self, file: &str, reason: impl Into<String>) -> ImportError {
        ImportError::BadArchive {
            archive: self.archive.to_owned(),
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    /// Opens a file named inside the archive. Symlinks within the archive
    /// are followed (docker save links duplicate layers), but resolution can
    /// never leave the archive's directory.
    fn open(&self, name: &str) -> Result<File, ImportError> {
        let fd = rustix::fs::openat2(
            &self.root,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| self.bad(name, format!("cannot open inside the archive: {e}")))?;
        Ok(File::from(fd))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let mut v = Vec::new();
        self.open(name)?
            .read_to_end(&mut v)
            .map_err(|e| self.bad(name, e.to_string()))?;
        Ok(v)
    }

    fn docker_save(&self) -> Result<Vec<Loaded>, ImportError> {
        let entries: Vec<SaveEntry> = serde_json::from_slice(&self.read("manifest.json")?)
            .map_err(|e| self.bad("manifest.json", e.to_string()))?;
        let mut out = Vec::new();
        for e in entries {
            let config_bytes = self.read(&e.config)?;
            let config_desc = self
                .store
                .put_blob_bytes(&config_bytes, media::OCI_CONFIG)?;
            let config =
                ImageConfig::parse(&config_bytes, &config_desc.digest).map_err(StoreError::from)?;
            if config.rootfs.diff_ids.len() != e.layers.len() {
                return Err(self.bad(&e.config, "diff_ids and layers differ in number"));
            }
            let mut layers = Vec::new();
            for name in &e.layers {
                let mut r = BufReader::new(self.open(name)?);
                let head =
                    io::BufRead::fill_buf(&mut r).map_err(|err| self.bad(name, err.to_string()))?;
                let media_type = match Compression::sniff(head) {
                    Compression::None => media::OCI_LAYER,
                    Compression::Gzip => media::OCI_LAYER_GZIP,
                    Compression::Zstd => media::OCI_LAYER_ZSTD,
                };
                let (digest, size) = self.store.put_blob(r, None)?;
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest,
                    size,
                    platform: None,
                    annotations: None,
                });
            }
            let m = manifest::Manifest {
                schema_version: 2,
                media_type: Some(media::OCI_MANIFEST.into()),
                config: config_desc,
                layers,
                annotations: None,
            };
            let mdesc = self
                .store
                .put_blob_bytes(&serde_json::to_vec(&m).expect("json"), media::OCI_MANIFEST)?;
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| t.parse::<Reference>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)?;
            let id = self.store.commit_image(&mdesc, None, &names, None)?;
            out.push(Loaded {
                id,
                names: names.iter().map(ToString::to_string).collect(),
            });
        }
        Ok(out)
    }

    /// Copies a blob of the layout into the store, verifying it.
    fn blob(&self, d: &Descriptor) -> Result<(), ImportError> {
        let name = format!("blobs/sha256/{}", d.digest.hex());
        if self.store.has_blob(&d.digest) {
            return Ok(());
        }
        self.store
            .put_blob(BufReader::new(self.open(&name)?), Some((&d.digest, d.size)))?;
        Ok(())
    }

    fn oci_layout(&self) -> Result<Vec<Loaded>, ImportError> {
        let bytes = self.read("index.json")?;
        let digest = Digest::of(&bytes);
        let index = match manifest::parse(&bytes, &digest, Some(media::OCI_INDEX))
            .map_err(StoreError::from)?
        {
            manifest::Parsed::Index(i) => i,
            manifest::Parsed::Image(_) => {
                return Err(self.bad("index.json", "is not an image index"))
            }
        };
        let mut out = Vec::new();
        for d in &index.manifests {
            let ann = d.annotations.clone().unwrap_or_default();
            // containerd and docker write the full name; skopeo and others
            // write org.opencontainers.image.ref.name, which may be a full
            // name or just a tag (then the image stays unnamed).
            let name = ann
                .get("io.containerd.image.name")
                .or_else(|| ann.get("org.opencontainers.image.ref.name"))
                .filter(|n| n.contains(':') || n.contains('/'))
                .map(|n| n.parse::<Reference>())
                .transpose()
                .map_err(StoreError::from)?;
            self.blob(d)?;
            let (mdesc, index_digest) = match d.media_type.as_str() {
                media::OCI_INDEX | media::DOCKER_LIST => {
                    let ib = self.store.read_blob(&d.digest)?;
                    let manifest::Parsed::Index(inner) =
                        manifest::parse(&ib, &d.digest, Some(&d.media_type))
                            .map_err(StoreError::from)?
                    else {
                        return Err(self.bad(&d.digest.to_string(), "is not an index"));
                    };
                    let want = Platform::current();
                    let m = inner.select(&want).ok_or_else(|| {
                        StoreError::from(manifest::ManifestError::NoPlatform {
                            digest: d.digest.clone(),
                            platform: want.to_string(),
                        })
                    })?;
                    self.blob(m)?;
                    (m.clone(), Some(d.digest.clone()))
                }
                _ => (d.clone(), None),
            };
            let mb = self.store.read_blob(&mdesc.digest)?;
            let manifest::Parsed::Image(m) =
                manifest::parse(&mb, &mdesc.digest, Some(&mdesc.media_type))
                    .map_err(StoreError::from)?
            else {
                return Err(self.bad(&mdesc.digest.to_string(), "is not an image manifest"));
            };
            self.blob(&m.config)?;
            for l in &m.layers {
                self.blob(l)?;
            }
            let names: Vec<Reference> = name.into_iter().collect();
            let id = self
                .store
                .commit_image(&mdesc, index_digest.as_ref(), &names, None)?;
            out.push(Loaded {
                id,
                names: names.iter().map(ToString::to_string).collect(),
            });
        }
        Ok(out)
    }
}
