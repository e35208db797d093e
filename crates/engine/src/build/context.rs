//! The build context: a directory, a local tar or a tar on stdin (or a
//! Containerfile alone on stdin, as `docker build - < Dockerfile`), its
//! ignore file, and where the Containerfile is.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use super::ignore::Ignore;
use crate::dirs::Dirs;
use crate::{Error, Result};

pub struct Context {
    /// The context's root directory.
    pub root: PathBuf,
    pub ignore: Ignore,
    /// The Containerfile's text and its name (for messages).
    pub file: String,
    pub file_name: String,
    /// A directory we unpacked the context into.
    scratch: Option<Scratch>,
}

/// A directory of ours, removed on drop.
pub(super) struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory under the data dir's tmp/.
    pub fn new(dirs: &Dirs, what: &str) -> Result<Scratch> {
        let d = dirs.data.join("tmp").join(format!(
            "build-{what}-{}-{}",
            super::owner_tag(),
            &crate::util::random_id()?[..12]
        ));
        crate::dirs::mkdir_p(&d)?;
        Ok(Scratch(d))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn err(msg: String) -> Error {
    Error::Usage(msg)
}

/// Whether `head` starts a tar (plain, gzip or zstd).
fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
}

fn unpack_into(r: impl Read, dir: &Path) -> Result<()> {
    let opts = hako_image::unpack::UnpackOptions {
        whiteouts: hako_image::unpack::Whiteouts::Keep,
        same_owner: false,
        devices: false,
        ..Default::default()
    };
    hako_image::unpack::unpack_with(r, "", dir, &opts)
        .map(drop)
        .map_err(|e| err(format!("unpack the build context: {e}")))
}

/// Opens the context `spec` (a directory, `-`, or a tar file) with the
/// Containerfile `file` (-f; default Containerfile, then Dockerfile).
pub fn open(dirs: &Dirs, spec: &str, file: Option<&Path>) -> Result<Context> {
    let mut scratch = None;
    let mut stdin_file = None;
    let root = if spec == "-" || Path::new(spec).is_file() {
        let s = Scratch::new(dirs, "context")?;
        let tmp = s.0.clone();
        scratch = Some(s);
        let mut r: Box<dyn BufRead> = if spec == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(spec)
                .map_err(|e| err(format!("the build context {spec}: {e}")))?;
            Box::new(std::io::BufReader::new(f))
        };
        let head = r
            .fill_buf()
            .map_err(|e| err(format!("read the build context: {e}")))?
            .to_vec();
        if is_archive(&head) {
            unpack_into(r, &tmp)?;
        } else if spec == "-" {
            // A Containerfile on stdin, and no context.
            let mut s = String::new();
            r.read_to_string(&mut s)
                .map_err(|e| err(format!("read the Containerfile from stdin: {e}")))?;
            stdin_file = Some(s);
        } else {
            return Err(err(format!(
                "the build context {spec} is neither a directory nor a tar archive"
            )));
        }
        tmp
    } else if Path::new(spec).is_dir() {
        PathBuf::from(spec)
    } else {
        return Err(err(format!(
            "the build context {spec}: no such directory or archive"
        )));
    };
    let mut ctx = Context {
        root: root
            .canonicalize()
            .map_err(|e| err(format!("the build context {}: {e}", root.display())))?,
        ignore: Ignore::default(),
        file: String::new(),
        file_name: String::new(),
        scratch,
    };
    for name in [".containerignore", ".dockerignore"] {
        if let Ok(s) = std::fs::read_to_string(ctx.root.join(name)) {
            ctx.ignore = Ignore::parse(&s);
            break;
        }
    }
    if let Some(s) = stdin_file {
        ctx.file = s;
        ctx.file_name = "Containerfile (stdin)".into();
        return Ok(ctx);
    }
    let path = match file {
        Some(f) if f == Path::new("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| err(format!("read the Containerfile from stdin: {e}")))?;
            ctx.file = s;
            ctx.file_name = "Containerfile (stdin)".into();
            return Ok(ctx);
        }
        // -f is relative to the working directory (Docker's), or to the
        // context for a context that was unpacked.
        Some(f) if ctx.scratch.is_some() && f.is_relative() => ctx.root.join(f),
        Some(f) => f.to_path_buf(),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| ctx.root.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                err(format!(
                    "no Containerfile or Dockerfile in the build context {spec} (use -f)"
                ))
            })?,
    };
    ctx.file = std::fs::read_to_string(&path)
        .map_err(|e| err(format!("the Containerfile {}: {e}", path.display())))?;
    ctx.file_name = path
        .file_name()
        .map_or("Containerfile".into(), |n| n.to_string_lossy().into_owned());
    Ok(ctx)
}
