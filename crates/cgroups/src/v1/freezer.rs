//! v1 freezer: freezer.state is THAWED, FREEZING or FROZEN.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs;
use crate::FreezerState;

const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn state(dir: &Path) -> Result<FreezerState> {
    let s = fs::read_string(&dir.join("freezer.state"))?;
    Ok(match s.trim() {
        "FROZEN" => FreezerState::Frozen,
        "FREEZING" => FreezerState::Freezing,
        _ => FreezerState::Thawed,
    })
}

/// Writes `want` and waits until freezer.state reads it. FREEZING can stall
/// when a task is in an uninterruptible sleep; writing FROZEN again retries
/// the freeze. On timeout the cgroup is thawed so it is not left half frozen.
pub(crate) fn set(dir: &Path, frozen: bool) -> Result<()> {
    let file = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        fs::write_file(&file, want)?;
        let last = fs::read_string(&file)?;
        if last.trim() == want {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            if frozen {
                let _ = fs::write_file(&file, "THAWED");
            }
            return Err(Error::FreezeTimeout {
                path: file,
                want,
                waited_ms: start.elapsed().as_millis(),
                last: last.trim().to_string(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}
