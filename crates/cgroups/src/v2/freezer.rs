//! v2 freezer: cgroup.freeze (write) and the `frozen` key of cgroup.events
//! (read): the write only requests the freeze; it is done when events say so.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs;
use crate::FreezerState;

const TIMEOUT: Duration = Duration::from_secs(5);

fn frozen_event(dir: &Path) -> Result<Option<u64>> {
    Ok(fs::read_flat_keyed(&dir.join("cgroup.events"))?
        .get("frozen")
        .copied())
}

pub(crate) fn state(dir: &Path) -> Result<FreezerState> {
    let Some(want) = fs::read_opt(&dir.join("cgroup.freeze"))? else {
        // Kernels before 5.2 have no v2 freezer: never frozen.
        return Ok(FreezerState::Thawed);
    };
    let frozen = frozen_event(dir)? == Some(1);
    Ok(match (want.trim() == "1", frozen) {
        (true, true) => FreezerState::Frozen,
        (true, false) => FreezerState::Freezing,
        (false, _) => FreezerState::Thawed,
    })
}

pub(crate) fn set(dir: &Path, frozen: bool) -> Result<()> {
    let file = dir.join("cgroup.freeze");
    fs::write_file(&file, if frozen { "1" } else { "0" })?;
    let want = u64::from(frozen);
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        let last = frozen_event(dir)?;
        // No cgroup.events "frozen" key: nothing to wait for.
        if last.is_none() || last == Some(want) {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            if frozen {
                let _ = fs::write_file(&file, "0");
            }
            return Err(Error::FreezeTimeout {
                path: dir.join("cgroup.events"),
                want: if frozen { "frozen 1" } else { "frozen 0" },
                waited_ms: start.elapsed().as_millis(),
                last: format!("frozen {}", last.unwrap_or(0)),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}
