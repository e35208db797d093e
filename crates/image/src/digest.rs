//! Content digests (`sha256:<64 hex>`) and verifying writers.
//!
//! Every blob that enters the store goes through [`VerifyingWriter`], which
//! hashes and counts the bytes as they are written; [`VerifyingWriter::finish`]
//! refuses the blob unless both the digest and the size match what the
//! manifest (or index, or archive) promised.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Errors about digests and verified content.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Invalid(String),
    #[error("blob {expected}: content has digest {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest}: larger than the {expected} bytes announced")]
    TooLarge { digest: Digest, expected: u64 },
}

/// A sha256 content digest. Only sha256 is accepted: it is what every
/// registry and archive format in use produces, and refusing the rest keeps
/// blob paths to one fixed shape.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: Sha256) -> Self {
        Self {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Parses bare 64 hex digits (as used in file names).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError::Invalid(hex.to_owned()))
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::Invalid(s.to_owned()))?;
        Self::from_hex(hex).map_err(|_| DigestError::Invalid(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read through it (used to check a layer's diff ID while
/// it is being unpacked).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the rest of the stream, then returns its digest and size.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.read))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A writer that checks content against an expected digest and size. Writing
/// more than the expected size fails at once, so a hostile registry cannot
/// fill the disk behind a small descriptor.
pub struct VerifyingWriter<W> {
    inner: HashingWriter<W>,
    expected: Digest,
    size: Option<u64>,
}

impl<W: Write> VerifyingWriter<W> {
    pub fn new(inner: W, expected: Digest, size: Option<u64>) -> Self {
        Self {
            inner: HashingWriter::new(inner),
            expected,
            size,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.written
    }

    /// Checks size and digest; returns the inner writer only if both match.
    pub fn finish(self) -> Result<W, DigestError> {
        let (actual, written, inner) = self.inner.finish();
        if let Some(size) = self.size {
            if size != written {
                return Err(DigestError::SizeMismatch {
                    digest: self.expected,
                    expected: size,
                    actual: written,
                });
            }
        }
        if actual != self.expected {
            return Err(DigestError::Mismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(inner)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size {
            if self.inner.written + buf.len() as u64 > size {
                return Err(io::Error::other(DigestError::TooLarge {
                    digest: self.expected.clone(),
                    expected: size,
                }));
            }
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks a complete in-memory blob.
pub fn verify_bytes(bytes: &[u8], expected: &Digest, size: Option<u64>) -> Result<(), DigestError> {
    let mut w = VerifyingWriter::new(io::sink(), expected.clone(), size);
    // Writing to a sink fails only with the writer's own DigestError.
    w.write_all(bytes).map_err(|e| {
        e.downcast::<DigestError>()
            .unwrap_or_else(|_| DigestError::Invalid(expected.to_string()))
    })?;
    w.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::of(b""), d);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "sha256:",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn verifies_content_and_size() {
        let d = Digest::of(b"hello");
        verify_bytes(b"hello", &d, Some(5)).unwrap();
        verify_bytes(b"hello", &d, None).unwrap();
        let e = verify_bytes(b"hellO", &d, Some(5)).unwrap_err();
        assert!(matches!(e, DigestError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains(&d.to_string()));
        let e = verify_bytes(b"hell", &d, Some(5)).unwrap_err();
        assert!(matches!(e, DigestError::SizeMismatch { .. }), "{e}");
        let e = verify_bytes(b"hello!", &d, Some(5)).unwrap_err();
        assert!(matches!(e, DigestError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn hashing_reader_reads_to_end() {
        let r = HashingReader::new(&b"hello"[..]);
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of(b"hello"));
    }
}
