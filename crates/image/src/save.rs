//! `hako save`: images as a docker-archive (`docker save`'s format, which
//! `docker load`, `podman load` and our `load` read) or an oci-archive (an
//! OCI image layout in a tar). Blobs are written once however many images
//! share them.

use std::collections::HashSet;
use std::io::{self, BufReader, Write};
use std::str::FromStr;

use crate::reference::Reference;
use crate::store::{io_err, ImageRecord, Store, StoreError};

/// The archive formats of `save`, by podman's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
}

impl FromStr for SaveFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "docker-archive" | "docker" => Ok(Self::DockerArchive),
            "oci-archive" | "oci" => Ok(Self::OciArchive),
            _ => Err(format!(
                "unknown archive format {s:?}: docker-archive or oci-archive"
            )),
        }
    }
}

/// A tar entry of `data` named `name`, owned by root, mode 0644, time 0
/// (archives hako writes: save, the checkpoint archive, whiteouts).
pub fn append_bytes(
    b: &mut tar::Builder<impl Write>,
    name: impl AsRef<std::path::Path>,
    data: &[u8],
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, name, data)
}

/// The names an image is saved under: the one asked for if it is one of
/// its tags, else all of them (asked for by id).
fn saved_names(rec: &ImageRecord, asked: &str) -> Vec<String> {
    if let Ok(r) = asked.parse::<Reference>() {
        let canonical = r.to_string();
        if rec.names.contains(&canonical) {
            return vec![canonical];
        }
    }
    rec.names.clone()
}

impl Store {
    /// Writes `images` to `out` as a `format` archive.
    pub fn save(
        &self,
        images: &[String],
        format: SaveFormat,
        out: impl Write,
    ) -> Result<(), StoreError> {
        let recs = images
            .iter()
            .map(|i| self.resolve(i).map(|r| (r, i.as_str())))
            .collect::<Result<Vec<_>, _>>()?;
        let _c = self.content_lock()?;
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Deterministic);
        let mut done = HashSet::new();
        let w = |e: io::Error| io_err("write the archive of", images.join(" "))(e);
        match format {
            SaveFormat::DockerArchive => {
                let mut manifest = Vec::new();
                for (rec, asked) in &recs {
                    let config = format!("{}.json", rec.config.digest.hex());
                    if done.insert(config.clone()) {
                        append_bytes(&mut b, &config, &self.read_blob(&rec.config.digest)?)
                            .map_err(w)?;
                    }
                    let mut layers = Vec::new();
                    for l in &rec.layers {
                        let name = format!("{}/layer.tar", l.diff_id.hex());
                        if done.insert(name.clone()) {
                            self.append_uncompressed(&mut b, &name, &l.blob.digest)?;
                        }
                        layers.push(name);
                    }
                    manifest.push(serde_json::json!({
                        "Config": config,
                        "RepoTags": saved_names(rec, asked),
                        "Layers": layers,
                    }));
                }
                append_bytes(
                    &mut b,
                    "manifest.json",
                    &serde_json::to_vec(&manifest).expect("json"),
                )
                .map_err(w)?;
            }
            SaveFormat::OciArchive => {
                append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .map_err(w)?;
                let mut index = Vec::new();
                for (rec, asked) in &recs {
                    let blobs = std::iter::once(&rec.manifest.digest)
                        .chain(std::iter::once(&rec.config.digest))
                        .chain(rec.layers.iter().map(|l| &l.blob.digest));
                    for d in blobs {
                        let name = format!("blobs/sha256/{}", d.hex());
                        if done.insert(name.clone()) {
                            b.append_path_with_name(self.blob_path(d), &name)
                                .map_err(w)?;
                        }
                    }
                    let names = saved_names(rec, asked);
                    let mut entry = serde_json::json!({
                        "mediaType": rec.manifest.media_type,
                        "digest": rec.manifest.digest.to_string(),
                        "size": rec.manifest.size,
                    });
                    if let Some(n) = names.first() {
                        entry["annotations"] =
                            serde_json::json!({"org.opencontainers.image.ref.name": n});
                    }
                    index.push(entry);
                }
                let index = serde_json::json!({"schemaVersion": 2, "manifests": index});
                append_bytes(
                    &mut b,
                    "index.json",
                    &serde_json::to_vec(&index).expect("json"),
                )
                .map_err(w)?;
            }
        }
        b.into_inner().and_then(|mut o| o.flush()).map_err(w)
    }

    /// A layer blob, uncompressed (what `docker save` writes), through a
    /// temporary file: a tar entry needs its size first.
    fn append_uncompressed(
        &self,
        b: &mut tar::Builder<impl Write>,
        name: &str,
        blob: &crate::Digest,
    ) -> Result<(), StoreError> {
        let path = self.blob_path(blob);
        let f = std::fs::File::open(&path).map_err(io_err("open", &path))?;
        let mut r =
            crate::import::decompressed(BufReader::new(f)).map_err(io_err("read", &path))?;
        let (tmp, mut t) = self.create_temp_file("save")?;
        io::copy(&mut r, &mut t).map_err(io_err("decompress", &path))?;
        drop(t);
        // Opened for writing only: read it through a new descriptor.
        let mut t = std::fs::File::open(tmp.path()).map_err(io_err("read", tmp.path()))?;
        let mut h = tar::Header::new_ustar();
        h.set_size(t.metadata().map_err(io_err("stat", tmp.path()))?.len());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, &mut t)
            .map_err(io_err("write the archive with", &path))
    }
}
