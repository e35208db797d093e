//! `top` and `stats`.

use hako_runtime::container;
use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::status::{live, status};
use crate::Result;

/// Host pids of the container's processes (its pid namespace), init first.
pub fn pids(r: &Record) -> Vec<i32> {
    container::pidns_members(r.pid)
}

/// `top`: (PID, USER, STAT, CMD) per process.
pub fn top(dirs: &Dirs, name: &str) -> Result<Vec<[String; 4]>> {
    let (_, r) = live(dirs, name)?;
    let mut rows = Vec::new();
    for pid in pids(&r) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let state = hako_runtime::os::proc_stat(pid).map_or('?', |s| s.state);
        rows.push([pid.to_string(), uid, state.to_string(), cmd]);
    }
    Ok(rows)
}

/// `stats` (one sample) from the runtime's view of the container's cgroup.
pub fn stats(dirs: &Dirs, name: &str) -> Result<Value> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let live = status(dirs, &r).is_live();
    let s = if live {
        container::stats(&dirs.runtime_root(), &id).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(json!({
        "ID": r.short_id(),
        "Name": r.name,
        "State": status(dirs, &r).word(),
        "PIDs": if live { pids(&r).len() } else { 0 },
        "Stats": s,
    }))
}
