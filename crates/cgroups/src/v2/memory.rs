//! v2 memory controller: memory.max/low/swap.max, memory.events.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::convert;
use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::{Memory, MemoryEntry};
use crate::v1::memory::{validate_limit, validate_swappiness};

const CTL: &str = "memory";

pub(crate) fn plan(m: &LinuxMemory, dir: &Path, plan: &mut Plan) -> Result<()> {
    validate_limit("memory.limit", m.limit())?;
    validate_limit("memory.reservation", m.reservation())?;
    validate_limit("memory.swap", m.swap())?;
    validate_swappiness(m.swappiness())?;
    let swap = convert::v2_swap(m.swap(), m.limit()).map_err(|reason| Error::InvalidResource {
        field: "memory.swap".into(),
        reason,
    })?;
    // memory.swap.max and memory.max are independent in v2; swap first as
    // runc does, so a lowered total never transiently allows more swap.
    if let Some(s) = swap {
        // Without swap accounting memory.swap.max is absent: "max" or "0"
        // then ask for nothing the host does not already do (as runc).
        if dir.join("memory.swap.max").exists() || (s != "max" && s != "0") {
            plan.write(CTL, "memory.swap", dir, "memory.swap.max", s);
        }
    }
    if let Some(l) = m.limit() {
        plan.write(CTL, "memory.limit", dir, "memory.max", convert::v2_limit(l));
    }
    if let Some(r) = m.reservation() {
        plan.write(
            CTL,
            "memory.reservation",
            dir,
            "memory.low",
            convert::v2_limit(r),
        );
    }
    // Not representable on v2, ignored like runc and crun do: kernel,
    // kernelTCP (kernel memory is always accounted), swappiness (only the
    // global vm.swappiness exists) and disableOOMKiller (no per-cgroup
    // switch; memory.oom.group is a different knob).
    Ok(())
}

fn read(dir: &Path, f: &str) -> Result<u64> {
    fs::read_u64_or_zero(&dir.join(f))
}

pub(crate) fn stats(dir: &Path) -> Result<Memory> {
    let raw = fs::read_flat_keyed(&dir.join("memory.stat"))?;
    let events = fs::read_flat_keyed(&dir.join("memory.events"))?;
    let usage = MemoryEntry {
        usage: read(dir, "memory.current")?,
        limit: read(dir, "memory.max")?,
        max: read(dir, "memory.peak")?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // v1 reports swap as memory+swap; do the same so consumers of runc's
    // JSON see one meaning (runc does this too).
    let swap_limit = read(dir, "memory.swap.max")?;
    let swap = MemoryEntry {
        usage: read(dir, "memory.swap.current")?.saturating_add(usage.usage),
        limit: if swap_limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit.saturating_add(usage.limit)
        },
        max: read(dir, "memory.swap.peak")?,
        failcnt: fs::read_flat_keyed(&dir.join("memory.swap.events"))?
            .get("max")
            .copied()
            .unwrap_or(0),
    };
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry {
            usage: raw.get("kernel").copied().unwrap_or(0),
            ..Default::default()
        },
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

pub(crate) fn oom_kill_count(dir: &Path) -> Result<u64> {
    let p = dir.join("memory.events");
    Ok(fs::parse_flat_keyed(&fs::read_string(&p)?)
        .get("oom_kill")
        .copied()
        .unwrap_or(0))
}

/// An inotify fd watching memory.events: it becomes readable whenever any
/// memory event counter changes (the kernel emits a modify event). The
/// caller then compares `oom_kill_count()` with the last value it saw.
pub(crate) fn oom_inotify(dir: &Path) -> Result<OwnedFd> {
    let events = dir.join("memory.events");
    if !events.exists() {
        return Err(Error::MissingFile {
            field: "oom notification".into(),
            path: events,
            hint: "the memory controller is not enabled for this cgroup".into(),
        });
    }
    let notify_err = |what: &str| Error::Notify {
        what: format!("{what} {}", events.display()),
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: inotify_init1 takes no pointers; a negative return is an error.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(notify_err("inotify_init1 for"));
    }
    // SAFETY: fd was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cpath = std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::Notify {
            what: format!("path {} contains NUL", events.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        }
    })?;
    // SAFETY: `fd` is a valid inotify fd and `cpath` a NUL-terminated string
    // that outlives the call.
    let wd = unsafe {
        libc::inotify_add_watch(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            cpath.as_ptr(),
            libc::IN_MODIFY,
        )
    };
    if wd < 0 {
        return Err(notify_err("inotify_add_watch"));
    }
    Ok(fd)
}
