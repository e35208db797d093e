//! `ps`.

use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::spec;
use crate::status::{status, Status};
use crate::util;

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
            "Up {}",
            r.started_at
                .as_deref()
                .map(util::ago)
                .unwrap_or_default()
                .trim_end_matches(" ago")
        ),
        Status::Paused => "Up (Paused)".into(),
        Status::Exited(c) => format!(
            "Exited ({}) {}",
            c.map_or("unknown".to_string(), |c| c.to_string()),
            r.finished_at.as_deref().map(util::ago).unwrap_or_default()
        ),
    }
}

/// `ps` rows as JSON objects (the table is printed by the CLI).
pub fn ps(dirs: &Dirs, all: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let (good, bad) = record::scan(dirs);
    // A record that cannot be read is shown (it may be a running
    // container), never silently dropped.
    for c in bad.into_iter().filter(|_| all) {
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
        }));
    }
    for r in good {
        // A record whose directory vanished meanwhile is not listed.
        if !dirs.container(&r.id).exists() {
            continue;
        }
        let s = status(dirs, &r);
        if !all && !s.is_live() {
            continue;
        }
        out.push(json!({
            "ID": r.short_id(),
            "Image": r.image,
            "Command": command_line(&r),
            "CreatedAt": r.created,
            "RunningFor": util::ago(&r.created),
            "State": s.word(),
            "Status": status_text(s, &r),
            "Ports": r.opts.publish.join(", "),
            "Names": r.name,
        }));
    }
    out
}
