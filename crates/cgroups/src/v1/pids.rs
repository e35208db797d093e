//! pids controller: identical files on v1 and v2.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::error::Result;
use crate::fs;
use crate::plan::Plan;
use crate::stats::Pids;

pub(crate) fn plan(p: &LinuxPids, dir: &Path, plan: &mut Plan) -> Result<()> {
    // 0 and -1 both mean "no limit" (runc).
    let v = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_string()
    };
    plan.write("pids", "pids.limit", dir, "pids.max", v);
    Ok(())
}

pub(crate) fn stats(dir: &Path) -> Result<Pids> {
    let limit = fs::read_u64_or_zero(&dir.join("pids.max"))?;
    Ok(Pids {
        current: fs::read_u64_or_zero(&dir.join("pids.current"))?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}
