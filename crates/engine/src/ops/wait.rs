//! `wait`.

use std::time::Duration;

use super::stop::wait_exit;
use crate::dirs::Dirs;
use crate::record;
use crate::status::{monitor_alive, status, Status};
use crate::{Error, Result};

/// Why a container's exit code is not known.
pub const UNKNOWN_EXIT: &str = "exit code unknown: the container exited while \
     neither its monitor nor the monitor's keeper was there to collect it \
     (killed, or the host rebooted)";

/// `wait`: block until the container exits; its exit code.
pub fn wait(dirs: &Dirs, name: &str) -> Result<i32> {
    let id = record::resolve(dirs, name)?;
    loop {
        let r = record::load(dirs, &id)?;
        match status(dirs, &r) {
            Status::Exited(_) => {
                wait_exit(dirs, &id, Duration::from_secs(5));
                let r = record::load(dirs, &id)?;
                return r.exit_code.ok_or_else(|| Error::State {
                    id: r.name,
                    msg: UNKNOWN_EXIT.into(),
                });
            }
            Status::Created if !monitor_alive(&r) => {
                return Ok(r.exit_code.unwrap_or(0));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
