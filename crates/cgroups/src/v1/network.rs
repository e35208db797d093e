//! v1-only net_cls (classid) and net_prio (ifpriomap); cgroup v2 has no
//! equivalent (use eBPF / nftables on the socket's cgroup instead).

use std::path::Path;

use oci_spec::runtime::LinuxNetwork;

use crate::error::Result;
use crate::plan::Plan;

pub(crate) fn plan_classid(n: &LinuxNetwork, dir: &Path, plan: &mut Plan) -> Result<()> {
    if let Some(id) = n.class_id() {
        plan.write("net_cls", "network.classID", dir, "net_cls.classid", id);
    }
    Ok(())
}

pub(crate) fn plan_priorities(n: &LinuxNetwork, dir: &Path, plan: &mut Plan) -> Result<()> {
    for p in n.priorities().iter().flatten() {
        plan.write(
            "net_prio",
            "network.priorities",
            dir,
            "net_prio.ifpriomap",
            format!("{} {}", p.name(), p.priority()),
        );
    }
    Ok(())
}
