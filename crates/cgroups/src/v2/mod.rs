//! cgroup v2: one hierarchy; controllers must be enabled in every
//! ancestor's cgroup.subtree_control before their files appear.

pub(crate) mod cpu;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod unified;

use std::path::Path;

use crate::error::Result;
use crate::fs;

/// Enables, in `root` and every directory between it and `dir` (exclusive),
/// each controller the directory offers but has not enabled for its
/// children. Already-enabled controllers are not rewritten, so on a typical
/// systemd host (everything enabled) this writes nothing.
///
/// A failure for one controller is tolerated (e.g. a threaded controller
/// or a cgroup with processes); its files will be missing in `dir` and
/// `set()` reports that precisely if the spec needs them.
pub(crate) fn enable_controllers(root: &Path, dir: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let available = fs::read_string(&cur.join("cgroup.controllers"))?;
        let enabled = fs::read_opt(&cur.join("cgroup.subtree_control"))?.unwrap_or_default();
        let missing: Vec<&str> = available
            .split_whitespace()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .collect();
        if !missing.is_empty() {
            let file = cur.join("cgroup.subtree_control");
            let all = missing
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ");
            if fs::write_file(&file, &all).is_err() {
                for c in &missing {
                    let _ = fs::write_file(&file, &format!("+{c}"));
                }
            }
        }
        if i + 1 == comps.len() {
            break;
        }
        cur.push(c);
    }
    Ok(())
}
