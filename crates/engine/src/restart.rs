//! Restart policies (`--restart`), as Docker's: what the monitor does when
//! a detached container's process ends.
//!
//! The decision and the restart itself happen under the container's
//! restart lock (`restart.lock` in its directory), which `stop`, `kill`
//! and `rm` also take while they mark the container stopped by the user
//! and signal it. So either the user's stop comes first and the monitor
//! sees the mark, or the restart comes first and the stop signals the new
//! process: a stop never lands between the old process and the new one.
//! Between restarts the monitor waits (Docker's backoff: 100 ms, doubling
//! to a minute, back to 100 ms after a run of 10 s or more) on its
//! signalfd, so a stop wakes it at once.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::time::Duration;

use crate::dirs::Dirs;
use crate::{io_err, Error, Result};

/// A restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most N times (0: no limit).
    OnFailure(u32),
    Always,
    /// As `always`, except after the user stopped it (also at boot).
    UnlessStopped,
}

impl FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Usage(format!(
                "--restart {s:?}: use no, on-failure[:MAX], always or unless-stopped"
            ))
        };
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => Policy::No,
            None if s == "always" => Policy::Always,
            None if s == "unless-stopped" => Policy::UnlessStopped,
            None if s == "on-failure" => Policy::OnFailure(0),
            Some(("on-failure", n)) => {
                Policy::OnFailure(n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        })
    }
}

impl Policy {
    /// The policy of a container's options (checked at create).
    pub fn of(opts: &crate::record::RunOptions) -> Policy {
        opts.restart
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }

    /// Restart after an exit with `code`, `restarts` restarts so far?
    pub fn restarts(self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
            Policy::Always | Policy::UnlessStopped => true,
        }
    }

    /// Started at boot by `start --all` (Docker's daemon start): `always`
    /// even after a user's stop, `unless-stopped` only if not stopped.
    pub fn starts_at_boot(self, stopped_by_user: bool) -> bool {
        match self {
            Policy::Always => true,
            Policy::UnlessStopped => !stopped_by_user,
            _ => false,
        }
    }
}

/// The next wait before a restart: doubled from the last (from 100 ms, at
/// most a minute), or 100 ms again after a run of 10 s or more.
pub fn backoff(last: Duration, ran_for: Duration) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    if ran_for >= Duration::from_secs(10) || last.is_zero() {
        return FIRST;
    }
    (last * 2).min(Duration::from_secs(60))
}

/// The container's restart lock, held until dropped.
pub fn lock(dirs: &Dirs, id: &str) -> Result<File> {
    let p = dirs.container(id).join("restart.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_err("open", &p))?;
    // SAFETY: flock on a valid fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("lock", &p)(std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// `stop`, `kill`, `rm`: mark the container stopped by the user (under the
/// restart lock), run `then` (signal it) before anyone restarts it, and
/// wake a monitor waiting to restart it so it sees the mark.
pub fn stopped_by_user<T>(dirs: &Dirs, id: &str, then: impl FnOnce() -> T) -> Result<T> {
    let _l = lock(dirs, id)?;
    let r = crate::record::update(dirs, id, |r| r.stopped_by_user = true)?;
    let out = then();
    if r.restarting && crate::status::monitor_alive(&r) {
        let _ = hako_runtime::os::kill(r.monitor_pid, libc::SIGUSR1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_dockers() {
        assert_eq!("no".parse::<Policy>().unwrap(), Policy::No);
        assert_eq!("always".parse::<Policy>().unwrap(), Policy::Always);
        assert_eq!(
            "unless-stopped".parse::<Policy>().unwrap(),
            Policy::UnlessStopped
        );
        assert_eq!(
            "on-failure".parse::<Policy>().unwrap(),
            Policy::OnFailure(0)
        );
        assert_eq!(
            "on-failure:3".parse::<Policy>().unwrap(),
            Policy::OnFailure(3)
        );
        for bad in ["sometimes", "on-failure:0", "on-failure:x", "always:2"] {
            let e = bad.parse::<Policy>().unwrap_err().to_string();
            assert!(e.contains("--restart"), "{e}");
        }
    }

    #[test]
    fn who_restarts() {
        assert!(!Policy::No.restarts(1, 0, false));
        assert!(Policy::OnFailure(3).restarts(1, 2, false));
        assert!(!Policy::OnFailure(3).restarts(1, 3, false), "three at most");
        assert!(
            !Policy::OnFailure(3).restarts(0, 0, false),
            "not after success"
        );
        assert!(Policy::OnFailure(0).restarts(1, 1000, false));
        assert!(Policy::Always.restarts(0, 1000, false));
        assert!(!Policy::Always.restarts(0, 1, true), "a user's stop wins");
        assert!(Policy::Always.starts_at_boot(true));
        assert!(!Policy::UnlessStopped.starts_at_boot(true));
        assert!(Policy::UnlessStopped.starts_at_boot(false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..12 {
            d = backoff(d, short);
            seen.push(d.as_millis());
        }
        assert_eq!(&seen[..4], &[100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap(), 60_000);
        assert_eq!(
            backoff(Duration::from_secs(60), Duration::from_secs(10)).as_millis(),
            100
        );
    }
}
