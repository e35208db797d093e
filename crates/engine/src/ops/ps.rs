//! `ps`.

use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::spec;
use crate::status::{status, Status};
use crate::util;
use crate::{Error, Result};

fn command_line(r: &Record) -> String {
    if r.command.is_empty() {
        spec::argv(&r.opts, &Value::Null).join(" ")
    } else {
        r.command.clone()
    }
}

fn status_text(s: Status, r: &Record) -> String {
    match s {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            r.started_at
                .as_deref()
                .map(util::ago)
                .unwrap_or_default()
                .trim_end_matches(" ago"),
            crate::health::ps_suffix(r)
        ),
        Status::Paused => "Up (Paused)".into(),
        // Docker's: its monitor waits to start it again.
        Status::Exited(c) if r.restarting && crate::status::monitor_alive(r) => format!(
            "Restarting ({}) {}",
            c.map_or("unknown".to_string(), |c| c.to_string()),
            r.finished_at.as_deref().map(util::ago).unwrap_or_default()
        ),
        Status::Exited(c) => format!(
            "Exited ({}) {}",
            c.map_or("unknown".to_string(), |c| c.to_string()),
            r.finished_at.as_deref().map(util::ago).unwrap_or_default()
        ),
    }
}

/// `ps --filter KEY=VALUE`s, as Docker combines them: values of one key
/// are alternatives, different keys must all match.
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    const KEYS: [&str; 11] = [
        "id", "name", "label", "status", "ancestor", "exited", "health", "network", "volume",
        "before", "since",
    ];

    pub fn parse(list: &[String]) -> Result<Filters> {
        let mut v = Vec::new();
        for f in list {
            let (k, val) = f.split_once('=').ok_or_else(|| {
                Error::Usage(format!(
                    "--filter {f:?}: KEY=VALUE ({})",
                    Self::KEYS.join(", ")
                ))
            })?;
            if !Self::KEYS.contains(&k) {
                return Err(Error::Usage(format!(
                    "--filter {f:?}: unknown filter {k:?} ({})",
                    Self::KEYS.join(", ")
                )));
            }
            if k == "status" && !["created", "running", "paused", "exited"].contains(&val) {
                return Err(Error::Usage(format!(
                    "--filter {f:?}: status is created, running, paused or exited"
                )));
            }
            if k == "health" && !["starting", "healthy", "unhealthy", "none"].contains(&val) {
                return Err(Error::Usage(format!(
                    "--filter {f:?}: health is starting, healthy, unhealthy or none"
                )));
            }
            v.push((k.to_string(), val.to_string()));
        }
        Ok(Filters(v))
    }

    /// `before=`/`since=` name containers: their creation times, checked
    /// once (an unknown container is an error, as Docker's).
    fn creation_bounds(&self, dirs: &Dirs) -> Result<Vec<(bool, i64)>> {
        self.0
            .iter()
            .filter(|(k, _)| k == "before" || k == "since")
            .map(|(k, v)| {
                let r = record::load(dirs, &record::resolve(dirs, v)?)?;
                Ok((k == "before", created_ns(&r)))
            })
            .collect()
    }

    /// A status filter shows stopped containers without -a (Docker).
    fn wants_stopped(&self) -> bool {
        self.0
            .iter()
            .any(|(k, v)| k == "exited" || (k == "status" && v != "running" && v != "paused"))
    }

    fn matches(&self, r: &Record, s: Status) -> bool {
        let one = |k: &str, v: &str| -> bool {
            match k {
                "id" => r.id.starts_with(v),
                "name" => r.name.contains(v),
                "label" => r.opts.label.iter().any(|l| {
                    let (lk, lv) = l.split_once('=').unwrap_or((l, ""));
                    match v.split_once('=') {
                        Some((fk, fv)) => lk == fk && lv == fv,
                        None => lk == v,
                    }
                }),
                "status" => s.word() == v,
                "ancestor" => {
                    r.image == v
                        || r.image == format!("{v}:latest")
                        || r.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                }
                "exited" => matches!(s, Status::Exited(Some(c)) if c.to_string() == v),
                "health" => match (&r.healthcheck, &r.health) {
                    (None, _) => v == "none",
                    (Some(_), Some(h)) => h.status == v,
                    (Some(_), None) => v == "starting",
                },
                "network" => {
                    r.networks.iter().any(|a| a.network == v)
                        || r.opts
                            .network
                            .as_deref()
                            .is_some_and(|n| n.split(',').any(|n| n == v))
                }
                // A named volume's name, or where a volume is mounted.
                "volume" => r.opts.volumes.iter().any(|m| {
                    spec::parse_volume(m)
                        .is_ok_and(|(src, dst, _, named)| (named && src == v) || dst == v)
                }),
                // Checked against the creation times (`within` in [`ps`]).
                "before" | "since" => true,
                _ => false,
            }
        };
        Self::KEYS.iter().all(|k| {
            let mut vals = self.0.iter().filter(|(fk, _)| fk == k).peekable();
            vals.peek().is_none() || vals.any(|(_, v)| one(k, v))
        })
    }
}

/// Docker's NETWORKS column: the networks the container is on (as
/// `network connect/disconnect` left them), else those it asked for, the
/// default network by its name; none, host or container:NAME as given.
fn networks(r: &Record, default: &str) -> String {
    if !r.networks.is_empty() {
        let mut names: Vec<&str> = Vec::new();
        for a in &r.networks {
            if !names.contains(&a.network.as_str()) {
                names.push(&a.network);
            }
        }
        return names.join(",");
    }
    match r.opts.network.as_deref() {
        None | Some("bridge") => default.to_string(),
        Some(n) => n.to_string(),
    }
}

fn created_ns(r: &Record) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&r.created)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// `ps` rows as JSON objects, newest first (the table is printed by the
/// CLI); `last`: only the last N created, of every state (`-n`, `-l`).
pub fn ps(dirs: &Dirs, all: bool, filters: &Filters, last: Option<usize>) -> Result<Vec<Value>> {
    let all = all || filters.wants_stopped() || last.is_some();
    // As Docker's: -n 0 is every container, of every state.
    let last = last.filter(|n| *n > 0);
    let bounds = filters.creation_bounds(dirs)?;
    let mut out = Vec::new();
    let (good, bad) = record::scan(dirs);
    let default_net = dirs.net_config().default_network.name;
    // A record that cannot be read is shown (it may be a running
    // container), never silently dropped.
    for c in bad.into_iter().filter(|_| all && last.is_none()) {
        out.push(json!({
            "ID": &c.id[..12.min(c.id.len())],
            "Image": "",
            "Command": "",
            "CreatedAt": "",
            "RunningFor": "",
            "State": "corrupt",
            "Status": format!("Corrupt record ({})", c.error),
            "Ports": "",
            "Names": c.name.unwrap_or_default(),
            "Networks": "",
        }));
    }
    let within = |r: &Record| {
        let t = created_ns(r);
        bounds
            .iter()
            .all(|&(before, at)| if before { t < at } else { t > at })
    };
    for r in good.into_iter().rev().filter(within) {
        if last.is_some_and(|n| out.len() >= n) {
            break;
        }
        // A record whose directory vanished meanwhile is not listed.
        if !dirs.container(&r.id).exists() {
            continue;
        }
        let s = status(dirs, &r);
        if (!all && !s.is_live()) || !filters.matches(&r, s) {
            continue;
        }
        out.push(json!({
            "ID": r.short_id(),
            "FullID": r.id,
            "Labels": r.opts.label.join(","),
            "Image": r.image,
            "Command": command_line(&r),
            "CreatedAt": r.created,
            "RunningFor": util::ago(&r.created),
            "State": s.word(),
            "Status": status_text(s, &r),
            "Ports": r.opts.publish.join(", "),
            "Names": r.name,
            "Networks": networks(&r, &default_net),
        }));
    }
    Ok(out)
}
