//! Images made step by step (`hako build`): a container's changes as a
//! compressed layer, an image from layers and a config, and the build
//! cache's index (a step's key → the image it made).
//!
//! A build's steps are images of their own, marked intermediate: hidden
//! from `images`, reused by later builds, removed by `image prune`.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::Value;

use crate::digest::HashingWriter;
use crate::manifest::{media, Descriptor, Manifest};
use crate::store::{check_container_id, io_err, ImageRecord, LayerRecord, Store, StoreError};
use crate::{Digest, ImageId, ImportError, Reference};

impl Store {
    /// The changes of `container_id` (its overlay upper directory) stored
    /// as a gzip-compressed OCI layer.
    pub fn layer_from_changes(&self, container_id: &str) -> Result<LayerRecord, StoreError> {
        check_container_id(container_id)?;
        let _c = self.content_lock()?;
        let (tmp, file) = self.create_temp_file("layer")?;
        let compressed = HashingWriter::new(io::BufWriter::new(file));
        // Level 1: a build's layers are mostly written once and read
        // locally; the ratio of level 6 costs several times the CPU.
        let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
        let mut plain = HashingWriter::new(gz);
        self.write_changes(container_id, &mut plain)?;
        let (diff_id, _, gz) = plain.finish();
        let compressed = gz.finish().map_err(io_err("compress layer", tmp.path()))?;
        let (digest, size, bw) = compressed.finish();
        let file = bw
            .into_inner()
            .map_err(|e| io_err("write layer", tmp.path())(e.into_error()))?;
        self.commit_blob_file(tmp, file, &digest)?;
        Ok(LayerRecord {
            blob: Descriptor {
                media_type: media::OCI_LAYER_GZIP.into(),
                digest,
                size,
                platform: None,
                annotations: None,
            },
            diff_id,
        })
    }

    /// An image's layers and its config (the whole config JSON).
    pub fn layers_and_config(&self, image: &str) -> Result<(Vec<LayerRecord>, Value), StoreError> {
        let rec = self.resolve(image)?;
        let config =
            serde_json::from_slice(&self.read_blob(&rec.config.digest)?).map_err(|source| {
                StoreError::Record {
                    path: self.blob_path(&rec.config.digest),
                    source,
                }
            })?;
        Ok((rec.layers, config))
    }

    /// Records an image of `layers` (bottom first, all in the store) and
    /// `config` (its `rootfs.diff_ids` are set from the layers). An
    /// intermediate image is hidden from [`Store::list`] until it gets a
    /// name or [`Store::keep`] is called.
    pub fn compose_image(
        &self,
        layers: &[LayerRecord],
        config: &Value,
        names: &[Reference],
        intermediate: bool,
    ) -> Result<ImageId, ImportError> {
        let mut config = config.clone();
        config["rootfs"] = serde_json::json!({
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        });
        let _c = self.content_lock()?;
        let config_desc = self.put_blob_bytes(
            &serde_json::to_vec(&config).expect("json"),
            media::OCI_CONFIG,
        )?;
        let existed = self.record_path(&config_desc.digest).exists();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: config_desc,
            layers: layers.iter().map(|l| oci_layer(&l.blob)).collect(),
            annotations: None,
        };
        let desc =
            self.put_blob_bytes(&serde_json::to_vec(&m).expect("json"), media::OCI_MANIFEST)?;
        let id = self.commit_image(&desc, None, names, None)?;
        if intermediate && !existed && names.is_empty() {
            self.set_intermediate(&id, true)?;
        }
        Ok(id)
    }

    /// `hako commit`: a new image of `parent`'s layers plus the changes
    /// of `container_id` as one more layer, with `parent`'s config updated
    /// by the container's settings and `changes`, a history entry, and
    /// `name` (if any). Returns its id.
    pub fn commit_container(
        &self,
        container_id: &str,
        parent: &str,
        name: Option<&str>,
        o: &crate::diff::CommitOptions,
    ) -> Result<ImageId, ImportError> {
        let names: Vec<Reference> = name
            .map(|n| n.parse().map_err(StoreError::from))
            .transpose()?
            .into_iter()
            .collect();
        let (mut layers, mut config) = self.layers_and_config(parent)?;
        let mut run = config["config"].as_object().cloned().unwrap_or_default();
        for (k, v) in &o.config {
            run.insert(k.clone(), v.clone());
        }
        for c in &o.changes {
            crate::changes::apply(&mut run, c).map_err(ImportError::Change)?;
        }
        layers.push(self.layer_from_changes(container_id)?);
        let now = crate::store::rfc3339(crate::store::now_secs());
        config["created"] = now.clone().into();
        config["config"] = run.into();
        let mut entry = serde_json::json!({"created": now, "created_by": "hako commit"});
        if let Some(a) = &o.author {
            config["author"] = a.clone().into();
            entry["author"] = a.clone().into();
        }
        if let Some(c) = &o.comment {
            entry["comment"] = c.clone().into();
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = serde_json::json!([entry]),
        }
        self.compose_image(&layers, &config, &names, false)
    }

    /// Shows an intermediate image in `images` (a build's result).
    pub fn keep(&self, image: &ImageId) -> Result<(), StoreError> {
        self.set_intermediate(image, false)
    }

    fn set_intermediate(&self, image: &ImageId, on: bool) -> Result<(), StoreError> {
        let _g = self.meta_lock()?;
        let p = self.record_path(image);
        let mut rec: ImageRecord =
            serde_json::from_slice(&fs::read(&p).map_err(io_err("read image record", &p))?)
                .map_err(|source| StoreError::Record {
                    path: p.clone(),
                    source,
                })?;
        if rec.intermediate != on {
            rec.intermediate = on;
            self.write_record(&rec)?;
        }
        Ok(())
    }

    fn cache_dir(&self) -> PathBuf {
        self.root().join("build-cache")
    }

    /// The image a build step with this key made, if it is still here.
    pub fn cache_get(&self, key: &Digest) -> Option<ImageId> {
        let s = fs::read_to_string(self.cache_dir().join(key.hex())).ok()?;
        let id: Digest = s.trim().parse().ok()?;
        self.record_path(&id).exists().then_some(id)
    }

    /// Remembers the image a build step made.
    pub fn cache_put(&self, key: &Digest, image: &ImageId) -> Result<(), StoreError> {
        let dir = self.cache_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let (tmp, mut f) = self.create_temp_file("cache")?;
        f.write_all(image.to_string().as_bytes())
            .map_err(io_err("write", tmp.path()))?;
        drop(f);
        let p = dir.join(key.hex());
        fs::rename(tmp.path(), &p).map_err(io_err("write", &p))?;
        tmp.keep();
        Ok(())
    }

    /// The build steps' images (the cache), which `list` hides.
    pub fn intermediates(&self) -> Result<Vec<ImageId>, StoreError> {
        Ok(self
            .read_records()?
            .into_iter()
            .filter(|r| r.intermediate)
            .map(|r| r.id)
            .collect())
    }

    /// Drops cache entries whose image is gone (after a prune).
    pub fn cache_gc(&self) {
        let Ok(rd) = fs::read_dir(self.cache_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let gone = fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse::<Digest>().ok())
                .is_none_or(|id| !self.record_path(&id).exists());
            if gone {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// A layer's descriptor for an OCI manifest: Docker's media types (of
/// layers pulled from a Docker schema 2 image) become their OCI equals,
/// the bytes being the same; an OCI manifest with Docker layer types is
/// refused by strict readers (umoci).
fn oci_layer(d: &Descriptor) -> Descriptor {
    let media_type = match d.media_type.as_str() {
        media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => media::OCI_LAYER,
        m => m,
    };
    Descriptor {
        media_type: media_type.to_string(),
        ..d.clone()
    }
}
