//! v1 devices controller: deny everything, then replay the spec's rules in
//! order (a later rule overrides an earlier one, as in the kernel's list).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};
use crate::plan::Plan;

/// Checks a rule and renders it as the kernel's `type major:minor access`.
pub(crate) fn rule_string(idx: usize, r: &LinuxDeviceCgroup) -> Result<String> {
    let field = || format!("devices[{idx}]");
    let access = r.access().clone().unwrap_or_else(|| "rwm".to_string());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::InvalidResource {
            field: field(),
            reason: format!("access {access:?} must be a non-empty subset of \"rwm\""),
        });
    }
    let typ = r.typ().unwrap_or(LinuxDeviceType::A);
    if matches!(typ, LinuxDeviceType::U | LinuxDeviceType::P) {
        return Err(Error::InvalidResource {
            field: field(),
            reason: format!(
                "device type {:?} cannot be used in a cgroup rule",
                typ.as_str()
            ),
        });
    }
    let num = |v: Option<i64>, what: &str| -> Result<String> {
        match v {
            None | Some(-1) => Ok("*".into()),
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(n.to_string()),
            Some(n) => Err(Error::InvalidResource {
                field: field(),
                reason: format!("{what} {n} is out of range"),
            }),
        }
    };
    Ok(format!(
        "{} {}:{} {}",
        typ.as_str(),
        num(r.major(), "major")?,
        num(r.minor(), "minor")?,
        access
    ))
}

pub(crate) fn plan(rules: &[LinuxDeviceCgroup], dir: &Path, plan: &mut Plan) -> Result<()> {
    let rendered = rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_string(i, r))
        .collect::<Result<Vec<_>>>()?;
    // The runtime is expected to include its default allow-list (null, zero,
    // full, tty, random, urandom, ptmx, ...) in `rules`.
    plan.write("devices", "devices", dir, "devices.deny", "a");
    for (i, (r, s)) in rules.iter().zip(rendered).enumerate() {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        plan.write("devices", format!("devices[{i}]"), dir, file, s);
    }
    Ok(())
}
