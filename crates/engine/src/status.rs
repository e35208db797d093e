//! What state a container is in, derived from its record, the runtime and
//! /proc: the one place every verb and the monitor ask.

use hako_runtime::container;

use crate::dirs::Dirs;
use crate::record::{self, Phase, Record};
use crate::{util, Error, Result};

/// The status `ps` shows, derived from the record, the runtime and /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited(Option<i32>),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited(_) => "exited",
        }
    }
    pub fn is_live(&self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

pub fn monitor_alive(r: &Record) -> bool {
    util::pid_alive(r.monitor_pid, r.monitor_start)
}

/// The monitor's parent that outlives it to record the exit code (see
/// [`crate::monitor::keep`]).
pub fn keeper_alive(r: &Record) -> bool {
    util::pid_alive(r.keeper_pid, r.keeper_start)
}

pub fn init_alive(r: &Record) -> bool {
    util::pid_alive(r.pid, r.pid_start)
}

/// The record of a container that must be running (or paused): its id and
/// record, or "NAME is not running".
pub fn live(dirs: &Dirs, name: &str) -> Result<(String, Record)> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if !status(dirs, &r).is_live() {
        return Err(Error::State {
            id: r.name,
            msg: "is not running".into(),
        });
    }
    Ok((id, r))
}

pub fn status(dirs: &Dirs, r: &Record) -> Status {
    match r.phase {
        Phase::Created => Status::Created,
        Phase::Exited => Status::Exited(r.exit_code),
        Phase::Running => {
            if !init_alive(r) {
                return Status::Exited(r.exit_code);
            }
            // The runtime's state says; only without one is the cgroup
            // asked (which reads the mount table: asked for every running
            // container, `ps` grew quadratic with their mounts).
            let paused = match container::state_json(&dirs.runtime_root(), &r.id) {
                Ok(v) => v["status"] == "paused",
                Err(_) => frozen(r),
            };
            if paused {
                return Status::Paused;
            }
            Status::Running
        }
    }
}

/// The container's cgroup is frozen (asked of the runtime's cgroup code by
/// pid, v1 or v2: the fallback when its runtime state is gone).
fn frozen(r: &Record) -> bool {
    hako_runtime::container::process_frozen(r.pid)
}

/// Freeze or thaw the container's cgroup by its init's pid (v1 or v2),
/// when its runtime state is gone.
pub fn set_frozen(r: &Record, on: bool) -> Result<()> {
    hako_runtime::container::freeze_process(r.pid, on).map_err(|e| Error::State {
        id: r.name.clone(),
        msg: e.to_string(),
    })
}
