//! `events`: what happened to containers, images, networks and volumes, as
//! Docker's event stream. Each verb (and the monitor, for starts and ends)
//! appends one JSON line to `events.jsonl` in the data directory, in
//! Docker's shape (Type, Action, Actor{ID, Attributes}, time, timeNano);
//! `hako events` prints the past ones in a window and/or follows new
//! ones. Appends are single writes to an O_APPEND file, so concurrent
//! writers never interleave lines; the file is cut to its newer half past
//! 8 MiB.

use std::io::{BufRead, Seek, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::{Error, Result};

const MAX: u64 = 8 << 20;

fn path(dirs: &Dirs) -> std::path::PathBuf {
    dirs.data.join("events.jsonl")
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Record an event (best effort: a failure to record never fails a verb).
pub fn emit(dirs: &Dirs, kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) {
    let ns = now_ns();
    let attributes: serde_json::Map<String, Value> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let ev = json!({
        "Type": kind,
        "Action": action,
        "Actor": {"ID": id, "Attributes": attributes},
        "scope": "local",
        "time": ns / 1_000_000_000,
        "timeNano": ns,
    });
    let mut line = ev.to_string();
    line.push('\n');
    let p = path(dirs);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() > MAX) {
        trim(&p);
    }
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&p)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Keep the newer half (from a line start), replacing the file at once.
fn trim(p: &std::path::Path) {
    let Ok(data) = std::fs::read(p) else { return };
    let mid = data.len() / 2;
    let start = data[mid..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(data.len(), |i| mid + i + 1);
    let _ = crate::util::atomic_write(p, &data[start..]);
}

/// A container event with its name and image.
pub fn container(dirs: &Dirs, action: &str, r: &crate::record::Record, extra: &[(&str, &str)]) {
    let mut attrs = vec![("name", r.name.as_str()), ("image", r.image.as_str())];
    attrs.extend_from_slice(extra);
    emit(dirs, "container", action, &r.id, &attrs);
}

/// `--filter KEY=VALUE` of `events`: type, event (action), container
/// (name or id prefix), image, network, volume; values of one key are
/// alternatives, different keys must all match.
#[derive(Debug, Default, Clone)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    pub fn parse(f: &[String]) -> Result<Filters> {
        let mut out = Vec::new();
        for s in f {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--filter {s:?}: use KEY=VALUE")))?;
            if !["type", "event", "container", "image", "network", "volume"].contains(&k) {
                return Err(Error::Usage(format!(
                    "--filter {s:?}: filter by type, event, container, image, network or volume"
                )));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Filters(out))
    }

    pub fn matches(&self, ev: &Value) -> bool {
        let kind = ev["Type"].as_str().unwrap_or("");
        let id = ev["Actor"]["ID"].as_str().unwrap_or("");
        let name = ev["Actor"]["Attributes"]["name"].as_str().unwrap_or("");
        let keys: std::collections::BTreeSet<&str> =
            self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|k| {
            self.0
                .iter()
                .filter(|(kk, _)| kk == k)
                .any(|(_, v)| match k {
                    "type" => kind == v,
                    "event" => ev["Action"]
                        .as_str()
                        .is_some_and(|a| a == v || a.starts_with(&format!("{v}:"))),
                    "image" => {
                        (kind == "image" && (id == v || name == v))
                            || ev["Actor"]["Attributes"]["image"].as_str() == Some(v)
                    }
                    t => kind == t && (name == v || (!v.is_empty() && id.starts_with(v.as_str()))),
                })
        })
    }
}

/// Docker's default line: `TIME TYPE ACTION ID (k=v, …)`.
pub fn line(ev: &Value) -> String {
    let ns = ev["timeNano"].as_i64().unwrap_or(0);
    let t = chrono::DateTime::from_timestamp(ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_default();
    let attrs: Vec<String> = ev["Actor"]["Attributes"]
        .as_object()
        .map(|o| {
            let mut v: Vec<String> = o
                .iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    format!(
        "{t} {} {} {} ({})",
        ev["Type"].as_str().unwrap_or(""),
        ev["Action"].as_str().unwrap_or(""),
        ev["Actor"]["ID"].as_str().unwrap_or(""),
        attrs.join(", ")
    )
}

/// The events since `since` (ns; `None`: none of the past, only new ones)
/// until `until` (ns; `None`: follow until interrupted), matching
/// `filters`, each given to `out`; a false from `out` stops.
pub fn read(
    dirs: &Dirs,
    since: Option<i64>,
    until: Option<i64>,
    filters: &Filters,
    mut out: impl FnMut(&Value) -> bool,
) -> Result<()> {
    let p = path(dirs);
    let mut f = loop {
        match std::fs::File::open(&p) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if until.is_some() && since.is_some() {
                    return Ok(());
                }
                crate::dirs::mkdir_p(&dirs.data)?;
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p);
            }
            Err(e) => return Err(crate::io_err("open", &p)(e)),
        }
    };
    // Without --since, only what comes from now on.
    let start_ns = since.unwrap_or_else(now_ns);
    if since.is_none() {
        let _ = f.seek(std::io::SeekFrom::End(0));
    }
    let mut r = std::io::BufReader::new(f);
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = r.read_line(&mut buf).map_err(crate::io_err("read", &p))?;
        if n > 0 && buf.ends_with('\n') {
            if let Ok(ev) = serde_json::from_str::<Value>(&buf) {
                let t = ev["timeNano"].as_i64().unwrap_or(0);
                if until.is_some_and(|u| t > u) {
                    return Ok(());
                }
                if t >= start_ns && filters.matches(&ev) && !out(&ev) {
                    return Ok(());
                }
            }
            continue;
        }
        // At the end: done if the window is past, else wait for more.
        if until.is_some_and(|u| now_ns() > u) {
            return Ok(());
        }
        if n > 0 {
            // A partial line: read it again whole.
            let back = -(n as i64);
            let _ = r.seek_relative(back);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, name: &str) -> Value {
        json!({"Type": kind, "Action": action, "Actor": {"ID": id, "Attributes": {"name": name, "image": "busybox"}}, "timeNano": 1_700_000_000_123_456_789i64})
    }

    #[test]
    fn filters_as_dockers() {
        let f = |s: &[&str]| {
            Filters::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let e = ev("container", "die", "abc123", "web");
        assert!(f(&[]).matches(&e));
        assert!(f(&["type=container", "event=die"]).matches(&e));
        assert!(f(&["event=start", "event=die"]).matches(&e), "alternatives");
        assert!(!f(&["event=start"]).matches(&e));
        assert!(f(&["container=web"]).matches(&e));
        assert!(f(&["container=abc"]).matches(&e));
        assert!(!f(&["container=db"]).matches(&e));
        assert!(f(&["image=busybox"]).matches(&e));
        assert!(f(&["event=health_status"]).matches(&ev(
            "container",
            "health_status: healthy",
            "a",
            "w"
        )));
        assert!(Filters::parse(&["colour=red".into()]).is_err());
    }

    #[test]
    fn dockers_line() {
        assert_eq!(
            line(&ev("container", "start", "abc123", "web")),
            "2023-11-14T22:13:20.123456789Z container start abc123 (image=busybox, name=web)"
        );
    }
}
