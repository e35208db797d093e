//! runc's reading of `linux.resources`, applied once before planning (for
//! create and for update alike): which values mean "leave this alone".
//!
//! Engines rely on it. Docker writes `blockIO.weight: 0`, `cpu.shares: 0`,
//! `cpu.quota: 0` and `cpu.period: 0` for every field the user did not
//! set; runc (libcontainer/cgroups/fs and fs2, 1.1+) and crun skip a zero
//! there instead of writing it to the kernel, which refuses it. The table
//! of every rule is docs/cgroups-resources.md; each row has a test in
//! tests/fake_tree.rs.

use oci_spec::runtime::{LinuxResources, LinuxWeightDeviceBuilder};

/// Returns `r` with every "unset" value (as runc reads it) removed, so the
/// planners only see values that are meant to be written.
pub fn normalize(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    if let Some(mut c) = r.cpu().clone() {
        // runc: `if r.CpuShares != 0`, `if r.CpuPeriod != 0`,
        // `if r.CpuQuota != 0`, `if r.CpuRtRuntime != 0`, ….
        if c.shares() == Some(0) {
            c.set_shares(None);
        }
        if c.quota() == Some(0) {
            c.set_quota(None);
        }
        if c.period() == Some(0) {
            c.set_period(None);
        }
        if c.realtime_runtime() == Some(0) {
            c.set_realtime_runtime(None);
        }
        if c.realtime_period() == Some(0) {
            c.set_realtime_period(None);
        }
        // An empty cpuset string means "as the parent" (runc: `!= ""`).
        if c.cpus().as_deref() == Some("") {
            c.set_cpus(None);
        }
        if c.mems().as_deref() == Some("") {
            c.set_mems(None);
        }
        r.set_cpu(Some(c));
    }
    if let Some(mut m) = *r.memory() {
        // runc: `if r.Memory != 0`, `if r.MemoryReservation != 0`,
        // `if r.KernelMemoryTCP != 0`. (swap 0 is read by the planners,
        // which need it together with the limit.)
        if m.limit() == Some(0) {
            m.set_limit(None);
        }
        if m.reservation() == Some(0) {
            m.set_reservation(None);
        }
        if m.kernel_tcp() == Some(0) {
            m.set_kernel_tcp(None);
        }
        if m.kernel() == Some(0) {
            m.set_kernel(None);
        }
        // runc: swappiness -1 (u64::MAX once read as unsigned) is "unset".
        if m.swappiness() == Some(u64::MAX) {
            m.set_swappiness(None);
        }
        r.set_memory(Some(m));
    }
    // runc: `if r.PidsLimit != 0` (negative means "max").
    if r.pids().as_ref().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    if let Some(mut b) = r.block_io().clone() {
        // runc: `if r.BlkioWeight != 0`, `if r.BlkioLeafWeight != 0`, and
        // per device only the non-zero weights are written.
        if b.weight() == Some(0) {
            b.set_weight(None);
        }
        if b.leaf_weight() == Some(0) {
            b.set_leaf_weight(None);
        }
        if let Some(devs) = b.weight_device().clone() {
            let devs: Vec<_> = devs
                .into_iter()
                .filter_map(|d| {
                    let nz = |w: Option<u16>| w.filter(|w| *w != 0);
                    let (weight, leaf) = (nz(d.weight()), nz(d.leaf_weight()));
                    if weight.is_none() && leaf.is_none() {
                        return None;
                    }
                    let mut b = LinuxWeightDeviceBuilder::default()
                        .major(d.major())
                        .minor(d.minor());
                    if let Some(w) = weight {
                        b = b.weight(w);
                    }
                    if let Some(w) = leaf {
                        b = b.leaf_weight(w);
                    }
                    b.build().ok()
                })
                .collect();
            b.set_weight_device((!devs.is_empty()).then_some(devs));
        }
        r.set_block_io(Some(b));
    }
    if let Some(mut n) = r.network().clone() {
        // runc: `if r.NetClsClassid != 0`.
        if n.class_id() == Some(0) {
            n.set_class_id(None);
        }
        r.set_network(Some(n));
    }
    r
}
