//! `--userns`: which user namespace a container gets, and for `auto` the
//! id range it is given.
//!
//! - `host` (or nothing): none of its own.
//! - `HOSTID[:SIZE]`: container 0..SIZE is host HOSTID.. (uids and gids).
//! - `auto[:size=N]` (root): a range of its own from the pool, the ranges
//!   of `hako` in /etc/subuid and /etc/subgid (as podman's `containers`),
//!   never overlapping another container's; sized from the image's highest
//!   uid or gid (at least 1024) unless `size=` says. Recorded with the
//!   container and free again once it is removed.
//! - `keep-id` (rootless): the user's own id inside is the user's id on
//!   the host (see [`crate::spec`]).
//!
//! The image's files show up owned by the container's root through
//! idmapped layers (see `hako_image::idmap`).

use hako_image::idmap::IdMap;

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::rootless::{ranges_in, Range};
use crate::{Error, Result};

/// What `--userns` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Host,
    Fixed(IdMap),
    Auto { size: Option<u32> },
    KeepId,
}

pub fn parse(v: Option<&str>) -> Result<Mode> {
    let bad = |m: &str| {
        Error::Usage(format!(
            "invalid --userns {m:?}: host, auto[:size=N], keep-id or HOSTID[:SIZE]"
        ))
    };
    Ok(match v {
        None | Some("") | Some("host") => Mode::Host,
        Some("keep-id") => Mode::KeepId,
        Some("auto") | Some("private") => Mode::Auto { size: None },
        Some(m) if m.starts_with("auto:") => {
            let mut size = None;
            for opt in m["auto:".len()..].split(',') {
                match opt.split_once('=') {
                    Some(("size", n)) => {
                        size = Some(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad(m))?)
                    }
                    _ => return Err(bad(m)),
                }
            }
            Mode::Auto { size }
        }
        Some(m) => {
            let (a, b) = m.split_once(':').unwrap_or((m, "65536"));
            let host: u32 = a.parse().map_err(|_| bad(m))?;
            let size: u32 = b.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad(m))?;
            Mode::Fixed(IdMap {
                uid: host,
                gid: host,
                size,
            })
        }
    })
}

/// The size `auto` gives an image whose files go up to uid/gid `max`.
pub fn auto_size(max: (u32, u32)) -> u32 {
    max.0.max(max.1).saturating_add(1).max(1024)
}

/// A user namespace's extents: (first id inside, count).
pub type Extents = Vec<(u32, u32)>;

/// Rootless `keep-id`, in the ids of the user's namespace (0 is the user;
/// `parent` its extents as (first id, count)): container id `own` is 0
/// there, the ids below it are 1.., and those above it themselves. Each
/// line of the map must fall in one extent of the parent's (the kernel's
/// rule), so the pieces are split at the extents' edges.
pub fn keep_id(own: u32, parent: &[(u32, u32)]) -> Result<Vec<(u32, u32, u32)>> {
    let total = parent
        .iter()
        .map(|&(s, n)| u64::from(s) + u64::from(n))
        .max()
        .unwrap_or(0);
    if own == 0 || u64::from(own) >= total {
        return Err(Error::Usage(format!(
            "--userns keep-id: your id {own} must be between 1 and the {total} ids your \
             namespace maps (your subordinate range is too small)"
        )));
    }
    let pieces = [
        (0u64, 1u64, u64::from(own)),
        (u64::from(own), 0, 1),
        (
            u64::from(own) + 1,
            u64::from(own) + 1,
            total - u64::from(own) - 1,
        ),
    ];
    let mut out = Vec::new();
    for (c, p, n) in pieces {
        for &(s, cnt) in parent {
            let (s, e) = (u64::from(s), u64::from(s) + u64::from(cnt));
            let (lo, hi) = (p.max(s), (p + n).min(e));
            if lo < hi {
                out.push(((c + lo - p) as u32, lo as u32, (hi - lo) as u32));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The user's id outside our user namespace (whose 0 it is) and the
/// namespace's extents (first id inside, count), from /proc/self/uid_map
/// (or gid_map).
pub fn own_namespace(map_file: &str) -> (u32, Extents) {
    let text = std::fs::read_to_string(map_file).unwrap_or_default();
    let mut own = 0;
    let mut extents = Vec::new();
    for l in text.lines() {
        let f: Vec<u32> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [inside, outside, count] = f[..] {
            if inside == 0 {
                own = outside;
            }
            extents.push((inside, count));
        }
    }
    extents.sort();
    (own, extents)
}

/// The pool: the first `hako` range of /etc/subuid and of /etc/subgid.
fn pool() -> Result<(Range, Range)> {
    let first = |f: &str| {
        ranges_in(
            &std::fs::read_to_string(f).unwrap_or_default(),
            "hako",
            u32::MAX,
        )
        .into_iter()
        .next()
    };
    match (first("/etc/subuid"), first("/etc/subgid")) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(Error::Usage(
            "--userns auto takes ranges from the hako entries of /etc/subuid and /etc/subgid, \
             and there are none: add one to both, e.g. hako:2147483648:2147483648"
                .into(),
        )),
    }
}

/// The first `size` ids at the same offset into both pools that no range
/// in `taken` overlaps.
pub fn first_free(pool: (Range, Range), taken: &[IdMap], size: u32) -> Option<IdMap> {
    let overlaps = |a: u64, b: u64, s: u64, t: u64| a < s + t && s < a + b;
    let mut off: u64 = 0;
    let limit = u64::from(pool.0.count.min(pool.1.count));
    'search: while off + u64::from(size) <= limit {
        let (u, g) = (u64::from(pool.0.start) + off, u64::from(pool.1.start) + off);
        for t in taken {
            let tsz = u64::from(t.size);
            if overlaps(u, u64::from(size), u64::from(t.uid), tsz)
                || overlaps(g, u64::from(size), u64::from(t.gid), tsz)
            {
                // Past this one, in whichever pool it sits.
                let next_u = (u64::from(t.uid) + tsz).saturating_sub(u64::from(pool.0.start));
                let next_g = (u64::from(t.gid) + tsz).saturating_sub(u64::from(pool.1.start));
                off = off.max(next_u.max(next_g)).max(off + 1);
                continue 'search;
            }
        }
        return Some(IdMap {
            uid: u as u32,
            gid: g as u32,
            size,
        });
    }
    None
}

/// Give container `id` a range of `size` ids, under the containers' lock
/// (so two creates never take the same), and record it.
pub fn allocate(dirs: &Dirs, id: &str, size: u32) -> Result<IdMap> {
    let pool = pool()?;
    let _l = record::lock(dirs)?;
    let (records, _) = record::scan(dirs);
    let taken: Vec<IdMap> = records.iter().filter_map(|r: &Record| r.idmap).collect();
    let map = first_free(pool, &taken, size).ok_or_else(|| {
        Error::Other(format!(
            "--userns auto: no {size} free ids left in the hako ranges of /etc/subuid and \
             /etc/subgid ({} containers hold ranges)",
            taken.len()
        ))
    })?;
    let mut r = record::load(dirs, id)?;
    r.idmap = Some(map);
    record::save(dirs, &r)?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse(None).unwrap(), Mode::Host);
        assert_eq!(parse(Some("auto")).unwrap(), Mode::Auto { size: None });
        assert_eq!(
            parse(Some("auto:size=2048")).unwrap(),
            Mode::Auto { size: Some(2048) }
        );
        assert_eq!(
            parse(Some("100000:65536")).unwrap(),
            Mode::Fixed(IdMap {
                uid: 100000,
                gid: 100000,
                size: 65536
            })
        );
        assert_eq!(parse(Some("keep-id")).unwrap(), Mode::KeepId);
        for bad in ["auto:size=0", "auto:x=1", "1000:0", "abc", "auto:size=-1"] {
            assert!(
                parse(Some(bad))
                    .unwrap_err()
                    .to_string()
                    .contains("--userns"),
                "{bad}"
            );
        }
        assert_eq!(auto_size((0, 0)), 1024);
        assert_eq!(auto_size((65534, 100)), 65535);
    }

    #[test]
    fn keep_id_puts_the_user_at_its_own_id() {
        // The user (0), then a range of 65536.
        let one = [(0, 1), (1, 65536)];
        assert_eq!(
            keep_id(1000, &one).unwrap(),
            vec![(0, 1, 1000), (1000, 0, 1), (1001, 1001, 64536)]
        );
        assert_eq!(
            keep_id(5, &[(0, 1), (1, 5)]).unwrap(),
            vec![(0, 1, 5), (5, 0, 1)]
        );
        assert!(keep_id(70000, &one).is_err());
        assert!(keep_id(0, &one).is_err());
        // Two ranges: no line crosses from one to the other.
        let two = [(0, 1), (1, 65536), (65537, 65536)];
        assert_eq!(
            keep_id(1001, &two).unwrap(),
            vec![
                (0, 1, 1001),
                (1001, 0, 1),
                (1002, 1002, 64535),
                (65537, 65537, 65536)
            ]
        );
    }

    #[test]
    fn ranges_never_overlap() {
        let pool = (
            Range {
                start: 1_000_000,
                count: 10_000,
            },
            Range {
                start: 5_000_000,
                count: 10_000,
            },
        );
        let a = first_free(pool, &[], 1024).unwrap();
        assert_eq!((a.uid, a.gid), (1_000_000, 5_000_000));
        let b = first_free(pool, &[a], 2048).unwrap();
        assert_eq!((b.uid, b.gid), (1_001_024, 5_001_024));
        // A hole after a removed container is used again.
        let c = first_free(pool, &[b], 1024).unwrap();
        assert_eq!(c.uid, 1_000_000);
        let d = first_free(pool, &[b], 1025).unwrap();
        assert_eq!(d.uid, 1_003_072);
        // Full.
        assert!(first_free(pool, &[a, b], 8000).is_none());
    }
}
