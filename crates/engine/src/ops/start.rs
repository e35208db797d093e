//! `run`, `start` and `start -a`: a monitor starts the created container.

use std::time::Duration;

use super::stop::wait_exit;
use super::{create, rm};
use crate::attach::parse_detach_keys;
use crate::dirs::Dirs;
use crate::record::{self, Phase, Record, RunOptions};
use crate::status::{monitor_alive, status, Status};
use crate::{io_err, Error, Result};

/// Re-create what a reboot took from a stopped container before it is
/// started again: its rootfs mount (the runtime state, the run root and
/// the network are re-made by the monitor's create and attach).
fn recover_for_start(dirs: &Dirs, r: &Record) -> Result<()> {
    if r.rootfs.as_os_str().is_empty() {
        return Ok(());
    }
    dirs.image_store()?.remount_rootfs(&r.id)?;
    Ok(())
}

/// Start a detached monitor for `id` and wait until it started the container.
pub fn spawn_monitor(dirs: &Dirs, id: &str) -> Result<()> {
    let log = dirs.container(id).join("monitor.log");
    let errf = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log)
            .map_err(io_err("create", &log))?
    };
    let (mut child, msg) =
        crate::util::spawn_reporting(dirs, &["__monitor", id], errf.into(), "the monitor")?;
    if msg == "ok" {
        return Ok(());
    }
    let _ = child.wait();
    let extra = std::fs::read_to_string(&log).unwrap_or_default();
    Err(Error::Other(format!(
        "container {}: {}{}",
        &id[..12],
        msg.trim(),
        if extra.trim().is_empty() || extra.contains(msg.trim()) {
            String::new()
        } else {
            format!(" ({})", extra.trim())
        }
    )))
}

/// `run`: create, then monitor in the foreground or spawn a detached one.
pub fn run(dirs: &Dirs, opts: &RunOptions) -> Result<(String, i32)> {
    if !opts.detach && crate::restart::Policy::of(opts) != crate::restart::Policy::No {
        return Err(Error::Usage(
            "--restart needs -d: the monitor of a detached container restarts it".into(),
        ));
    }
    let fg = crate::monitor::Foreground {
        detach_keys: parse_detach_keys(opts.detach_keys.as_deref().unwrap_or(""))?,
        sig_proxy: opts.sig_proxy.unwrap_or(true),
    };
    let id = create(dirs, opts)?;
    if opts.detach {
        // A run that could not start (a taken port, a network error) leaves
        // no container behind: the user asked for a running one.
        if let Err(e) = spawn_monitor(dirs, &id) {
            let _ = rm(dirs, &id, true, true);
            return Err(e);
        }
        return Ok((id, 0));
    }
    let code = crate::monitor::foreground(dirs, &id, &fg)?;
    if record::load(dirs, &id).is_ok_and(|r| r.started_at.is_none() && r.error.is_some()) {
        let _ = rm(dirs, &id, true, true);
    }
    Ok((id, code))
}

/// `start -a`: run the monitor here, attached; the container's exit code
/// (0 when the user detached). A running container is attached to.
pub fn start_attached(dirs: &Dirs, name: &str, fg: &crate::monitor::Foreground) -> Result<i32> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if status(dirs, &r).is_live() {
        let o = super::AttachOptions {
            detach_keys: fg.detach_keys.clone(),
            sig_proxy: fg.sig_proxy,
            ..Default::default()
        };
        return Ok(match super::attach(dirs, &id, &o)? {
            super::Attached::Exited(c) => c,
            super::Attached::Detached => 0,
            super::Attached::Interrupted(s) => 128 + s,
        });
    }
    if r.phase == Phase::Running && monitor_alive(&r) {
        wait_exit(dirs, &id, Duration::from_secs(10));
    }
    recover_for_start(dirs, &r)?;
    crate::monitor::foreground(dirs, &id, fg)
}

/// `start` (detached).
pub fn start(dirs: &Dirs, name: &str) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    // Under the restart lock: a monitor restarting it, or a stop, is not
    // interleaved with this start (see crate::restart).
    let _l = crate::restart::lock(dirs, &id)?;
    let r = record::load(dirs, &id)?;
    match status(dirs, &r) {
        Status::Running | Status::Paused => return Ok(id),
        _ => {}
    }
    if r.restarting && monitor_alive(&r) {
        return Err(Error::State {
            id: r.name,
            msg: "is restarting (its restart policy starts it again)".into(),
        });
    }
    if r.phase == Phase::Running && monitor_alive(&r) {
        wait_exit(dirs, &id, Duration::from_secs(10));
    }
    recover_for_start(dirs, &r)?;
    // The user starts it: the restart policy applies again.
    record::update(dirs, &id, |r| r.stopped_by_user = false)?;
    spawn_monitor(dirs, &id)?;
    Ok(id)
}

/// `start --all`: what a boot (Docker's daemon start) brings back: every
/// container whose restart policy is `always`, or `unless-stopped` and not
/// stopped by the user, that is not running. Returns the started ids, and
/// the errors of those that failed.
pub fn start_all(dirs: &Dirs) -> (Vec<String>, Vec<(String, Error)>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    let (records, _) = record::scan(dirs);
    for r in records {
        let policy = crate::restart::Policy::of(&r.opts);
        if !policy.starts_at_boot(r.stopped_by_user) || status(dirs, &r).is_live() {
            continue;
        }
        match start(dirs, &r.id) {
            Ok(id) => ok.push(id),
            Err(e) => failed.push((r.name.clone(), e)),
        }
    }
    (ok, failed)
}
