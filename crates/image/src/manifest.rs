//! OCI and Docker schema 2 manifests, indexes and configs, and platform
//! selection from multi-arch indexes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media types this crate reads and writes.
pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// Every manifest type a pull accepts, indexes first.
    pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
}

/// Errors from parsing manifests and configs.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} {digest}: invalid JSON: {source}")]
    Json {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error("index {digest}: no manifest for platform {platform}")]
    NoPlatform { digest: Digest, platform: String },
    #[error("config {digest}: has {diff_ids} diff IDs but the manifest has {layers} layers")]
    LayerCount {
        digest: Digest,
        diff_ids: usize,
        layers: usize,
    },
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OS/architecture pair, as in image indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in Go's naming.
    pub fn current() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Self {
            architecture: arch.to_owned(),
            os: "linux".to_owned(),
            variant: variant.map(str::to_owned),
        }
    }
}

impl Platform {
    /// A `--platform` value (`os[/arch[/variant]]`, Docker's form) that
    /// names this host's platform, or why it does not: images of another
    /// architecture would need an emulator, which hako does not run.
    pub fn check_runnable(wanted: &str) -> Result<(), String> {
        let here = Self::current();
        let mut parts = wanted.split('/');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next().map(|a| match a {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        });
        let ok = os == here.os && arch.is_none_or(|a| a == here.architecture);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "--platform {wanted}: this host runs {here} images only (hako does not emulate \
                 other platforms)"
            ))
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2: same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest document.
#[derive(Clone, Debug)]
pub enum Parsed {
    Index(Index),
    Image(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest or index. The type comes from the document's own
/// `mediaType`, else from the HTTP content type, else from its shape.
pub fn parse(
    bytes: &[u8],
    digest: &Digest,
    content_type: Option<&str>,
) -> Result<Parsed, ManifestError> {
    let json = |source| ManifestError::Json {
        what: "manifest",
        digest: digest.clone(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json)?;
    let mt = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(str::to_owned))
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                media::OCI_INDEX.to_owned()
            } else if probe.config.is_some() {
                media::OCI_MANIFEST.to_owned()
            } else {
                String::new()
            }
        });
    let unsupported = || ManifestError::UnsupportedMediaType {
        digest: digest.clone(),
        media_type: if probe.schema_version == 1 {
            format!("{mt} (Docker schema 1)")
        } else {
            mt.clone()
        },
    };
    if probe.schema_version != 2 {
        return Err(unsupported());
    }
    match mt.as_str() {
        media::OCI_INDEX | media::DOCKER_LIST => {
            Ok(Parsed::Index(serde_json::from_slice(bytes).map_err(json)?))
        }
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => {
            Ok(Parsed::Image(serde_json::from_slice(bytes).map_err(json)?))
        }
        _ => Err(unsupported()),
    }
}

impl Index {
    /// Picks the manifest for `want`: same OS and architecture; a matching
    /// variant is preferred, then one without a variant, then any.
    /// Attestation entries (`unknown/unknown`) never match.
    pub fn select(&self, want: &Platform) -> Option<&Descriptor> {
        let candidates: Vec<&Descriptor> = self
            .manifests
            .iter()
            .filter(|d| {
                matches!(
                    d.media_type.as_str(),
                    media::OCI_MANIFEST | media::DOCKER_MANIFEST
                )
            })
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
            })
            .collect();
        let variant = |d: &&Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
        candidates
            .iter()
            .find(|d| variant(d) == want.variant)
            .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
            .or_else(|| candidates.first())
            .copied()
    }
}

/// The parts of an image config this crate reads. The config blob itself is
/// stored verbatim.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "config",
            digest: digest.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{m}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}},
            {{"mediaType":"{m}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
            {{"mediaType":"{m}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{m}","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}},
            {{"mediaType":"{m}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}
            ]}}"#,
            media::DOCKER_LIST,
            d('1'),
            d('2'),
            d('3'),
            d('4'),
            d('5'),
            m = media::DOCKER_MANIFEST
        )
    }

    #[test]
    fn platforms_other_than_the_hosts_are_refused() {
        let here = Platform::current();
        assert!(Platform::check_runnable("linux").is_ok());
        assert!(Platform::check_runnable(&here.to_string()).is_ok());
        assert!(Platform::check_runnable(&format!("linux/{}", here.architecture)).is_ok());
        let other = if here.architecture == "amd64" {
            "linux/arm64"
        } else {
            "linux/amd64"
        };
        let e = Platform::check_runnable(other).unwrap_err();
        assert!(
            e.starts_with(&format!("--platform {other}: this host runs linux/")),
            "{e}"
        );
        assert!(Platform::check_runnable("windows/amd64").is_err());
    }

    #[test]
    fn selects_platforms() {
        let bytes = index_json();
        let Parsed::Index(idx) = parse(bytes.as_bytes(), &Digest::of(b""), None).unwrap() else {
            panic!("not an index")
        };
        let pick = |arch: &str, variant: Option<&str>| {
            idx.select(&Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            })
            .map(|d| d.digest.to_string())
        };
        assert_eq!(pick("amd64", None), Some(d('3')));
        assert_eq!(pick("arm", Some("v7")), Some(d('2')));
        assert_eq!(pick("arm", None), Some(d('1')));
        assert_eq!(pick("arm64", Some("v8")), Some(d('5')));
        assert_eq!(pick("arm64", None), Some(d('5')));
        assert_eq!(pick("s390x", None), None);
        assert_eq!(pick("unknown", None), None);
    }

    #[test]
    fn parses_manifests_by_media_type_or_shape() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[]}}"#,
            media::OCI_CONFIG,
            d('a')
        );
        assert!(matches!(
            parse(m.as_bytes(), &Digest::of(b""), None).unwrap(),
            Parsed::Image(_)
        ));
        let v1 = r#"{"schemaVersion":1,"name":"x"}"#;
        let e = parse(v1.as_bytes(), &Digest::of(b""), None).unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = parse(b"not json", &Digest::of(b"x"), None).unwrap_err();
        assert!(e.to_string().contains(&Digest::of(b"x").to_string()));
    }
}
