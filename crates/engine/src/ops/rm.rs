//! `rm [-f]`.

use std::time::{Duration, Instant};

use hako_runtime::container;

use super::stop::{signal, wait_exit};
use crate::dirs::Dirs;
use crate::record;
use crate::status::{set_frozen, status, Status};
use crate::teardown::{remove_all, remove_all_and_volumes};
use crate::util;
use crate::{Error, Result};

/// `rm [-f] [-v]`: with `volumes`, its anonymous volumes go too.
pub fn rm(dirs: &Dirs, name: &str, force: bool, volumes: bool) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    let rec = record::load(dirs, &id).ok();
    if let Ok(r) = record::load(dirs, &id) {
        let restarting = r.restarting && crate::status::monitor_alive(&r);
        if (status(dirs, &r).is_live() || restarting) && !force {
            return Err(Error::State {
                id: r.name,
                msg: if restarting {
                    "is restarting: stop it first or use rm -f".into()
                } else {
                    "is running: stop it first or use rm -f".into()
                },
            });
        }
        // Marked and killed under the restart lock: nothing restarts it.
        crate::restart::stopped_by_user(dirs, &id, || {
            let Ok(r) = record::load(dirs, &id) else {
                return;
            };
            let st = status(dirs, &r);
            if st.is_live() {
                if st == Status::Paused {
                    let _ = container::resume(&dirs.runtime_root(), &id);
                    let _ = set_frozen(&r, false);
                }
                let _ = signal(dirs, &r, libc::SIGKILL, true);
            }
        })?;
        wait_exit(dirs, &id, Duration::from_secs(15));
        super::stop::wait_restart_decided(dirs, &id);
    } else if !force && record::exists(&dirs.container(&id)) {
        return Err(Error::State {
            id,
            msg: "has a corrupt record: remove it with rm -f".into(),
        });
    } else {
        kill_unrecorded(dirs, &id);
    }
    if volumes {
        remove_all_and_volumes(dirs, &id)?;
    } else {
        remove_all(dirs, &id)?;
    }
    if let Some(r) = rec {
        crate::events::container(dirs, "destroy", &r, &[]);
    }
    Ok(id)
}

/// A container without a readable record may still run: its init is found
/// through the runtime's state, killed, and waited for (its monitor then
/// finds no record to update and exits).
fn kill_unrecorded(dirs: &Dirs, id: &str) {
    let root = dirs.runtime_root();
    let Ok(st) = container::state_json(&root, id) else {
        return;
    };
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    let _ = container::kill(&root, id, libc::SIGKILL, true);
    let t0 = Instant::now();
    while util::pid_alive(pid, 0) && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
}
