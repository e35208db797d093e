//! Undoing a container: what goes when its init has exited (runtime state,
//! cgroup, leases, run dir) and, on removal, everything else.

use hako_runtime::container;

use crate::dirs::Dirs;
use crate::record::{self, Phase};
use crate::util::now_rfc3339_nanos;
use crate::{io_err, Result};

/// What the init's exit leaves to undo, whoever saw it exit: runtime
/// state, the cgroup parent if empty, leases, the run dir. Idempotent.
fn release(dirs: &Dirs, id: &str) {
    let _ = container::delete(&dirs.runtime_root(), id, true);
    hako_runtime::container::remove_empty_group("hako");
    crate::network::release(dirs, id);
    let _ = std::fs::remove_dir_all(dirs.run_container(id));
}

/// After the init is gone: [`release`], then the exit in the record.
pub fn finish(dirs: &Dirs, id: &str, code: Option<i32>) {
    release(dirs, id);
    let _ = record::update(dirs, id, |r| {
        r.phase = Phase::Exited;
        // CRIU ends a checkpointed init with SIGKILL; the container did not
        // fail (podman and Docker show a checkpointed container as exited 0).
        r.exit_code = if r.checkpointing {
            Some(0)
        } else {
            code.or(r.exit_code)
        };
        r.finished_at = Some(now_rfc3339_nanos());
        r.monitor_pid = 0;
        r.restarting = false;
    });
}

/// The end of one run of a container its monitor will restart: as
/// [`finish`], but the monitor stays recorded (it waits to restart it).
pub fn finish_for_restart(dirs: &Dirs, id: &str, code: i32) {
    release(dirs, id);
    let _ = record::update(dirs, id, |r| {
        r.phase = Phase::Exited;
        r.exit_code = Some(code);
        r.finished_at = Some(now_rfc3339_nanos());
        r.restarting = true;
    });
}

/// [`remove_all`], then the container's anonymous volumes (`rm -v`, `--rm`,
/// a failed create), each unless another container uses it.
pub fn remove_all_and_volumes(dirs: &Dirs, id: &str) -> Result<()> {
    let volumes = record::load(dirs, id)
        .map(|r| r.opts.volumes)
        .unwrap_or_default();
    remove_all(dirs, id)?;
    crate::volume::remove_anonymous(dirs, &volumes);
    Ok(())
}

/// Everything of a container goes: [`release`], rootfs, its directory.
/// Idempotent; used by `rm`, `--rm` and failed creates.
pub fn remove_all(dirs: &Dirs, id: &str) -> Result<()> {
    release(dirs, id);
    if let Ok(store) = dirs.image_store() {
        store.remove_rootfs(id)?;
    }
    let _l = record::lock(dirs)?;
    let name = std::fs::read_to_string(dirs.container(id).join(record::NAME));
    match std::fs::remove_dir_all(dirs.container(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("remove", dirs.container(id))(e))
        }
        _ => {
            // After the directory: a crash between leaves a stale entry,
            // which the next claim of the name takes over.
            if let Ok(name) = name {
                record::release_name(dirs, &name, id);
            }
            Ok(())
        }
    }
}
