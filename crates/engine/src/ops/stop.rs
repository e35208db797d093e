//! `stop`, `kill` and `restart`, and waiting for a container's end.

use std::time::{Duration, Instant};

use hako_runtime::container;

use super::start;
use crate::dirs::Dirs;
use crate::record::{self, Phase, Record};
use crate::status::{init_alive, keeper_alive, live, monitor_alive, set_frozen, status, Status};
use crate::util;
use crate::Result;

pub(super) fn wait_exit(dirs: &Dirs, id: &str, timeout: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let Ok(r) = record::load(dirs, id) else {
            return true;
        };
        // A live keeper is recording the end of a monitor that died.
        if !init_alive(&r)
            && (r.phase != Phase::Running || !(monitor_alive(&r) || keeper_alive(&r)))
        {
            if r.phase == Phase::Running {
                // The monitor is gone (killed?): record the end ourselves.
                crate::teardown::finish(dirs, id, None);
            }
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn signal(dirs: &Dirs, r: &Record, sig: i32, all: bool) -> Result<()> {
    crate::events::container(dirs, "kill", r, &[("signal", &sig.to_string())]);
    let root = dirs.runtime_root();
    match container::kill(&root, &r.id, sig, all) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The runtime state may be gone while the init lives (crashed
            // monitor): signal by pid, checked by start time.
            if init_alive(r) {
                hako_runtime::os::kill(r.pid, sig).map_err(crate::sys_err("kill"))
            } else {
                Err(e.into())
            }
        }
    }
}

/// `stop [-t]`: the stop signal, then SIGKILL after the grace period.
pub fn stop(dirs: &Dirs, name: &str, timeout: Option<u64>) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    // Marked stopped by the user and signalled under the restart lock, so
    // the restart policy neither brings it back nor slips a new process
    // in between (see crate::restart).
    let r = crate::restart::stopped_by_user(dirs, &id, || -> Result<Option<Record>> {
        let r = record::load(dirs, &id)?;
        if !status(dirs, &r).is_live() {
            return Ok(None);
        }
        if status(dirs, &r) == Status::Paused {
            let _ = container::resume(&dirs.runtime_root(), &id);
            let _ = set_frozen(&r, false);
        }
        let sig = r
            .stop_signal
            .as_deref()
            .and_then(|s| util::parse_signal(s).ok())
            .unwrap_or(libc::SIGTERM);
        let _ = signal(dirs, &r, sig, false);
        Ok(Some(r))
    })??;
    let Some(r) = r else {
        wait_exit(dirs, &id, Duration::from_secs(5));
        wait_restart_decided(dirs, &id);
        return Ok(id);
    };
    let t = timeout.or(r.opts.stop_timeout).unwrap_or(10);
    if !wait_exit(dirs, &id, Duration::from_secs(t)) {
        let _ = signal(dirs, &r, libc::SIGKILL, true);
        wait_exit(dirs, &id, Duration::from_secs(15));
    }
    crate::events::container(dirs, "stop", &r, &[]);
    Ok(id)
}

pub fn kill(dirs: &Dirs, name: &str, sig: i32) -> Result<String> {
    let (id, _) = live(dirs, name)?;
    // A signal that ends a process is the user's stop (the restart policy
    // leaves it ended); others (HUP, USR1) are only delivered.
    if matches!(
        sig,
        libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGQUIT
    ) {
        crate::restart::stopped_by_user(dirs, &id, || {
            let (_, r) = live(dirs, &id)?;
            signal(dirs, &r, sig, false)
        })??;
    } else {
        let _l = crate::restart::lock(dirs, &id)?;
        let (_, r) = live(dirs, &id)?;
        signal(dirs, &r, sig, false)?;
    }
    Ok(id)
}

/// Until a monitor waiting to restart the container has seen the user's
/// stop and ended (it is woken at once; bounded all the same).
pub(super) fn wait_restart_decided(dirs: &Dirs, id: &str) {
    let t0 = Instant::now();
    while record::load(dirs, id).is_ok_and(|r| r.restarting && monitor_alive(&r))
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn restart(dirs: &Dirs, name: &str, timeout: Option<u64>) -> Result<String> {
    let id = stop(dirs, name, timeout)?;
    let _ = record::update(dirs, &id, |r| r.restart_count += 1);
    start(dirs, &id)
}
