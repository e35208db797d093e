//! v2 cpu controller: cpu.weight, cpu.max, cpu.max.burst, cpu.idle, cpu.stat.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::convert;
use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::Cpu;

const CTL: &str = "cpu";

pub(crate) fn plan(c: &LinuxCpu, dir: &Path, plan: &mut Plan) -> Result<()> {
    for (field, v) in [
        ("cpu.realtimeRuntime", c.realtime_runtime().unwrap_or(0)),
        (
            "cpu.realtimePeriod",
            c.realtime_period().unwrap_or(0) as i64,
        ),
    ] {
        if v != 0 {
            return Err(Error::InvalidResource {
                field: field.into(),
                reason: "realtime scheduling limits are not supported on cgroup v2".into(),
            });
        }
    }
    if let Some(s) = c.shares() {
        let w = convert::shares_to_weight(s);
        if w != 0 {
            plan.write(CTL, "cpu.shares", dir, "cpu.weight", w);
        }
    }
    // "$QUOTA $PERIOD"; "max" alone keeps the current period.
    if c.quota().is_some() || c.period().is_some() {
        let mut v = match c.quota() {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        if let Some(p) = c.period() {
            if p != 0 {
                v = format!("{v} {p}");
            }
        }
        // One file holds both: name what was given, so a refused period
        // is reported as the period.
        let field = match (c.quota().is_some(), c.period().is_some()) {
            (true, true) => "cpu.quota/cpu.period",
            (false, true) => "cpu.period",
            _ => "cpu.quota",
        };
        plan.write(CTL, field, dir, "cpu.max", v);
    }
    if let Some(b) = c.burst() {
        plan.write(CTL, "cpu.burst", dir, "cpu.max.burst", b);
    }
    if let Some(i) = c.idle() {
        plan.write(CTL, "cpu.idle", dir, "cpu.idle", i);
    }
    Ok(())
}

/// cpu.stat is present (usage part) even without the cpu controller.
pub(crate) fn stats(dir: &Path) -> Result<Cpu> {
    let s = fs::read_flat_keyed(&dir.join("cpu.stat"))?;
    let us = |k: &str| s.get(k).copied().unwrap_or(0).saturating_mul(1000);
    let mut cpu = Cpu::default();
    cpu.usage.total = us("usage_usec");
    cpu.usage.user = us("user_usec");
    cpu.usage.kernel = us("system_usec");
    cpu.throttling.periods = s.get("nr_periods").copied().unwrap_or(0);
    cpu.throttling.throttled_periods = s.get("nr_throttled").copied().unwrap_or(0);
    cpu.throttling.throttled_time = us("throttled_usec");
    Ok(cpu)
}
