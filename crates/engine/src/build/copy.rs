//! COPY and ADD: their sources found in the context (or another stage's
//! or image's root), hashed for the cache, and written into a build
//! container's root filesystem with Docker's rules.
//!
//! Sources are read on the host, never following a symlink out of the
//! context (an error) or out of a stage's root (resolved inside it, as
//! the image sees it). The destination side runs in a forked child
//! chrooted into the container's root: its paths and symlinks resolve in
//! the image, and the hardened unpacker writes nothing through a symlink
//! (the class of Docker's CVE-2019-14271 and CVE-2018-15664).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ignore::{self, Ignore};
use hako_runtime::os;

/// Where sources are read from.
pub struct From<'a> {
    pub root: &'a Path,
    /// The context's ignore rules (None for a stage's or image's root).
    pub ignore: Option<&'a Ignore>,
}

impl From<'_> {
    fn is_context(&self) -> bool {
        self.ignore.is_some()
    }
}

/// One source, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// A path under the root: its real path, its path relative to the
    /// root (for the ignore rules), and the name it is copied under.
    Path {
        host: PathBuf,
        rel: String,
        name: String,
    },
    /// A heredoc (`COPY <<EOF /dest`).
    Inline { name: String, data: Vec<u8> },
    /// A file ADD downloaded (mode 0600, never unpacked, as Docker's).
    Fetched { host: PathBuf, name: String },
}

impl Source {
    fn is_dir(&self) -> bool {
        matches!(self, Source::Path { host, .. } if host.is_dir())
    }
}

const MAX_LINKS: usize = 40;

/// `rel` (clean, relative) resolved under `from.root`, following
/// symlinks: in the context a symlink that leaves it is an error; in a
/// stage's root an absolute one starts again at that root.
fn resolve(from: &From, rel: &str, shown: &str) -> Result<(PathBuf, String), String> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                if done.pop().is_none() && from.is_context() {
                    return Err(format!("{shown} is outside the build context"));
                }
                continue;
            }
            _ => {}
        }
        let mut p = from.root.to_path_buf();
        p.extend(&done);
        p.push(&c);
        let md = std::fs::symlink_metadata(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                if from.is_context() {
                    format!(
                        "{shown}: not found in the build context (or excluded by .dockerignore)"
                    )
                } else {
                    format!("{shown}: no such file or directory")
                }
            } else {
                format!("{shown}: {e}")
            }
        })?;
        if !md.file_type().is_symlink() {
            done.push(c);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(format!("{shown}: too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&p).map_err(|e| format!("{shown}: {e}"))?;
        let t = target.to_string_lossy().into_owned();
        if t.starts_with('/') {
            if from.is_context() {
                return Err(format!(
                    "{shown} is a symlink to {t}, outside the build context"
                ));
            }
            done.clear();
        }
        for part in t.split('/').filter(|x| !x.is_empty()).rev() {
            todo.push(part.to_string());
        }
    }
    let mut p = from.root.to_path_buf();
    p.extend(&done);
    Ok((p, done.join("/")))
}

/// Every source of a COPY/ADD: wildcards matched against the root's
/// entries, the rest looked up; ignored entries do not exist.
pub fn sources(from: &From, patterns: &[String]) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for pat in patterns {
        let clean = ignore::clean(pat);
        if clean == ".." || clean.starts_with("../") {
            return Err(if from.is_context() {
                format!("{pat} is outside the build context")
            } else {
                format!("{pat}: no such file or directory")
            });
        }
        if ignore::has_wildcards(&clean) {
            let mut found = Vec::new();
            glob_walk(from, &clean, Path::new(""), &mut found)
                .map_err(|e| format!("{pat}: {e}"))?;
            if found.is_empty() {
                return Err(format!("{pat}: no source files match"));
            }
            found.sort();
            for rel in found {
                let (host, real) = resolve(from, &rel, &rel)?;
                let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
                out.push(Source::Path {
                    host,
                    rel: real,
                    name,
                });
            }
            continue;
        }
        let (host, real) = resolve(from, &clean, pat)?;
        if from.ignore.is_some_and(|i| i.ignored(&real)) {
            return Err(format!(
                "{pat}: not found in the build context (or excluded by .dockerignore)"
            ));
        }
        let name = clean.rsplit('/').next().unwrap_or("").to_string();
        out.push(Source::Path {
            host,
            rel: real,
            name,
        });
    }
    Ok(out)
}

/// Paths under `dir` (relative to the root) matching `pattern`, one
/// component per level as filepath.Match does.
fn glob_walk(from: &From, pattern: &str, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let depth = pattern.split('/').count();
    let here = from.root.join(dir);
    let level = dir.components().count();
    let want: Vec<&str> = pattern.split('/').collect();
    let Ok(rd) = std::fs::read_dir(&here) else {
        return Ok(());
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = dir.join(&name).to_string_lossy().into_owned();
        if from.ignore.is_some_and(|i| i.ignored(&rel)) {
            continue;
        }
        if !ignore::matches(want[level], &name) {
            continue;
        }
        if level + 1 == depth {
            out.push(rel);
        } else if e.file_type()?.is_dir() {
            glob_walk(from, pattern, &dir.join(&name), out)?;
        }
    }
    Ok(())
}

/// Calls `f` for every entry under a source directory (sorted, ignored
/// entries skipped): its path relative to the source and its metadata.
fn walk(
    from: &From,
    host: &Path,
    rel_root: &str,
    sub: &Path,
    f: &mut dyn FnMut(&Path, &Path, &std::fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(host.join(sub))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let s = sub.join(&n);
        let rel = if rel_root.is_empty() {
            s.to_string_lossy().into_owned()
        } else {
            format!("{rel_root}/{}", s.display())
        };
        if let Some(i) = from.ignore {
            if i.ignored(&rel) && !(i.may_reinclude_under(&rel)) {
                continue;
            }
        }
        let p = host.join(&s);
        let md = std::fs::symlink_metadata(&p)?;
        let skip = from.ignore.is_some_and(|i| i.ignored(&rel));
        if !skip {
            f(&p, &s, &md)?;
        }
        if md.is_dir() {
            walk(from, host, rel_root, &s, f)?;
        }
    }
    Ok(())
}

/// The sources' content digest (names, types, modes, link targets and
/// bytes; not owners or times), the cache key's part for COPY and ADD.
pub fn digest(from: &From, sources: &[Source]) -> io::Result<String> {
    let mut h = Sha256::new();
    for s in sources {
        match s {
            Source::Inline { name, data } => {
                h.update(format!("inline {name} {}\n", data.len()));
                h.update(data);
            }
            Source::Fetched { host, name } => {
                h.update(format!("fetched {name}\n"));
                hash_entry(&mut h, host, Path::new("."), &std::fs::metadata(host)?)?;
            }
            Source::Path { host, rel, name } => {
                h.update(format!("source {name}\n"));
                let md = std::fs::metadata(host)?;
                hash_entry(&mut h, host, Path::new("."), &md)?;
                if md.is_dir() {
                    walk(from, host, rel, Path::new(""), &mut |p, r, md| {
                        hash_entry(&mut h, p, r, md)
                    })?;
                }
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_entry(h: &mut Sha256, p: &Path, rel: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    let ft = md.file_type();
    h.update(format!(
        "{} {:o} ",
        rel.display(),
        md.permissions().mode() & 0o7777
    ));
    if ft.is_symlink() {
        h.update(format!("link {}\n", std::fs::read_link(p)?.display()));
    } else if ft.is_dir() {
        h.update("dir\n");
    } else if ft.is_file() {
        let mut f = File::open(p)?;
        let mut fh = Sha256::new();
        io::copy(&mut f, &mut fh)?;
        h.update(format!("file {}\n", hex::encode(fh.finalize())));
    } else {
        h.update(format!("special {}\n", md.rdev()));
    }
    Ok(())
}

/// Who owns and how the copied entries are made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// --chmod: the mode of every copied file and directory.
    pub mode: Option<u32>,
}

/// What the destination is inside the root: the real path of its longest
/// existing part, the components still missing, and whether it is an
/// existing directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Dest {
    pub real: String,
    pub missing: Vec<String>,
    pub is_dir: bool,
}

/// Looks `dest` up inside the current root (in the chrooted child).
fn probe(dest: &str) -> io::Result<Dest> {
    let mut real = PathBuf::from("/");
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        let next = real.join(c);
        match std::fs::canonicalize(&next) {
            Ok(r) if r.is_dir() => real = r,
            Ok(r) if i + 1 == comps.len() => {
                return Ok(Dest {
                    real: r.to_string_lossy().into_owned(),
                    missing: vec![],
                    is_dir: false,
                })
            }
            Ok(r) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    r.display()
                )))
            }
            Err(_) => {
                return Ok(Dest {
                    real: real.to_string_lossy().into_owned(),
                    missing: comps[i..].iter().map(|s| s.to_string()).collect(),
                    is_dir: false,
                })
            }
        }
    }
    Ok(Dest {
        real: real.to_string_lossy().into_owned(),
        missing: vec![],
        is_dir: true,
    })
}

/// Runs `work` in a child chrooted into `root`, with `input` as its data
/// pipe, and `feed` here meanwhile; what the child writes to its output
/// pipe is returned.
fn in_root(
    root: &Path,
    input: Option<OwnedFd>,
    work: impl FnOnce(Option<File>, &mut File) -> io::Result<()>,
    feed: impl FnOnce() -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let (out_r, out_w) = crate::util::pipe().map_err(io::Error::other)?;
    // Each side holds only its own ends, so each sees the other's close.
    let out_r = std::cell::Cell::new(Some(out_r));
    let out_w = std::cell::Cell::new(Some(out_w));
    let input = std::cell::Cell::new(input);
    let mut out = Vec::new();
    crate::util::in_fork(
        || {
            drop(out_r.take());
            os::chroot(root)?;
            std::env::set_current_dir("/")?;
            let mut w = File::from(out_w.take().expect("once"));
            work(input.take().map(File::from), &mut w)
        },
        || {
            drop(input.take());
            drop(out_w.take());
            let fed = feed();
            let _ = File::from(out_r.take().expect("once")).read_to_end(&mut out);
            fed
        },
    )?;
    Ok(out)
}

/// The destination `dest` (absolute) inside `root`.
pub fn probe_in(root: &Path, dest: &str) -> io::Result<Dest> {
    let dest = dest.to_string();
    let out = in_root(
        root,
        None,
        move |_, out| {
            let d = probe(&dest)?;
            out.write_all(&serde_json::to_vec(&d).expect("json"))
        },
        || Ok(()),
    )?;
    serde_json::from_slice(&out).map_err(io::Error::other)
}

/// Appends one entry with `attrs` over the source's metadata.
fn append(
    b: &mut tar::Builder<impl Write>,
    name: &str,
    p: Option<&Path>,
    md: Option<&std::fs::Metadata>,
    data: &[u8],
    a: &Attrs,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_uid(a.uid as u64);
    h.set_gid(a.gid as u64);
    let mtime = md.map_or_else(now_secs, |m| m.mtime().max(0) as u64);
    h.set_mtime(mtime);
    let perm = |m: u32| a.mode.unwrap_or(m & 0o7777);
    match (p, md) {
        (Some(p), Some(md)) if md.file_type().is_symlink() => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, name, std::fs::read_link(p)?)
        }
        (Some(_), Some(md)) if md.is_dir() => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(perm(md.permissions().mode()));
            h.set_size(0);
            b.append_data(&mut h, name, io::empty())
        }
        (Some(p), Some(md)) if md.is_file() => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(perm(md.permissions().mode()));
            h.set_size(md.len());
            b.append_data(&mut h, name, File::open(p)?)
        }
        (Some(p), Some(md)) => {
            let ft = md.file_type();
            if ft.is_fifo() {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(perm(md.permissions().mode()));
                h.set_size(0);
                b.append_data(&mut h, name, io::empty())
            } else {
                Err(io::Error::other(format!(
                    "{}: a device or socket cannot be copied",
                    p.display()
                )))
            }
        }
        _ => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(a.mode.unwrap_or(0o644));
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data)
        }
    }
}

/// The plan of one COPY: sources and where each goes.
pub struct Copy<'a> {
    pub from: From<'a>,
    pub sources: Vec<Source>,
    /// The destination as written, absolute (WORKDIR applied).
    pub dest: String,
    pub attrs: Attrs,
    /// ADD: local tar archives are unpacked at the destination.
    pub extract_archives: bool,
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let n = File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &head[257..262] == b"ustar")
}

impl Copy<'_> {
    /// Writes the sources into the image root `root` (a build container's
    /// mounted root filesystem).
    pub fn run(&self, root: &Path) -> io::Result<()> {
        let dest = self.dest.as_str();
        let many = self.sources.len() > 1;
        let any_dir = self.sources.iter().any(Source::is_dir);
        let into_dir = dest.ends_with('/') || many;
        let d = probe_in(root, dest)?;
        let exists = d.missing.is_empty();
        if exists && !d.is_dir && (into_dir || any_dir) {
            return Err(io::Error::other(format!(
                "{dest}: the destination exists and is not a directory"
            )));
        }
        // Where the sources go: a directory (made if missing, parents
        // too), or for one file to a path that is no directory, that path.
        let mut dirs = d.missing.clone();
        let file_target = if exists && !d.is_dir {
            Some(d.real.trim_start_matches('/').to_string())
        } else if !exists && !into_dir && !any_dir {
            let name = dirs.pop().expect("a missing part");
            Some(join(&join_all(&d.real, &dirs), &name))
        } else {
            None
        };
        let target_dir = join_all(&d.real, &dirs);
        let mut plan = Vec::new();
        let mut made = d.real.trim_start_matches('/').to_string();
        for p in &dirs {
            made = join(&made, p);
            plan.push(Entry::Dir(made.clone()));
        }
        let mut archives: Vec<(File, String)> = Vec::new();
        for s in &self.sources {
            match s {
                Source::Inline { name, data } => plan.push(Entry::Data(
                    file_target
                        .clone()
                        .unwrap_or_else(|| join(&target_dir, name)),
                    data,
                )),
                Source::Fetched { host, name } => plan.push(Entry::File(
                    file_target
                        .clone()
                        .unwrap_or_else(|| join(&target_dir, name)),
                    host,
                )),
                Source::Path { host, rel, name } => {
                    if host.is_dir() {
                        plan.push(Entry::Tree(target_dir.clone(), host, rel));
                    } else if self.extract_archives && self.from.is_context() && is_archive(host) {
                        archives.push((File::open(host)?, target_dir.clone()));
                    } else {
                        plan.push(Entry::File(
                            file_target
                                .clone()
                                .unwrap_or_else(|| join(&target_dir, name)),
                            host,
                        ));
                    }
                }
            }
        }
        let (r, w) = crate::util::pipe().map_err(io::Error::other)?;
        // A reader that is gone must be an error here, not our death.
        // SAFETY: ignoring SIGPIPE only changes a signal disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        // The writer end is the feeder's alone: the child must see the
        // end of the stream once the feeder is done.
        let w = std::cell::Cell::new(Some(w));
        let w = &w;
        let attrs = self.attrs;
        in_root(
            root,
            Some(r),
            move |input, _| {
                drop(w.take());
                let opts = hako_image::unpack::UnpackOptions {
                    whiteouts: hako_image::unpack::Whiteouts::Keep,
                    same_owner: true,
                    devices: false,
                    ..Default::default()
                };
                let input = input.expect("a pipe");
                hako_image::unpack::unpack_with(
                    io::BufReader::new(input),
                    "",
                    Path::new("/"),
                    &opts,
                )
                .map_err(io::Error::other)?;
                for (f, dir) in archives {
                    let d = Path::new("/").join(&dir);
                    std::fs::create_dir_all(&d)?;
                    hako_image::unpack::unpack_with(io::BufReader::new(f), "", &d, &opts)
                        .map_err(io::Error::other)?;
                }
                Ok(())
            },
            || {
                let w = w.take().expect("once");
                let mut b = tar::Builder::new(io::BufWriter::new(File::from(w)));
                for e in &plan {
                    e.write(&mut b, &self.from, &attrs)?;
                }
                b.into_inner()?.flush()
            },
        )
        .map(drop)
    }
}

/// One part of a copy's tar stream.
enum Entry<'a> {
    /// A directory the destination needed (0755, the copy's owner).
    Dir(String),
    /// Inline data (a heredoc) at this path.
    Data(String, &'a [u8]),
    /// A file (or symlink, followed: it was named) at this path.
    File(String, &'a Path),
    /// A directory's contents under this directory.
    Tree(String, &'a Path, &'a str),
}

impl Entry<'_> {
    fn write(&self, b: &mut tar::Builder<impl Write>, from: &From, a: &Attrs) -> io::Result<()> {
        match self {
            Entry::Dir(name) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(a.uid as u64);
                h.set_gid(a.gid as u64);
                h.set_mtime(now_secs());
                h.set_size(0);
                b.append_data(&mut h, name, io::empty())
            }
            Entry::Data(name, data) => append(b, name, None, None, data, a),
            Entry::File(name, host) => {
                let md = std::fs::metadata(host)?;
                append(b, name, Some(host), Some(&md), &[], a)
            }
            Entry::Tree(dir, host, rel) => walk(from, host, rel, Path::new(""), &mut |p, r, md| {
                append(
                    b,
                    &join(dir, &r.to_string_lossy()),
                    Some(p),
                    Some(md),
                    &[],
                    a,
                )
            }),
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `a/b` of two relative paths, either possibly empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// `real` (absolute) and `parts` as one relative path.
fn join_all(real: &str, parts: &[String]) -> String {
    parts
        .iter()
        .fold(real.trim_start_matches('/').to_string(), |acc, p| {
            join(&acc, p)
        })
}
