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
/// (ENOSPC). Copy each down from the nearest ancestor that has it, for
/// every directory from there to `dir`. Each file on its own: another
/// container making a cgroup in the same new parent may have copied the
/// parent's cpus but not yet its mems (taking both from the first
/// ancestor with cpus copied an empty mems, and the join failed).
pub(crate) fn inherit(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut empty = Vec::new();
        let mut cur = dir;
        let value = loop {
            match dir_value(cur, file)? {
                // Not a cpuset directory (or above the mountpoint).
                None => return Ok(()),
                Some(v) if !v.is_empty() => break v,
                Some(_) => empty.push(cur.to_path_buf()),
            }
            match cur.parent() {
                Some(p) => cur = p,
                None => return Ok(()),
            }
        };
        // From the top down: a child's set must lie within its parent's.
        // A parent is read again just before (another container may have
        // filled it meanwhile); `dir` itself (index 0) was read just now.
        for (i, d) in empty.iter().enumerate().rev() {
            if i == 0 || dir_value(d, file)?.as_deref() == Some("") {
                fs::write_file(&d.join(file), &value)?;
            }
        }
    }
    Ok(())
}

fn dir_value(dir: &Path, file: &str) -> Result<Option<String>> {
    Ok(fs::read_opt(&dir.join(file))?.map(|s| s.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_comes_from_the_nearest_ancestor_that_has_it() {
        let t = tempfile::tempdir().unwrap();
        let (root, mid, leaf) = (t.path(), t.path().join("hako"), t.path().join("hako/c1"));
        std::fs::create_dir_all(&leaf).unwrap();
        let put = |d: &Path, cpus: &str, mems: &str| {
            std::fs::write(d.join("cpuset.cpus"), cpus).unwrap();
            std::fs::write(d.join("cpuset.mems"), mems).unwrap();
        };
        put(root, "0-1\n", "0\n");
        // Another creator copied the parent's cpus, not yet its mems.
        put(&mid, "0-1\n", "");
        put(&leaf, "", "");
        inherit(&leaf).unwrap();
        for d in [&mid, &leaf] {
            assert_eq!(dir_value(d, "cpuset.cpus").unwrap().unwrap(), "0-1");
            assert_eq!(dir_value(d, "cpuset.mems").unwrap().unwrap(), "0");
        }
    }
}
