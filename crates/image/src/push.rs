//! Pushing images to an OCI distribution registry: the blobs the registry
//! does not have yet (streamed from the store, in chunks), then the
//! manifest under the tag. oci-client on a private current-thread tokio
//! runtime, as for pulls; the public API is blocking.

use std::io::Read;
use std::path::PathBuf;

use oci_client::RegistryOperation;

use crate::auth::{AuthError, Credentials};
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::pull::{client_for, error_chain, Progress, Reporter};
use crate::reference::{Reference, ReferenceError};
use crate::store::{Store, StoreError};

/// Options for [`Store::push`].
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Allow plain HTTP to a registry that is not on loopback.
    pub insecure: bool,
    /// Credentials; when `None`, the credentials file's (from `login`).
    pub auth: Option<Credentials>,
    pub auth_file: Option<PathBuf>,
    pub progress: Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{reference}: {what}: {message}")]
    Registry {
        reference: String,
        what: String,
        message: String,
    },
    #[error("start async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Bytes read from the store per chunk sent.
const CHUNK: usize = 1 << 20;

impl Store {
    /// Pushes `image` to `destination` (a reference with its registry, e.g.
    /// `127.0.0.1:5000/app:1`; default: the image's own name). Returns the
    /// manifest digest the registry now serves under the tag.
    pub fn push(
        &self,
        image: &str,
        destination: Option<&str>,
        opts: &PushOptions,
    ) -> Result<Digest, PushError> {
        let rec = self.resolve(image)?;
        let dest: Reference = destination.unwrap_or(image).parse()?;
        let (client, auth) = client_for(&dest, opts.insecure, &opts.auth, &opts.auth_file)?;
        let oref = oci_client::Reference::with_tag(
            dest.registry().into(),
            dest.repository().into(),
            dest.tag().unwrap_or("latest").into(),
        );
        let err = |what: &str, e: &dyn std::error::Error| PushError::Registry {
            reference: dest.to_string(),
            what: what.into(),
            message: error_chain(e),
        };
        let progress = Reporter::new(opts.progress);
        let manifest = self.read_blob(&rec.manifest.digest)?;
        let blobs: Vec<(Descriptor, bool)> = rec
            .layers
            .iter()
            .map(|l| (l.blob.clone(), true))
            .chain(std::iter::once((rec.config.clone(), false)))
            .collect();
        let _content = self.content_lock()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PushError::Runtime)?;
        rt.block_on(async {
            client
                .auth(&oref, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| err("log in to push", &e))?;
            for (d, layer) in &blobs {
                let bar = progress.start(&d.digest, d.size, *layer, "uploading");
                let digest = d.digest.to_string();
                if client
                    .blob_exists(&oref, &digest)
                    .await
                    .map_err(|e| err("check blob", &e))?
                {
                    bar.finish("already exists");
                    continue;
                }
                bar.begin(d.size);
                let path = self.blob_path(&d.digest);
                let mut f = std::fs::File::open(&path)
                    .map_err(|e| err(&format!("read {}", path.display()), &e))?;
                // The blob, in chunks from the file, counted on the bar.
                let (tx, rx) =
                    tokio::sync::mpsc::channel::<oci_client::errors::Result<bytes::Bytes>>(2);
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|c| (c, rx))
                });
                let push = client.push_blob_stream(&oref, stream, &digest, Some(d.size));
                let feed = async {
                    loop {
                        let mut buf = vec![0u8; CHUNK];
                        let n = match f.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) => {
                                let _ = tx
                                    .send(Err(oci_client::errors::OciDistributionError::IoError(e)))
                                    .await;
                                break;
                            }
                        };
                        buf.truncate(n);
                        bar.inc(n as u64);
                        if tx.send(Ok(bytes::Bytes::from(buf))).await.is_err() {
                            break;
                        }
                    }
                    drop(tx);
                };
                let (pushed, ()) = tokio::join!(push, feed);
                if let Err(e) = pushed {
                    bar.finish("failed");
                    return Err(err(&format!("upload blob {}", d.digest), &e));
                }
                bar.finish("pushed");
            }
            let ct = http::HeaderValue::from_str(&rec.manifest.media_type)
                .map_err(|e| err("manifest media type", &e))?;
            client
                .push_manifest_raw(&oref, manifest, ct)
                .await
                .map_err(|e| err("push manifest", &e))?;
            Ok::<(), PushError>(())
        })?;
        progress.line(&format!("{dest}: pushed {}", rec.manifest.digest));
        Ok(rec.manifest.digest.clone())
    }
}
