//! v1 cpu controller (CFS/RT bandwidth, shares, idle) and cpuacct stats.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::Result;
use crate::fs;
use crate::plan::Plan;
use crate::stats::{CpuUsage, Throttling};

const CTL: &str = "cpu";

pub(crate) fn plan(c: &LinuxCpu, dir: &Path, plan: &mut Plan) -> Result<()> {
    if let Some(s) = c.shares() {
        plan.write(CTL, "cpu.shares", dir, "cpu.shares", s);
    }
    // Period before quota: the new quota is checked against the period.
    if let Some(p) = c.period() {
        plan.write(CTL, "cpu.period", dir, "cpu.cfs_period_us", p);
    }
    if let Some(q) = c.quota() {
        plan.write(CTL, "cpu.quota", dir, "cpu.cfs_quota_us", q);
    }
    if let Some(b) = c.burst() {
        plan.write(CTL, "cpu.burst", dir, "cpu.cfs_burst_us", b);
    }
    // RT period before runtime, for the same reason.
    if let Some(p) = c.realtime_period() {
        plan.write(CTL, "cpu.realtimePeriod", dir, "cpu.rt_period_us", p);
    }
    if let Some(r) = c.realtime_runtime() {
        plan.write(CTL, "cpu.realtimeRuntime", dir, "cpu.rt_runtime_us", r);
    }
    if let Some(i) = c.idle() {
        plan.write(CTL, "cpu.idle", dir, "cpu.idle", i);
    }
    Ok(())
}

pub(crate) fn throttling(dir: &Path) -> Result<Throttling> {
    let s = fs::read_flat_keyed(&dir.join("cpu.stat"))?;
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    Ok(Throttling {
        periods: g("nr_periods"),
        throttled_periods: g("nr_throttled"),
        throttled_time: g("throttled_time"),
    })
}

/// cpuacct: usage (ns), usage_percpu (ns), stat (user/system in USER_HZ ticks).
pub(crate) fn usage(cpuacct: &Path) -> Result<CpuUsage> {
    let total = fs::read_u64_or_zero(&cpuacct.join("cpuacct.usage"))?;
    let percpu = fs::read_opt(&cpuacct.join("cpuacct.usage_percpu"))?
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let stat = fs::read_flat_keyed(&cpuacct.join("cpuacct.stat"))?;
    let ticks_to_ns = |t: u64| t.saturating_mul(1_000_000_000) / clock_ticks();
    Ok(CpuUsage {
        total,
        percpu,
        kernel: ticks_to_ns(stat.get("system").copied().unwrap_or(0)),
        user: ticks_to_ns(stat.get("user").copied().unwrap_or(0)),
        ..Default::default()
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}
