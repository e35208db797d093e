//! Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`.
//!
//! Parsing follows Docker's normalisation: a first component without a `.`
//! or `:` (and not `localhost`) is part of the repository, not a registry, so
//! `alpine` is `docker.io/library/alpine:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry short names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// Errors from parsing a reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference {reference:?}: {reason}")]
    Invalid {
        reference: String,
        reason: &'static str,
    },
}

/// A normalised image reference. There is always a tag or a digest (a
/// reference with neither gets `latest`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }

    /// The same repository pinned to a digest.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Whether plain HTTP is allowed without `--insecure`: only registries
    /// on the loopback interface.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }

    fn invalid(reference: &str, reason: &'static str) -> ReferenceError {
        ReferenceError::Invalid {
            reference: reference.to_owned(),
            reason,
        }
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() || s.len() > 255 + 128 + 72 {
            return Err(Self::invalid(s, "empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| Self::invalid(s, "digest is not sha256:<64 hex>"))?,
                ),
            ),
            None => (s, None),
        };
        // A tag is a ':' after the last '/'; a ':' before it is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(Self::invalid(s, "bad tag"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_owned(),
            _ => registry,
        };
        if !valid_registry(&registry) {
            return Err(Self::invalid(s, "bad registry host"));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_component) {
            return Err(Self::invalid(
                s,
                "repository components must be lowercase letters and digits separated by . _ __ or -",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn short_names_resolve_to_docker_hub() {
        assert_eq!(p("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(p("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(p("docker.io/alpine"), "docker.io/library/alpine:latest");
    }

    #[test]
    fn registries_and_ports() {
        let r: Reference = "127.0.0.1:5000/busybox:latest".parse().unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert!(r.is_loopback());
        let r: Reference = "localhost/a/b".parse().unwrap();
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "a/b");
        assert!(r.is_loopback());
        let r: Reference = "localhost:5000/a".parse().unwrap();
        assert!(r.is_loopback());
        let r: Reference = "quay.io/x/y:1".parse().unwrap();
        assert!(!r.is_loopback());
        let r: Reference = "127.0.0.1.evil.com/x".parse().unwrap();
        assert!(!r.is_loopback());
    }

    #[test]
    fn digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r: Reference = format!("busybox@{d}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        let r: Reference = format!("busybox:1@{d}").parse().unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert!("busybox@sha256:abc".parse::<Reference>().is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "Alpine", "a:", "a:-x", "a//b", "/a", "a/", "a/../b", "a b", "x/..:1",
        ] {
            assert!(
                bad.parse::<Reference>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
