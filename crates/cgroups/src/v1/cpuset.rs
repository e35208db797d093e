//! v1 cpuset controller.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::Result;
use crate::fs;
use crate::plan::Plan;

const CTL: &str = "cpuset";

pub(crate) fn plan(c: &LinuxCpu, dir: &Path, plan: &mut Plan) -> Result<()> {
    if let Some(cpus) = c.cpus() {
        plan.write(CTL, "cpu.cpus", dir, "cpuset.cpus", cpus);
    }
    if let Some(mems) = c.mems() {
        plan.write(CTL, "cpu.mems", dir, "cpuset.mems", mems);
    }
    Ok(())
}

/// A new v1 cpuset starts with empty cpus/mems and no task can join it
/// (ENOSPC). Copy them down from the nearest ancestor that has them, for
/// every directory from there to `dir`.
pub(crate) fn inherit(dir: &Path) -> Result<()> {
    let mut chain = Vec::new();
    let mut cur = dir;
    loop {
        let cpus = dir_value(cur, "cpuset.cpus")?;
        if cpus.is_none() {
            // Not a cpuset directory (or above the mountpoint): give up.
            return Ok(());
        }
        if cpus.as_deref() != Some("") {
            break;
        }
        chain.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => return Ok(()),
        }
    }
    for d in chain.iter().rev() {
        let parent = d.parent().unwrap_or(Path::new("/"));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if dir_value(d, f)?.as_deref() == Some("") {
                if let Some(v) = dir_value(parent, f)? {
                    fs::write_file(&d.join(f), &v)?;
                }
            }
        }
    }
    Ok(())
}

fn dir_value(dir: &Path, file: &str) -> Result<Option<String>> {
    Ok(fs::read_opt(&dir.join(file))?.map(|s| s.trim().to_string()))
}
