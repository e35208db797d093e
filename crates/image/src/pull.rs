//! Pulling images from an OCI distribution registry.
//!
//! The network side is oci-client on a private current-thread tokio runtime;
//! the public API is blocking. Every blob goes to a temp file in the store
//! and is renamed under its digest only after its size and sha256 match the
//! descriptor, so an interrupted or corrupt pull leaves no blob behind
//! under a digest it does not have, and no image record.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use crate::auth::{self, AuthError, Credentials};
use crate::digest::{Digest, DigestError, VerifyingWriter};
use crate::manifest::{self, media, Descriptor, ManifestError, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::store::{ImageId, Store, StoreError};

/// Attempts per blob or manifest request on transport errors.
const ATTEMPTS: u32 = 3;
/// Layers downloaded at once.
const PARALLEL: usize = 3;

/// How to show progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// A bar per layer on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr.
    Plain,
    /// Nothing.
    Quiet,
}

/// Options for [`Store::pull`].
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Allow plain HTTP to a registry that is not on loopback.
    pub insecure: bool,
    /// Credentials; when `None`, the credentials file is consulted, and
    /// without an entry there the pull is anonymous (token auth included).
    pub auth: Option<Credentials>,
    /// Credentials file; `None` means [`auth::default_auth_file`].
    pub auth_file: Option<PathBuf>,
    pub progress: Progress,
    /// Platform to pick from a multi-arch index; `None` is this machine's.
    pub platform: Option<Platform>,
}

/// Errors from a pull. Each names the reference and, where there is one,
/// the digest.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{reference}: fetch manifest {what}: {message}")]
    Manifest {
        reference: String,
        what: String,
        message: String,
    },
    #[error("{reference}: {source}")]
    ManifestFormat {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("{reference}: manifest has digest {actual}, expected {expected}")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: fetch blob {digest}: {message}")]
    Fetch {
        reference: String,
        digest: Digest,
        message: String,
    },
    #[error("{reference}: verify: {source}")]
    Verify {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error("{reference}: write blob {digest}: {source}")]
    Write {
        reference: String,
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("start async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl PullError {
    /// Worth another attempt: transport trouble, not bad content.
    fn retryable(&self) -> bool {
        matches!(self, Self::Fetch { .. } | Self::Manifest { .. })
    }
}

impl Store {
    /// Pulls `reference` (`alpine`, `127.0.0.1:5000/busybox:latest`,
    /// `repo@sha256:…`) into the store and returns its image ID. Blobs
    /// already in the store are not downloaded again.
    pub fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageId, PullError> {
        let r: Reference = reference.parse()?;
        let (client, auth) = client_for(&r, opts.insecure, &opts.auth, &opts.auth_file)?;
        let _content = self.content_lock()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PullError::Runtime)?;
        let puller = Puller {
            store: self,
            client,
            auth,
            reference: r.clone(),
            progress: Reporter::new(opts.progress),
            platform: opts.platform.clone().unwrap_or_else(Platform::current),
        };
        let (manifest_desc, index, top_digest) = rt.block_on(puller.fetch_all())?;
        puller.progress.line(&format!("{}: unpacking", r));
        let id = self.commit_image(
            &manifest_desc,
            index.as_ref(),
            std::slice::from_ref(&r),
            Some(&top_digest),
        )?;
        puller.progress.line(&format!(
            "{r}: stored as {} (digest {top_digest})",
            id.short()
        ));
        Ok(id)
    }
}

struct Puller<'a> {
    store: &'a Store,
    client: oci_client::Client,
    auth: RegistryAuth,
    reference: Reference,
    progress: Reporter,
    platform: Platform,
}

impl Puller<'_> {
    fn oci_ref(&self, digest: Option<&Digest>) -> oci_client::Reference {
        let r = &self.reference;
        match (digest.or(r.digest()), r.tag()) {
            (Some(d), _) => oci_client::Reference::with_digest(
                r.registry().into(),
                r.repository().into(),
                d.to_string(),
            ),
            (None, t) => oci_client::Reference::with_tag(
                r.registry().into(),
                r.repository().into(),
                t.unwrap_or("latest").into(),
            ),
        }
    }

    /// Fetches a manifest or index, verifying it against `expected` (and
    /// against the reference's digest, if it has one).
    async fn manifest(
        &self,
        expected: Option<&Descriptor>,
    ) -> Result<(Vec<u8>, Digest), PullError> {
        let oref = self.oci_ref(expected.map(|d| &d.digest));
        let what = match expected {
            Some(d) => d.digest.to_string(),
            None => self.reference.to_string(),
        };
        let mut attempt = 0;
        let bytes = loop {
            attempt += 1;
            match self
                .client
                .pull_manifest_raw(&oref, &self.auth, media::ACCEPTED)
                .await
            {
                Ok((b, _)) => break b.to_vec(),
                Err(e) => {
                    let err = PullError::Manifest {
                        reference: self.reference.to_string(),
                        what: what.clone(),
                        message: error_chain(&e),
                    };
                    if attempt >= ATTEMPTS || !transient(&e) {
                        return Err(err);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        };
        let actual = Digest::of(&bytes);
        let want = expected.map(|d| &d.digest).or(self.reference.digest());
        if let Some(want) = want {
            if *want != actual {
                return Err(PullError::ManifestDigest {
                    reference: self.reference.to_string(),
                    expected: want.clone(),
                    actual,
                });
            }
        }
        if let Some(d) = expected {
            if d.size != bytes.len() as u64 {
                return Err(PullError::Verify {
                    reference: self.reference.to_string(),
                    source: DigestError::SizeMismatch {
                        digest: d.digest.clone(),
                        expected: d.size,
                        actual: bytes.len() as u64,
                    },
                });
            }
        }
        Ok((bytes, actual))
    }

    fn parse(
        &self,
        bytes: &[u8],
        d: &Digest,
        mt: Option<&str>,
    ) -> Result<manifest::Parsed, PullError> {
        manifest::parse(bytes, d, mt).map_err(|source| PullError::ManifestFormat {
            reference: self.reference.to_string(),
            source,
        })
    }

    /// Manifest (through the index if there is one), config and layers.
    /// Returns the manifest descriptor, the index digest, and the digest the
    /// reference resolved to.
    async fn fetch_all(&self) -> Result<(Descriptor, Option<Digest>, Digest), PullError> {
        let (top, top_digest) = self.manifest(None).await?;
        let (manifest_desc, m, index) = match self.parse(&top, &top_digest, None)? {
            manifest::Parsed::Index(idx) => {
                let mt = idx
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media::OCI_INDEX.into());
                self.store.put_blob_bytes(&top, &mt)?;
                let desc = idx
                    .select(&self.platform)
                    .ok_or_else(|| PullError::ManifestFormat {
                        reference: self.reference.to_string(),
                        source: ManifestError::NoPlatform {
                            digest: top_digest.clone(),
                            platform: self.platform.to_string(),
                        },
                    })?
                    .clone();
                let (bytes, d) = self.manifest(Some(&desc)).await?;
                let manifest::Parsed::Image(m) = self.parse(&bytes, &d, Some(&desc.media_type))?
                else {
                    return Err(PullError::ManifestFormat {
                        reference: self.reference.to_string(),
                        source: ManifestError::UnsupportedMediaType {
                            digest: d,
                            media_type: "index inside an index".into(),
                        },
                    });
                };
                self.store.put_blob_bytes(&bytes, &desc.media_type)?;
                (desc, m, Some(top_digest.clone()))
            }
            manifest::Parsed::Image(m) => {
                let mt = m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media::OCI_MANIFEST.into());
                let desc = self.store.put_blob_bytes(&top, &mt)?;
                (desc, m, None)
            }
        };
        self.blob(&m.config, false).await?;
        let results: Vec<Result<(), PullError>> = futures_util::stream::iter(m.layers.iter())
            .map(|l| self.blob(l, true))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok((manifest_desc, index, top_digest))
    }

    /// Downloads one blob unless the store has it, with retries.
    async fn blob(&self, d: &Descriptor, layer: bool) -> Result<(), PullError> {
        let bar = self.progress.start(&d.digest, d.size, layer, "downloading");
        if self.store.has_blob(&d.digest) {
            bar.finish("already exists");
            return Ok(());
        }
        bar.begin(d.size);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_blob(d, &bar).await {
                Ok(()) => {
                    bar.finish("verified");
                    return Ok(());
                }
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    bar.retry(&format!("retrying ({e})"));
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    bar.finish("failed");
                    return Err(e);
                }
            }
        }
    }

    async fn try_blob(&self, d: &Descriptor, bar: &LayerBar) -> Result<(), PullError> {
        let fetch_err = |message: String| PullError::Fetch {
            reference: self.reference.to_string(),
            digest: d.digest.clone(),
            message,
        };
        let write_err = |source| PullError::Write {
            reference: self.reference.to_string(),
            digest: d.digest.clone(),
            source,
        };
        let oref = self.oci_ref(None);
        let digest = d.digest.to_string();
        let mut stream = self
            .client
            .pull_blob_stream(&oref, digest.as_str())
            .await
            .map_err(|e| fetch_err(error_chain(&e)))?;
        let (tmp, file) = self
            .store
            .create_temp_file(&format!("pull-{}", d.digest.short()))?;
        let mut w = VerifyingWriter::new(
            std::io::BufWriter::new(file),
            d.digest.clone(),
            Some(d.size),
        );
        let mut stream_err = None;
        while let Some(chunk) = stream.stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if let Err(e) = w.write_all(&bytes) {
                        return Err(match e.downcast::<DigestError>() {
                            Ok(de) => PullError::Verify {
                                reference: self.reference.to_string(),
                                source: de,
                            },
                            Err(e) => write_err(e),
                        });
                    }
                    bar.inc(bytes.len() as u64);
                }
                Err(e) => {
                    stream_err = Some(e);
                    break;
                }
            }
        }
        bar.set_position(w.written());
        // Our own check first: a complete body with the wrong digest is a
        // content error (not retried), whatever oci-client also noticed.
        let complete = w.written() == d.size;
        match (w.finish(), stream_err) {
            (Err(de), _) if complete || !matches!(de, DigestError::SizeMismatch { .. }) => {
                Err(PullError::Verify {
                    reference: self.reference.to_string(),
                    source: de,
                })
            }
            (_, Some(e)) => Err(fetch_err(error_chain(&e))),
            (Err(de), None) => Err(PullError::Verify {
                reference: self.reference.to_string(),
                source: de,
            }),
            (Ok(bw), None) => {
                let file = bw.into_inner().map_err(|e| write_err(e.into_error()))?;
                self.store.commit_blob_file(tmp, file, &d.digest)?;
                Ok(())
            }
        }
    }
}

/// A client for `r`'s registry (plain HTTP only where allowed) and the
/// credentials to use there: the given ones, else the credentials file's
/// entry, else anonymous (token auth included). Pull and push share it.
pub(crate) fn client_for(
    r: &Reference,
    insecure: bool,
    given: &Option<Credentials>,
    auth_file: &Option<PathBuf>,
) -> Result<(oci_client::Client, RegistryAuth), AuthError> {
    let creds = match given {
        Some(c) => Some(c.clone()),
        None => {
            let file = auth_file.clone().unwrap_or_else(auth::default_auth_file);
            auth::lookup(&file, r.registry())?
        }
    };
    let auth = match creds {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    let protocol = if plain_http_allowed(r, insecure) {
        ClientProtocol::HttpsExcept(vec![r.registry().to_owned()])
    } else {
        ClientProtocol::Https
    };
    let config = || ClientConfig {
        protocol: protocol.clone(),
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(300)),
        ..ClientConfig::default()
    };
    // oci-client (0.18) makes a default reqwest client besides the one it
    // builds, and that one panics on a host without CA certificates, even
    // for a plain-HTTP registry: turn the panic into one line that says
    // what is missing (the panic's own report silenced meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(|| oci_client::Client::try_from(config()));
    std::panic::set_hook(hook);
    let client = match made {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            return Err(AuthError::Client(msg));
        }
        Err(_) => {
            return Err(AuthError::Client(
                "no CA certificates on this host (install the ca-certificates package)".into(),
            ))
        }
    };
    Ok((client, auth))
}

/// Plain HTTP only for loopback registries, or when asked for.
fn plain_http_allowed(r: &Reference, insecure: bool) -> bool {
    r.is_loopback() || insecure
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(attempt.saturating_sub(1)))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Network trouble and server errors are retried; "not found",
/// "unauthorized" and the like are not.
fn transient(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(_) | E::IoError(_) => true,
        E::ServerError { code, .. } => *code >= 500,
        _ => false,
    }
}

/// Progress output: a bar per layer on a terminal, else plain lines.
pub(crate) enum Reporter {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

pub(crate) enum LayerBar {
    Bar(ProgressBar),
    Plain(String, &'static str),
    Quiet,
}

impl Reporter {
    pub(crate) fn new(p: Progress) -> Self {
        match p {
            Progress::Quiet => Self::Quiet,
            Progress::Plain => Self::Plain,
            Progress::Auto if std::io::stderr().is_terminal() => {
                Self::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            }
            Progress::Auto => Self::Plain,
        }
    }

    pub(crate) fn line(&self, s: &str) {
        match self {
            Self::Bars(m) => {
                let _ = m.println(s);
            }
            Self::Plain => eprintln!("{s}"),
            Self::Quiet => {}
        }
    }

    pub(crate) fn start(&self, d: &Digest, size: u64, layer: bool, verb: &'static str) -> LayerBar {
        let what = if layer { "layer" } else { "config" };
        match self {
            Self::Bars(m) => {
                let pb = m.add(ProgressBar::new(size));
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {msg:16} [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                pb.set_prefix(format!("{} {what}", d.short()));
                pb.set_message(verb);
                LayerBar::Bar(pb)
            }
            Self::Plain => {
                let name = format!("{} {what}", d.short());
                LayerBar::Plain(name, verb)
            }
            Self::Quiet => LayerBar::Quiet,
        }
    }
}

impl LayerBar {
    pub(crate) fn inc(&self, n: u64) {
        if let Self::Bar(b) = self {
            b.inc(n);
        }
    }
    fn set_position(&self, n: u64) {
        if let Self::Bar(b) = self {
            b.set_position(n);
        }
    }
    pub(crate) fn begin(&self, size: u64) {
        if let Self::Plain(name, verb) = self {
            eprintln!("{name}: {verb} {size} bytes");
        }
    }
    fn retry(&self, msg: &str) {
        match self {
            Self::Bar(b) => {
                b.set_position(0);
                b.set_message("retrying");
                b.println(msg);
            }
            Self::Plain(name, _) => eprintln!("{name}: {msg}"),
            Self::Quiet => {}
        }
    }
    pub(crate) fn finish(&self, msg: &'static str) {
        match self {
            Self::Bar(b) => b.finish_with_message(msg),
            Self::Plain(name, _) => eprintln!("{name}: {msg}"),
            Self::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_or_insecure() {
        let p = |s: &str, insecure| plain_http_allowed(&s.parse().unwrap(), insecure);
        assert!(p("127.0.0.1:5000/busybox", false));
        assert!(p("localhost:5000/busybox", false));
        assert!(!p("alpine", false));
        assert!(!p("registry.example.com:5000/x", false));
        assert!(p("registry.example.com:5000/x", true));
    }

    #[test]
    fn retry_backoff_grows() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_millis(1000));
    }
}
