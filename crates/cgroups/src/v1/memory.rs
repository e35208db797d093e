//! v1 memory controller: memory.limit_in_bytes, memory.memsw.* (swap),
//! soft limit, tcp kmem, swappiness, oom_control.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::{Memory, MemoryEntry};

const CTL: &str = "memory";

pub(crate) fn validate_limit(field: &str, v: Option<i64>) -> Result<()> {
    match v {
        Some(v) if v < -1 => Err(Error::InvalidResource {
            field: field.into(),
            reason: format!("{v} is negative (use -1 for unlimited)"),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn validate_swappiness(v: Option<u64>) -> Result<()> {
    match v {
        Some(v) if v > 100 => Err(Error::InvalidResource {
            field: "memory.swappiness".into(),
            reason: format!("{v} is out of range 0..=100"),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn plan(m: &LinuxMemory, dir: &Path, plan: &mut Plan) -> Result<()> {
    validate_limit("memory.limit", m.limit())?;
    validate_limit("memory.reservation", m.reservation())?;
    validate_limit("memory.swap", m.swap())?;
    validate_limit("memory.kernelTCP", m.kernel_tcp())?;
    validate_swappiness(m.swappiness())?;

    let limit = m.limit();
    // swap = 0 means "unset" as in runc; unlimited memory with swap unset
    // means both unlimited (memsw must always be >= the memory limit).
    let swap = match m.swap() {
        Some(0) | None if limit == Some(-1) => Some(-1),
        Some(0) => None,
        s => s,
    };
    if let (Some(l), Some(s)) = (limit, swap) {
        if l != -1 && s != -1 && s < l {
            return Err(Error::InvalidResource {
                field: "memory.swap".into(),
                reason: format!("memory+swap limit {s} must be >= memory limit {l}"),
            });
        }
    }

    let limit_file = "memory.limit_in_bytes";
    let swap_file = "memory.memsw.limit_in_bytes";
    // Without swap accounting memsw does not exist; "unlimited" then asks
    // for nothing the host does not already do (runc is lenient here too).
    let swap = if swap == Some(-1) && !dir.join(swap_file).exists() {
        None
    } else {
        swap
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel insists memsw >= limit after every single write, so
            // the order depends on the current limit: raising memsw first is
            // only valid if it stays >= the current memory limit.
            let cur = fs::read_opt(&dir.join(limit_file))?
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if s == -1 || cur < s as u64 {
                plan.write(CTL, "memory.swap", dir, swap_file, s);
                plan.write(CTL, "memory.limit", dir, limit_file, l);
            } else {
                plan.write(CTL, "memory.limit", dir, limit_file, l);
                plan.write(CTL, "memory.swap", dir, swap_file, s);
            }
        }
        (Some(l), None) => plan.write(CTL, "memory.limit", dir, limit_file, l),
        (None, Some(s)) => plan.write(CTL, "memory.swap", dir, swap_file, s),
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        plan.write(
            CTL,
            "memory.reservation",
            dir,
            "memory.soft_limit_in_bytes",
            r,
        );
    }
    // memory.kmem.limit_in_bytes is deprecated and rejected by Linux >= 5.16;
    // like runc, `kernel` is ignored.
    if let Some(k) = m.kernel_tcp() {
        plan.write(
            CTL,
            "memory.kernelTCP",
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            k,
        );
    }
    if let Some(s) = m.swappiness() {
        plan.write(CTL, "memory.swappiness", dir, "memory.swappiness", s);
    }
    if m.disable_oom_killer() == Some(true) {
        plan.write(CTL, "memory.disableOOMKiller", dir, "memory.oom_control", 1);
    }
    Ok(())
}

fn entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    let f = |s: &str| fs::read_u64_or_zero(&dir.join(format!("{prefix}.{s}")));
    Ok(MemoryEntry {
        limit: f("limit_in_bytes")?,
        usage: f("usage_in_bytes")?,
        max: f("max_usage_in_bytes")?,
        failcnt: f("failcnt")?,
    })
}

pub(crate) fn stats(dir: &Path) -> Result<Memory> {
    let raw = fs::read_flat_keyed(&dir.join("memory.stat"))?;
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: entry(dir, "memory")?,
        swap: entry(dir, "memory.memsw")?,
        kernel: entry(dir, "memory.kmem")?,
        kernel_tcp: entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

/// `oom_kill N` from memory.oom_control (Linux >= 4.13).
pub(crate) fn oom_kill_count(dir: &Path) -> Result<u64> {
    let p = dir.join("memory.oom_control");
    Ok(fs::parse_flat_keyed(&fs::read_string(&p)?)
        .get("oom_kill")
        .copied()
        .unwrap_or(0))
}

/// Registers an eventfd for OOM events through cgroup.event_control
/// ("<eventfd> <fd of memory.oom_control>"). The kernel keeps its own
/// reference to memory.oom_control, so only the eventfd is returned; it
/// becomes readable (8-byte counter) on each OOM in the cgroup.
pub(crate) fn oom_eventfd(dir: &Path) -> Result<OwnedFd> {
    let control = dir.join("memory.oom_control");
    let oom = std::fs::File::open(&control).map_err(|source| Error::Read {
        path: control.clone(),
        source,
    })?;
    // SAFETY: eventfd(2) takes no pointers; a negative return is an error.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(Error::Notify {
            what: "eventfd".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: efd was just returned by eventfd(2) and is owned by nobody else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    fs::write_file(
        &dir.join("cgroup.event_control"),
        &format!("{} {}", efd.as_raw_fd(), oom.as_raw_fd()),
    )?;
    Ok(efd)
}
