//! `linux.resources.unified`: raw "file": "value" pairs for cgroup v2. They
//! are written last, so they override values derived from other fields.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::Plan;

pub(crate) fn plan(unified: &HashMap<String, String>, dir: &Path, plan: &mut Plan) -> Result<()> {
    // Sorted for a deterministic write order (HashMap has none).
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for k in keys {
        let field = format!("unified[{k:?}]");
        // The key must name a file in this cgroup, never a path out of it.
        if k.is_empty() || k.contains('/') || k.starts_with('.') || k.contains('\0') {
            return Err(Error::InvalidResource {
                field,
                reason: "key must be a plain cgroup file name (no '/', no leading '.')".into(),
            });
        }
        // cgroup.procs/threads/subtree_control/kill/freeze are lifecycle
        // files the runtime owns; letting the spec write them would break it.
        if k.starts_with("cgroup.") && k != "cgroup.max.depth" && k != "cgroup.max.descendants" {
            return Err(Error::InvalidResource {
                field,
                reason: "only cgroup.max.depth and cgroup.max.descendants may be set among cgroup.* files".into(),
            });
        }
        let controller = controller_of(k);
        plan.write(controller, field, dir, k, &unified[k]);
    }
    Ok(())
}

/// "memory.high" -> "memory", for error hints.
fn controller_of(key: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "cgroup",
    ];
    let prefix = key.split('.').next().unwrap_or("");
    KNOWN
        .iter()
        .find(|k| **k == prefix)
        .copied()
        .unwrap_or("unknown")
}
