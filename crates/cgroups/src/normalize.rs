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

/// Checks what can be checked without a host: value ranges, cpuset lists,
/// device rules. The runtime calls it while planning, before any process
/// or cgroup exists; `Manager::set` checks the rest (files, controllers)
/// before its first write.
pub fn validate(r: &LinuxResources) -> crate::error::Result<()> {
    use crate::error::Error;
    let r = normalize(r);
    let bad = |field: &str, reason: String| {
        Err(Error::InvalidResource {
            field: field.into(),
            reason,
        })
    };
    if let Some(m) = r.memory() {
        for (field, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
            ("memory.kernelTCP", m.kernel_tcp()),
        ] {
            crate::v1::memory::validate_limit(field, v)?;
        }
        crate::v1::memory::validate_swappiness(m.swappiness())?;
    }
    if let Some(c) = r.cpu() {
        for (field, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(list) = v {
                if !is_cpu_list(list) {
                    return bad(field, format!("{list:?} is not a list such as \"0-3,5\""));
                }
            }
        }
        if let Some(q) = c.quota() {
            if q < -1 {
                return bad(
                    "cpu.quota",
                    format!("{q} is negative (use -1 for unlimited)"),
                );
            }
        }
    }
    if let Some(b) = r.block_io() {
        let in_range = |w: Option<u16>| w.map_or(true, |w| (10..=1000).contains(&w));
        if !in_range(b.weight()) {
            return bad(
                "blockIO.weight",
                format!("{} is out of range 10..=1000", b.weight().unwrap_or(0)),
            );
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            if !in_range(d.weight()) {
                return bad(
                    &format!("blockIO.weightDevice[{i}].weight"),
                    format!("{} is out of range 10..=1000", d.weight().unwrap_or(0)),
                );
            }
        }
    }
    if let Some(rules) = r.devices() {
        crate::v2::devices::compile(rules)?;
    }
    Ok(())
}

/// A kernel cpu/mem list: "0", "0-3", "0-3,5,7-8".
fn is_cpu_list(s: &str) -> bool {
    let num = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    s.trim().split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => num(a) && num(b) && a.parse::<u64>().ok() <= b.parse::<u64>().ok(),
        None => num(part),
    })
}

#[cfg(test)]
mod tests {
    use super::validate;

    fn check(json: &str) -> Result<(), String> {
        validate(&serde_json::from_str(json).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn host_independent_checks() {
        assert_eq!(
            check(r#"{"memory": {"limit": -5}}"#).unwrap_err(),
            "linux.resources.memory.limit: -5 is negative (use -1 for unlimited)"
        );
        assert!(check(r#"{"memory": {"swappiness": 101}}"#)
            .unwrap_err()
            .contains("memory.swappiness"));
        assert!(check(r#"{"cpu": {"cpus": "abc"}}"#)
            .unwrap_err()
            .contains("cpu.cpus"));
        assert!(check(r#"{"cpu": {"mems": "3-1"}}"#)
            .unwrap_err()
            .contains("cpu.mems"));
        assert!(check(r#"{"cpu": {"quota": -2}}"#)
            .unwrap_err()
            .contains("cpu.quota"));
        assert!(check(r#"{"blockIO": {"weight": 5}}"#)
            .unwrap_err()
            .contains("blockIO.weight"));
        assert!(check(r#"{"devices": [{"allow": true, "type": "c", "access": "rwx"}]}"#).is_err());
        // What runc accepts passes, zeros included.
        check(r#"{"memory": {"limit": -1, "swap": 0}, "cpu": {"cpus": "0-1,3", "shares": 0, "quota": -1},
                  "blockIO": {"weight": 0}, "pids": {"limit": 0}}"#)
        .unwrap();
    }
}
