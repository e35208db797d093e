//! `cp`: files between a container and the host, as Docker's `cp`.
//!
//! The container's side is always read or written by a forked child that
//! has entered the container's filesystem: the container's mount namespace
//! when it runs (so its volumes and tmpfs mounts are there too), else a
//! chroot into its root filesystem. Every path of the container, and every
//! symlink in it, then resolves inside the container, whatever it points
//! at (the class of Docker's CVE-2018-15664 and CVE-2019-14271). The two
//! sides exchange a tar stream through a pipe; `-` is that stream on
//! stdin or stdout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use hako_runtime::os;

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::status::init_alive;
use crate::{Error, Result};

/// One side of a `cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A host path, or `-` (a tar stream on stdin/stdout).
    Host(String),
    /// `CONTAINER:PATH`.
    Container { name: String, path: String },
}

impl Side {
    /// Docker's rule: `NAME:PATH` names a container unless the part before
    /// the colon has a `/` (write `./a:b` for a local file with a colon).
    pub fn parse(s: &str) -> Side {
        match s.split_once(':') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => Side::Container {
                name: name.into(),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
            },
            _ => Side::Host(s.into()),
        }
    }
}

/// Where a source's entries go: its own name (`/dir` → `dir/…`), or its
/// contents (`/dir/.` → `./…`).
fn source_name(src: &str) -> (PathBuf, String) {
    let contents = src.ends_with("/.") || src == ".";
    let path = PathBuf::from(src.strip_suffix("/.").unwrap_or(src));
    let name = if contents {
        ".".to_string()
    } else {
        path.file_name()
            .map_or(".".into(), |n| n.to_string_lossy().into_owned())
    };
    (
        if path.as_os_str().is_empty() {
            "/".into()
        } else {
            path
        },
        name,
    )
}

/// Writes `src` as a tar to `w` (symlinks as symlinks).
fn tar_out(src: &str, w: impl Write) -> io::Result<()> {
    let (path, name) = source_name(src);
    let md = std::fs::symlink_metadata(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    if md.is_dir() {
        b.append_dir_all(&name, &path)?;
    } else {
        b.append_path_with_name(&path, &name)?;
    }
    b.into_inner()?.flush()
}

/// Extracts a tar (as [`tar_out`] writes it) at `dest` with Docker's rules:
/// into an existing directory under the source's name (or, for `dir/.`,
/// its contents); else as `dest` itself, whose parent must exist, over a
/// file only with a file. Through hako's hardened unpacker (nothing is
/// written through a symlink or outside the directory it unpacks into),
/// into a scratch directory beside `dest` that is then renamed.
fn tar_in(r: impl Read, dest: &str, contents: bool) -> io::Result<()> {
    let dest = Path::new(dest);
    let opts = hako_image::unpack::UnpackOptions {
        whiteouts: hako_image::unpack::Whiteouts::Keep,
        same_owner: false,
        ..Default::default()
    };
    let unpack = |r, dir: &Path| {
        hako_image::unpack::unpack_with(r, "", dir, &opts)
            .map(drop)
            .map_err(io::Error::other)
    };
    if dest.is_dir() {
        return unpack(r, dest);
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no such directory", parent.display()),
        ));
    }
    if dest.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", dest.display()),
        ));
    }
    let tmp = parent.join(format!(".hako-cp-{}", std::process::id()));
    std::fs::create_dir(&tmp)?;
    let res = unpack(r, &tmp).and_then(|()| {
        let from = if contents {
            tmp.clone()
        } else {
            let mut top = std::fs::read_dir(&tmp)?;
            match (top.next(), top.next()) {
                (Some(e), None) => e?.path(),
                _ => return Err(io::Error::other("the copy has no single top entry")),
            }
        };
        let is_dir = std::fs::symlink_metadata(&from)?.is_dir();
        if is_dir && dest.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            return Err(io::Error::other(format!(
                "cannot copy a directory over the file {}",
                dest.display()
            )));
        }
        std::fs::rename(&from, dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    res
}

/// Enter the container's filesystem (in the forked child).
fn enter(r: &Record) -> io::Result<()> {
    if init_alive(r) {
        let ns = File::open(format!("/proc/{}/ns/mnt", r.pid))?;
        os::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNS)?;
    } else {
        os::chroot(&r.rootfs)?;
    }
    std::env::set_current_dir("/")
}

/// Runs `work` in a child inside the container's filesystem; `ours` is the
/// parent's end of the data pipe, `theirs` the child's. The child's error
/// comes back as the error.
fn in_container(
    r: &Record,
    theirs: OwnedFd,
    ours: OwnedFd,
    work: impl FnOnce(File) -> io::Result<()>,
    parent: impl FnOnce(File) -> io::Result<()>,
) -> Result<()> {
    // Each side holds only its own end, so each sees the other's close.
    let ours = std::cell::Cell::new(Some(ours));
    let theirs = std::cell::Cell::new(Some(theirs));
    crate::util::in_fork(
        || {
            drop(ours.take());
            enter(r).and_then(|()| work(File::from(theirs.take().expect("once"))))
        },
        || {
            drop(theirs.take());
            parent(File::from(ours.take().expect("once")))
        },
    )
    .map_err(|e| Error::Usage(format!("cp: {e}")))
}

/// `cp SRC DEST`: one side a container (`NAME:PATH`), the other a host
/// path or `-`.
pub fn cp(dirs: &Dirs, src: &str, dest: &str) -> Result<()> {
    let (src, dest) = (Side::parse(src), Side::parse(dest));
    let (name, cpath, host, to_host) = match (&src, &dest) {
        (Side::Container { name, path }, Side::Host(h)) => (name, path, h, true),
        (Side::Host(h), Side::Container { name, path }) => (name, path, h, false),
        _ => {
            return Err(Error::Usage(
                "cp: one side must be a container (NAME:PATH) and the other a host path or -"
                    .into(),
            ))
        }
    };
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if r.rootfs.as_os_str().is_empty() {
        return Err(Error::State {
            id: r.name,
            msg: "has no root filesystem of its own".into(),
        });
    }
    if !init_alive(&r) {
        dirs.image_store()?.remount_rootfs(&id)?;
    }
    let (pr, pw) = crate::util::pipe()?;
    // A reader that is gone must be an error here, not our death.
    // SAFETY: ignoring SIGPIPE only changes a signal disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cpath = cpath.clone();
    let host = host.clone();
    // Whether the source is its contents (`dir/.`): the receiver then
    // puts them at `dest`, not under the source's name.
    let contents = source_name(if to_host { &cpath } else { &host }).1 == ".";
    if to_host {
        in_container(
            &r,
            pw,
            pr,
            |w| tar_out(&cpath, io::BufWriter::new(w)),
            |rd| {
                if host == "-" {
                    io::copy(&mut io::BufReader::new(rd), &mut io::stdout().lock()).map(drop)
                } else {
                    tar_in(io::BufReader::new(rd), &host, contents)
                }
            },
        )
    } else {
        if host != "-" && std::fs::symlink_metadata(&host).is_err() {
            return Err(Error::Usage(format!(
                "cp: {host}: no such file or directory"
            )));
        }
        in_container(
            &r,
            pr,
            pw,
            |rd| {
                if host == "-" && !Path::new(&cpath).is_dir() {
                    return Err(io::Error::other(format!(
                        "{cpath}: the destination of a tar on stdin must be a directory"
                    )));
                }
                tar_in(io::BufReader::new(rd), &cpath, contents || host == "-")
            },
            |w| {
                if host == "-" {
                    io::copy(&mut io::stdin().lock(), &mut io::BufWriter::new(w)).map(drop)
                } else {
                    tar_out(&host, io::BufWriter::new(w))
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_dockers_colon_rule() {
        assert_eq!(
            Side::parse("web:/etc/hosts"),
            Side::Container {
                name: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(Side::parse("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(Side::parse("/tmp/x"), Side::Host("/tmp/x".into()));
        assert_eq!(Side::parse("-"), Side::Host("-".into()));
        assert_eq!(
            Side::parse("web:"),
            Side::Container {
                name: "web".into(),
                path: "/".into()
            }
        );
    }

    #[test]
    fn a_source_is_its_name_or_its_contents() {
        assert_eq!(source_name("/a/dir"), ("/a/dir".into(), "dir".into()));
        assert_eq!(source_name("/a/dir/."), ("/a/dir".into(), ".".into()));
        assert_eq!(source_name("/"), ("/".into(), ".".into()));
    }
}
