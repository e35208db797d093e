//! `update`: change a container's limits, as `docker update` does: a live
//! container's cgroup at once (through the runtime, which checks the whole
//! change before writing any of it), and for every container the stored
//! configuration, so `inspect` and the next start see the new values; and
//! its restart policy (`--restart`).

use hako_runtime::container;
use oci_spec::runtime::Spec;

use crate::config::CgroupManager;
use crate::dirs::{self, Dirs};
use crate::limits;
use crate::record;
use crate::record::Limits;
use crate::restart::Policy;
use crate::status::status;
use crate::{io_err, util, Error, Result};

/// Changes `name`'s limits `l` and, given, its restart policy (which the
/// monitor reads at the container's next exit).
pub fn update(dirs: &Dirs, name: &str, l: &Limits, restart: Option<&str>) -> Result<String> {
    if l.is_empty() && restart.is_none() {
        return Err(Error::Usage(
            "you must provide one or more flags when using this command".into(),
        ));
    }
    let parsed = restart.map(str::parse::<Policy>).transpose()?;
    let policy = restart.map(str::to_string);
    let res = limits::to_resources(l)?;
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if let Some(p) = parsed {
        if r.opts.rm && p != Policy::No {
            return Err(Error::State {
                id: r.name,
                msg: "is removed when it exits (--rm): its restart policy cannot be changed".into(),
            });
        }
    }
    if l.is_empty() {
        record::update(dirs, &id, |r| r.opts.restart = policy.clone())?;
        return Ok(id);
    }
    if dirs::rootless() && r.cgroup_manager == CgroupManager::Cgroupfs {
        return Err(Error::State {
            id: r.name,
            msg: "has no cgroup to limit: a rootless container gets one only through \
                  systemd's delegation (--cgroup-manager systemd)"
                .into(),
        });
    }
    if status(dirs, &r).is_live() {
        container::update(&dirs.runtime_root(), &id, &res)?;
    }
    // The stored configuration: for inspect and the next start.
    let cfg = record::bundle(dirs, &id).join("config.json");
    let text = std::fs::read(&cfg).map_err(io_err("read", &cfg))?;
    let mut s: Spec = hako_runtime::json_from_slice(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", cfg.display())))?;
    if let Some(linux) = s.linux_mut() {
        let mut all = linux.resources().clone().unwrap_or_default();
        limits::merge(&mut all, &res);
        linux.set_resources(Some(all));
    }
    let json = serde_json::to_string_pretty(&s).expect("a spec serializes");
    util::atomic_write(&cfg, json.as_bytes())?;
    record::update(dirs, &id, |r| {
        r.opts.limits.overlay(l);
        if policy.is_some() {
            r.opts.restart = policy.clone();
        }
    })?;
    Ok(id)
}
