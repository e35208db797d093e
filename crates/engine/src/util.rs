//! Small helpers: file locks, ids, time stamps, atomic writes, signals.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{io_err, Error, Result};

/// An exclusive flock held until drop.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn exclusive(path: &Path) -> Result<Lock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock", path))?;
        loop {
            // SAFETY: the fd is open for the call; flock has no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("lock", path)(e));
            }
        }
        Ok(Lock { _file: file })
    }
}

/// 64 hex digits from the kernel's random pool.
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err("read", "/dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// RFC 3339 with nanoseconds, UTC (as Docker's log lines).
pub fn now_rfc3339_nanos() -> String {
    hako_runtime::now_rfc3339()
}

/// Seconds since the epoch of an RFC 3339 stamp.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

/// "3 minutes ago" from a stamp.
pub fn ago(stamp: &str) -> String {
    let Some(t) = parse_rfc3339(stamp) else {
        return String::new();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = (now - t).max(0);
    match s {
        0..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

/// Replace `path` with `data`, owner-only (0600: configs carry `-e`
/// secrets), through the runtime's one atomic write (fsynced file, rename,
/// fsynced directory).
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_as(path, data, hako_runtime::os::Durability::Durable)
}

/// [`atomic_write`], synced or not as `how` says (a `--rm` container's
/// files: `record::durability`).
pub fn atomic_write_as(path: &Path, data: &[u8], how: hako_runtime::os::Durability) -> Result<()> {
    Ok(hako_runtime::os::atomic_write(path, data, 0o600, how)?)
}

/// `hako ARGS…` (this binary, with the engine's directories) in a session
/// of its own, stdin null, `stderr` as given, stdout a pipe on which it
/// reports "ok" once it is ready (or why not) and then closes: the child
/// and its report, read to that close. The monitor and the networks' name
/// servers start this way.
pub fn spawn_reporting(
    dirs: &crate::dirs::Dirs,
    args: &[&str],
    stderr: std::process::Stdio,
    what: &str,
) -> Result<(std::process::Child, String)> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut cmd =
        hako_runtime::self_command().map_err(|e| crate::Error::Other(format!("find hako: {e}")))?;
    cmd.args(args)
        .env("HAKO_DATA_DIR", &dirs.data)
        .env("HAKO_RUN_DIR", &dirs.run)
        .env(
            "GLIBC_TUNABLES",
            long_lived_tunables(std::env::var_os("GLIBC_TUNABLES")),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe; the closure touches no memory
    // shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| crate::Error::Other(format!("start {what}: {e}")))?;
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut msg);
    }
    Ok((child, msg.trim().to_string()))
}

/// glibc's settings for the helpers that live as long as what they serve
/// (a container's monitor, a network's name server), where every resident
/// page is paid once per container or network; the caller's own come
/// first. One arena: the short-lived thread of a network-namespace call
/// would otherwise keep a 64 KiB arena top that malloc_trim never returns.
/// A fixed mmap threshold: the setup's large temporaries (spec, smaps
/// text, buffers) are mapped and unmapped whole instead of leaving holes
/// between small long-lived objects (glibc raises the threshold after each
/// such free by default). No per-thread cache of freed chunks: it keeps up
/// to seven of each size to 1 KiB, ~60 KiB of a monitor's start-up garbage
/// scattered over its heap, which malloc_trim cannot return, and only a
/// tunable turns it off (mallopt has no parameter for it). Measured: a
/// detached monitor's heap from 188 to 28 KiB resident (docs/benchmarks.md,
/// "The monitor under 1 MiB"). As tunables, all three hold from the
/// process's first allocation.
fn long_lived_tunables(caller: Option<std::ffi::OsString>) -> std::ffi::OsString {
    let mut v = caller.unwrap_or_default();
    if !v.is_empty() {
        v.push(":");
    }
    v.push(
        "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=32768:glibc.malloc.tcache_count=0",
    );
    v
}

/// A Go duration (`90s`, `1m30s`, `500ms`, `1h`): numbers with h, m, s,
/// ms, us, ns units; `None` if it is not one.
pub fn parse_go_duration(v: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        any = true;
    }
    if !any || !num.is_empty() {
        return None;
    }
    Some(std::time::Duration::from_nanos(total as u64))
}

pub fn parse_signal(s: &str) -> Result<i32> {
    hako_runtime::parse_signal(s).map_err(Error::Usage)
}

/// "512m", "1g", "1048576" → bytes (hako_cgroups' one size parser).
pub fn parse_bytes(s: &str) -> Result<i64> {
    hako_runtime::parse_size(s).map_err(Error::Usage)
}

/// Is a process alive and the same one (by its start time)?
pub fn pid_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match hako_runtime::os::proc_stat(pid) {
        Some(st) => st.state != 'Z' && (start_time == 0 || st.start_time == start_time),
        None => false,
    }
}

pub fn proc_start_time(pid: i32) -> u64 {
    hako_runtime::os::proc_stat(pid).map_or(0, |s| s.start_time)
}

/// Standard input, output and error onto /dev/null, for a process that
/// goes on in the background and must not hold its caller's terminal or
/// pipes (a reader of `$(hako …)` waits for every writer). Best effort.
pub fn stdio_to_null() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for n in 0..3 {
            let _ = hako_runtime::os::dup2(null.as_raw_fd(), n);
        }
    }
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid out array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(crate::sys_err("pipe2")(std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned these two fresh fds; we own them.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Runs `child` in a forked child (which then `_exit`s) and `parent`
/// here meanwhile; the child's error (its message, through a pipe) or
/// failure is the result, else the parent's. Fork only from one thread:
/// the child may allocate.
pub fn in_fork(
    child: impl FnOnce() -> std::io::Result<()>,
    parent: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let (err_r, err_w) = pipe().map_err(std::io::Error::other)?;
    match hako_runtime::os::fork()? {
        None => {
            drop(err_r);
            let code = match child() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::File::from(err_w).write_all(e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the forked child without running the
            // parent's destructors or atexit handlers twice.
            unsafe { libc::_exit(code) }
        }
        Some(pid) => {
            drop(err_w);
            let res = parent();
            let mut msg = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
            let status = hako_runtime::os::waitpid(pid, 0)?;
            if !msg.is_empty() {
                return Err(std::io::Error::other(msg));
            }
            if status.is_some_and(|s| s != 0) {
                return Err(std::io::Error::other("the child process failed"));
            }
            res
        }
    }
}

/// A close-on-exec copy of `fd` numbered 10 or above.
pub fn dup_high(fd: i32) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one or -1.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(crate::sys_err(format!("dup fd {fd}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: n is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

pub fn set_nonblock(fd: i32) {
    // SAFETY: fcntl on an fd we hold; failures leave the fd blocking.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// Whether fd 1 is a pipe whose reader has gone (`hako logs -f X | head`):
/// a command that waits for something to print notices it without
/// writing.
pub fn stdout_closed() -> bool {
    let mut p = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one pollfd we own, a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_get_no_malloc_cache_after_the_callers_tunables() {
        let ours = "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=32768:glibc.malloc.tcache_count=0";
        assert_eq!(long_lived_tunables(None), ours);
        assert_eq!(
            long_lived_tunables(Some("glibc.malloc.check=3".into())),
            std::ffi::OsString::from(format!("glibc.malloc.check=3:{ours}"))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("x").is_err());
    }

    #[test]
    fn time_round_trip() {
        let s = now_rfc3339_nanos();
        let t = parse_rfc3339(&s).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - t).abs() <= 1, "{s}");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:01Z"), Some(951_868_801));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
    }
}
