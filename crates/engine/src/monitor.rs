//! The per-container monitor: the same binary (`hako __monitor ID`, or the
//! foreground `hako run` itself). It
//!
//! 1. becomes a child subreaper, so the container's init is its child;
//! 2. points its fds 0/1/2 at pipes (or passes a console socket for `-t`)
//!    around `create`, because the runtime's init inherits the caller's
//!    stdio;
//! 3. attaches the network to the created init, then `start`s it;
//! 4. copies output to the log (JSON lines with timestamps) and, when
//!    attached, to the terminal; forwards signals when attached;
//! 5. reaps, records exit code and time, deletes the runtime state,
//!    releases the network, and does `--rm` cleanup.
//!
//! No async runtime and no image store here: the monitor stays small.
//!
//! ## The keeper: exit codes survive a dead monitor
//!
//! Only a parent learns a child's exit status, and an orphan is
//! re-parented to its nearest *ancestor* that is a child subreaper (else
//! to PID 1, which reaps it and throws the status away). So nothing that
//! starts later (`hako wait`, `ps`) can take over as reaper: the process
//! that is to collect the code must already be an ancestor of the
//! container's init. Hence every monitor runs under a **keeper**, its
//! parent, a child subreaper that does nothing but wait:
//!
//! - detached (`hako __monitor ID`): the process forks first thing; the
//!   child is the monitor, the parent the keeper (a forked copy that then
//!   only sleeps in `wait`, its memory shared with or given back);
//! - foreground (`run`, `start -a`): the CLI spawns `hako __monitor
//!   --attached ID` on the same terminal and is its keeper; it forwards
//!   the signals sent to it. Killing the CLI no longer orphans the
//!   container: the monitor outlives it, records the exit and does the
//!   `--rm` cleanup.
//!
//! If the monitor dies (SIGKILL, OOM), the init is re-parented to the
//! keeper, which reaps it and records the real code (and does `--rm`).
//! Only if both die is the code lost; it then reads as unknown (ExitCode
//! -1 and an Error in inspect, `Exited (unknown)` in ps, `wait` fails).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;

use hako_runtime::container::{self, CreateOpts};
use hako_runtime::os;

use crate::dirs::Dirs;
use crate::record::{self, Phase};
use crate::util::{self, now_rfc3339_nanos};

use crate::{Error, Result};

/// Appends JSON lines `{"time","stream","log"}`; splits at newlines.
pub struct LogWriter {
    file: Option<File>,
    partial: [Vec<u8>; 2],
    path: std::path::PathBuf,
    cfg: LogConfig,
    /// Bytes in the current file.
    size: u64,
}

/// `--log-driver` and `--log-opt`, as Docker's json-file driver takes
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `--log-driver none`: nothing is kept.
    pub none: bool,
    /// Rotate the file at this size.
    pub max_size: Option<u64>,
    /// Files kept in all, the current one included (rotated ones are
    /// `container.log.1` (the newest) … `.N-1`).
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            none: false,
            max_size: None,
            max_files: 1,
        }
    }
}

impl LogConfig {
    /// The container's logging flags, or one usage error naming the bad one.
    pub fn of(o: &crate::record::RunOptions) -> Result<LogConfig> {
        let usage = |m: String| Error::Usage(m);
        let none = match o.log_driver.as_deref() {
            None | Some("json-file" | "k8s-file") => false,
            Some("none") => true,
            Some(d) => {
                return Err(usage(format!(
                    "--log-driver {d}: json-file (k8s-file) or none"
                )))
            }
        };
        let mut c = LogConfig {
            none,
            ..Default::default()
        };
        for opt in &o.log_opt {
            match opt.split_once('=') {
                Some(("max-size", v)) => {
                    let n = crate::util::parse_bytes(v)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| usage(format!("--log-opt {opt}: not a size")))?;
                    c.max_size = Some(n as u64);
                }
                Some(("max-file", v)) => {
                    c.max_files =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            usage(format!("--log-opt {opt}: not a count of files"))
                        })?;
                }
                _ => {
                    return Err(usage(format!(
                        "--log-opt {opt}: max-size=SIZE or max-file=N"
                    )))
                }
            }
        }
        if c.max_files > 1 && c.max_size.is_none() {
            return Err(usage("--log-opt max-file needs max-size".into()));
        }
        Ok(c)
    }
}

/// The `n`-th rotated log file of `path` (`container.log.N`).
fn rotated(path: &std::path::Path, n: u32) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    std::path::PathBuf::from(p)
}

/// The rotated log files of `path`, oldest first (`container.log.2`,
/// `container.log.1`), then `path` itself: the order `logs` reads them in.
pub fn log_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    v.reverse();
    v.push(path.to_path_buf());
    v
}

impl LogWriter {
    pub fn open(path: &std::path::Path, cfg: LogConfig) -> LogWriter {
        let file = if cfg.none {
            None
        } else {
            Self::open_file(path)
        };
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogWriter {
            file,
            partial: [Vec::new(), Vec::new()],
            path: path.to_path_buf(),
            cfg,
            size,
        }
    }

    fn open_file(path: &std::path::Path) -> Option<File> {
        use std::os::unix::fs::OpenOptionsExt;
        // Owner-only: the container's output is nobody else's to read.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .ok()
    }

    /// The current file becomes `.1` (the others move up one, the oldest
    /// beyond max-file goes), and a new one starts.
    fn rotate(&mut self) {
        let name = |n: u32| rotated(&self.path, n);
        let keep = self.cfg.max_files.saturating_sub(1);
        if keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(name(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        self.file = Self::open_file(&self.path);
        self.size = 0;
    }

    fn emit(&mut self, stream: usize, line: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let mut out = Vec::with_capacity(line.len() + 80);
        encode_line(&mut out, stream, line, std::time::SystemTime::now());
        if self
            .cfg
            .max_size
            .is_some_and(|m| self.size > 0 && self.size + out.len() as u64 > m)
        {
            self.rotate();
        }
        if let Some(f) = &mut self.file {
            if f.write_all(&out).is_ok() {
                self.size += out.len() as u64;
            }
        }
    }

    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i + 1;
            self.emit(stream, &buf[start..end]);
            start = end;
        }
        let rest = buf[start..].to_vec();
        // Docker splits long lines at 16 KiB.
        if rest.len() >= 16 * 1024 {
            self.emit(stream, &rest);
        } else {
            self.partial[stream] = rest;
        }
    }

    pub fn flush(&mut self) {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.emit(s, &rest);
            }
        }
    }
}

fn push_num(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let used = digits.len() - i;
    for _ in used..width {
        out.push(b'0');
    }
    out.extend_from_slice(&digits[i..]);
}

/// One log line, `{"time":"…","stream":"stdout","log":"…"}\n`, encoded by
/// hand: the monitor's steady state then touches little code (no fmt, no
/// serde), which keeps its resident set small.
pub fn encode_line(out: &mut Vec<u8>, stream: usize, line: &[u8], now: std::time::SystemTime) {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let date = chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .date_naive();
    let (y, m, day) = {
        use chrono::Datelike;
        (date.year(), date.month(), date.day())
    };
    let rem = secs % 86400;
    out.extend_from_slice(b"{\"time\":\"");
    push_num(out, y as u64, 4);
    out.push(b'-');
    push_num(out, u64::from(m), 2);
    out.push(b'-');
    push_num(out, u64::from(day), 2);
    out.push(b'T');
    push_num(out, rem / 3600, 2);
    out.push(b':');
    push_num(out, rem % 3600 / 60, 2);
    out.push(b':');
    push_num(out, rem % 60, 2);
    out.push(b'.');
    push_num(out, u64::from(d.subsec_nanos()), 9);
    out.extend_from_slice(if stream == 0 {
        b"Z\",\"stream\":\"stdout\",\"log\":\""
    } else {
        b"Z\",\"stream\":\"stderr\",\"log\":\""
    });
    // Invalid UTF-8 becomes U+FFFD, as from_utf8_lossy would.
    let text = String::from_utf8_lossy(line);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"\"}\n");
}

use hako_runtime::os::RawMode;

/// Our fds 0/1/2 pointed elsewhere for `create`, restored on drop.
struct StdioSwap {
    saved: Vec<(i32, OwnedFd)>,
}

impl StdioSwap {
    fn new(targets: &[(i32, BorrowedFd<'_>)]) -> Result<StdioSwap> {
        let mut saved = Vec::new();
        for (n, fd) in targets {
            saved.push((*n, util::dup_high(*n)?));
            os::dup2(fd.as_raw_fd(), *n).map_err(crate::sys_err("dup2 container stdio"))?;
        }
        Ok(StdioSwap { saved })
    }
}

impl Drop for StdioSwap {
    fn drop(&mut self) {
        for (n, fd) in &self.saved {
            let _ = os::dup2(fd.as_raw_fd(), *n);
        }
    }
}

fn dev_null() -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(crate::io_err("open", "/dev/null"))?;
    Ok(OwnedFd::from(f))
}

/// What the container's streams are connected to.
enum Streams {
    Pipes {
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
        /// Keeps a detached `-i` container's stdin open.
        stdin: Option<OwnedFd>,
    },
    Pty(Option<OwnedFd>),
}

/// Run one container to completion. `attached`: the caller's terminal is
/// the container's (foreground `run`/`start -a`). `ready` gets "ok\n" or
/// the error once the container started (for the detached spawner).
/// A write to a pipe nobody reads any more.
fn is_broken_pipe(r: std::io::Result<()>) -> bool {
    r.is_err_and(|e| e.raw_os_error() == Some(libc::EPIPE))
}

pub fn run(dirs: &Dirs, id: &str, fg: Option<Foreground>, ready: Option<OwnedFd>) -> Result<i32> {
    let attached = fg.is_some();
    // A closed stdout is handled where we write (EPIPE), never by dying
    // of SIGPIPE with the container unsupervised.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut ready = ready.map(File::from);
    match start_container(dirs, id, attached) {
        Ok(started) => {
            if let Some(r) = ready.as_mut() {
                let _ = r.write_all(b"ok\n");
            }
            drop(ready);
            let r = run_and_restart(dirs, id, fg.as_ref(), started);
            let _ = os::set_sigmask(&os::empty_sigmask());
            r
        }
        Err(e) => {
            if let Some(r) = ready.as_mut() {
                let _ = writeln!(r, "{e}");
            }
            let msg = e.to_string();
            let _ = record::update(dirs, id, |r| {
                r.phase = Phase::Exited;
                r.error = Some(msg.clone());
                r.exit_code = Some(127);
                r.finished_at = Some(now_rfc3339_nanos());
            });
            let rec = record::load(dirs, id).ok();
            if rec.is_some_and(|r| r.opts.rm) {
                let _ = crate::teardown::remove_all_and_volumes(dirs, id);
            }
            Err(e)
        }
    }
}

/// Supervise the container; when it ends, record the end, or, if its
/// restart policy says so, wait (backoff) and start it again. The decision
/// and the new start happen under the restart lock (see [`crate::restart`]).
fn run_and_restart(dirs: &Dirs, id: &str, fg: Option<&Foreground>, first: Started) -> Result<i32> {
    let attached = fg.is_some();
    use crate::restart::{self, Policy};
    let mut started = first;
    let mut delay = std::time::Duration::ZERO;
    loop {
        let t0 = std::time::Instant::now();
        let code = supervise(dirs, id, fg, started);
        // Every way on from here releases the network (`finish` or
        // `finish_for_restart`); started now, before any lock is taken
        // that the releasing child would inherit.
        crate::network::release_in_background(dirs, id);
        if let Ok(r) = record::load(dirs, id) {
            crate::events::container(dirs, "die", &r, &[("exitCode", &code.to_string())]);
        }
        // Read before `finish`: the checkpoint verb clears the flag once the
        // end is recorded. A checkpointed container stays, to be restored.
        let rec = record::load(dirs, id).ok();
        let checkpointed = rec.as_ref().is_some_and(|r| r.checkpointing);
        let rm = rec.as_ref().is_some_and(|r| r.opts.rm);
        let lock = restart::lock(dirs, id).ok();
        let again = !attached
            && !checkpointed
            && lock.is_some()
            && record::load(dirs, id).is_ok_and(|r| {
                Policy::of(&r.opts).restarts(code, r.restart_count, r.stopped_by_user)
            });
        if !again {
            crate::teardown::finish(dirs, id, Some(code));
            if rm && !checkpointed {
                let _ = crate::teardown::remove_all_and_volumes(dirs, id);
            }
            return Ok(code);
        }
        crate::teardown::finish_for_restart(dirs, id, code);
        drop(lock);
        delay = restart::backoff(delay, t0.elapsed());
        wait_unless_woken(delay);
        let _l = restart::lock(dirs, id)?;
        let stopped = record::load(dirs, id).map_or(true, |r| r.stopped_by_user);
        if stopped {
            crate::teardown::finish(dirs, id, Some(code));
            return Ok(code);
        }
        record::update(dirs, id, |r| {
            r.restart_count += 1;
            r.restarting = false;
        })?;
        started = match start_container(dirs, id, attached) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                let _ = record::update(dirs, id, |r| {
                    r.error = Some(msg.clone());
                });
                crate::teardown::finish(dirs, id, Some(code));
                return Err(e);
            }
        };
    }
}

/// Sleep `d`, or less if SIGUSR1 comes (a user's stop: see
/// [`crate::restart::stopped_by_user`]). Signals are blocked here (the
/// supervisor's signalfd set), so it is read from a signalfd.
fn wait_unless_woken(d: std::time::Duration) {
    let deadline = std::time::Instant::now() + d;
    let Ok(sfd) = os::signalfd_all() else {
        std::thread::sleep(d);
        return;
    };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        if !os::poll_in(sfd.as_fd(), ms).unwrap_or(false) {
            return;
        }
        if os::read_signal(sfd.as_fd()).is_ok_and(|s| s == libc::SIGUSR1) {
            return;
        }
    }
}

struct Started {
    pid: i32,
    pidfd: OwnedFd,
    streams: Streams,
    /// Bound host ports, released when the monitor ends.
    _held_ports: Vec<OwnedFd>,
    /// The attach socket (none if it could not be made: the container
    /// runs, only `attach` fails).
    attach: Option<crate::attach::Server>,
}

fn start_container(dirs: &Dirs, id: &str, attached: bool) -> Result<Started> {
    let rec = record::load(dirs, id)?;
    let o = &rec.opts;
    // A live monitor in the record from the start: the container is being
    // started, so its leases (made below) are not stale to anyone else.
    let me = os::getpid();
    let keeper = KEEPER.load(std::sync::atomic::Ordering::Relaxed);
    record::update_processes(dirs, id, |r| {
        r.monitor_pid = me;
        r.monitor_start = util::proc_start_time(me);
        r.keeper_pid = keeper;
        r.keeper_start = if keeper > 0 {
            util::proc_start_time(keeper)
        } else {
            0
        };
    })?;
    let _ = os::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    let run_dir = dirs.run_container(id);
    crate::dirs::mkdir_p(&run_dir)?;
    let root = dirs.runtime_root();
    // A stale runtime state from a crashed monitor would block create.
    if container::state_json(&root, id).is_ok() {
        let _ = container::delete(&root, id, true);
        hako_runtime::container::remove_empty_group("hako");
    }

    let null = dev_null()?;
    let mut console_listener = None;
    let mut console_socket = None;
    let mut run_dir_fd: Option<File> = None;
    let mut swap_targets: Vec<(i32, OwnedFd)> = Vec::new();
    let streams = if o.tty {
        // Through our fd of the directory: a socket path must fit in
        // sun_path (108 bytes), whatever the run root.
        let dirf = File::open(&run_dir).map_err(crate::io_err("open", &run_dir))?;
        let p =
            std::path::PathBuf::from(format!("/proc/self/fd/{}/console.sock", dirf.as_raw_fd()));
        run_dir_fd = Some(dirf);
        let _ = std::fs::remove_file(&p);
        console_listener = Some(UnixListener::bind(&p).map_err(crate::io_err("bind", &p))?);
        console_socket = Some(p);
        if !attached {
            swap_targets.push((0, null.try_clone().map_err(crate::sys_err("dup"))?));
        }
        swap_targets.push((1, null.try_clone().map_err(crate::sys_err("dup"))?));
        swap_targets.push((2, null.try_clone().map_err(crate::sys_err("dup"))?));
        Streams::Pty(None)
    } else {
        let (or, ow) = util::pipe()?;
        let (er, ew) = util::pipe()?;
        let mut keep = None;
        let stdin_shown = Shown::of(o).is_ok_and(|s| s.stdin);
        if !(attached && o.interactive && stdin_shown) {
            if o.interactive {
                let (ir, iw) = util::pipe()?;
                swap_targets.push((0, ir));
                keep = Some(iw);
            } else {
                swap_targets.push((0, null.try_clone().map_err(crate::sys_err("dup"))?));
            }
        }
        swap_targets.push((1, ow));
        swap_targets.push((2, ew));
        Streams::Pipes {
            out: Some(or),
            err: Some(er),
            stdin: keep,
        }
    };

    let opts = CreateOpts {
        id: id.to_string(),
        bundle: record::bundle(dirs, id),
        root: root.clone(),
        console_socket,
        systemd_cgroup: rec.cgroup_manager == crate::config::CgroupManager::Systemd,
        ..Default::default()
    };
    // A restore attaches the network inside the namespaces CRIU made,
    // before the restored tasks run; a create after the init exists.
    let mut restored_networks = None;
    let created = {
        let borrowed: Vec<(i32, BorrowedFd<'_>)> =
            swap_targets.iter().map(|(n, f)| (*n, f.as_fd())).collect();
        let _swap = StdioSwap::new(&borrowed)?;
        if rec.restoring {
            restore(dirs, &rec, &opts, &mut restored_networks).map(|()| None)
        } else {
            container::create(&opts).map(Some).map_err(Error::from)
        }
    };
    drop(swap_targets);
    let (pid, pidfd) = match created {
        Ok(Some(c)) => (c.state.pid, c.pidfd),
        Ok(None) => match container::load(&root, id)
            .map_err(Error::from)
            .and_then(|(_, st, _)| {
                os::pidfd_open(st.pid)
                    .map(|fd| (st.pid, fd))
                    .map_err(crate::sys_err("pidfd_open the restored init"))
            }) {
            Ok(p) => p,
            Err(e) => {
                let _ = container::delete(&root, id, true);
                crate::network::release(dirs, id);
                return Err(e);
            }
        },
        Err(e) => {
            if rec.restoring {
                crate::network::release(dirs, id);
            }
            return Err(e);
        }
    };

    let fail = |e: Error| -> Error {
        let _ = os::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = os::waitpid(pid, 0);
        let _ = container::delete(&root, id, true);
        hako_runtime::container::remove_empty_group("hako");
        crate::network::release(dirs, id);
        e
    };

    let streams = match (streams, console_listener) {
        (Streams::Pty(_), Some(l)) => {
            let master = l
                .accept()
                .map_err(|e| crate::sys_err("accept the console")(e))
                .and_then(|(s, _)| {
                    os::recv_fd(s.as_fd())
                        .map(|(_, fd)| fd)
                        .map_err(crate::sys_err("receive the pty master"))
                });
            let _ = std::fs::remove_file(run_dir.join("console.sock"));
            drop(run_dir_fd.take());
            match master {
                Ok(m) => Streams::Pty(Some(m)),
                Err(e) => return Err(fail(e)),
            }
        }
        (s, _) => s,
    };

    let networks = match restored_networks {
        Some(n) => n,
        None => match crate::network::attach(dirs, &rec, pid) {
            Ok(n) => n,
            Err(e) => return Err(fail(e)),
        },
    };
    // Hold the published host ports while the container runs, as podman's
    // conmon does: no host program can take them from under the DNAT.
    let mut held_ports = Vec::new();
    if !networks.is_empty() {
        for p in &o.publish {
            let Ok(m) = p.parse::<hako_net::PortMapping>() else {
                continue;
            };
            match m.reserve() {
                Ok(fd) => held_ports.push((m, fd)),
                Err(e) => return Err(fail(crate::Error::Usage(e.to_string()))),
            }
        }
    }
    // A rootless user network: the held ports lead there through a
    // forwarder (see crate::portfwd); its listening sockets are these.
    if crate::dirs::rootless() && !held_ports.is_empty() {
        let ip = networks[0].ip.parse::<std::net::Ipv4Addr>();
        let tcp: Vec<(BorrowedFd<'_>, u16)> = held_ports
            .iter()
            .filter(|(m, _)| m.proto == hako_net::Proto::Tcp)
            .map(|(m, fd)| (fd.as_fd(), m.container_port))
            .collect();
        let started = match ip {
            Ok(ip) => crate::portfwd::start(dirs, &tcp, ip),
            Err(e) => Err(crate::Error::Other(format!(
                "the container's address {:?}: {e}",
                networks[0].ip
            ))),
        };
        if let Err(e) = started {
            return Err(fail(e));
        }
    }
    let held_ports: Vec<OwnedFd> = held_ports.into_iter().map(|(_, fd)| fd).collect();
    let monitor_pid = os::getpid();
    if let Err(e) = record::update_processes(dirs, id, |r| {
        r.phase = Phase::Running;
        r.pid = pid;
        r.pid_start = util::proc_start_time(pid);
        r.monitor_pid = monitor_pid;
        r.monitor_start = util::proc_start_time(monitor_pid);
        r.started_at = Some(now_rfc3339_nanos());
        r.finished_at = None;
        r.exit_code = None;
        r.error = None;
        r.networks = networks.clone();
        r.health = r.healthcheck.as_ref().map(|_| crate::health::Health {
            status: "starting".into(),
            ..Default::default()
        });
    }) {
        return Err(fail(e));
    }
    crate::events::container(
        dirs,
        if rec.restoring { "restore" } else { "start" },
        &rec,
        &[],
    );
    if !rec.restoring {
        if let Err(e) = container::start(&root, id) {
            return Err(fail(e.into()));
        }
    }
    let attach = match crate::attach::Server::bind(&run_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("hako monitor: no attach socket: {e}");
            None
        }
    };
    Ok(Started {
        pid,
        pidfd,
        streams,
        _held_ports: held_ports,
        attach,
    })
}

/// `hako healthcheck run ID` in the background; its pid.
fn spawn_health_check(id: &str) -> Option<i32> {
    let exe = hako_runtime::self_exe().ok()?;
    std::process::Command::new(exe)
        .args(["healthcheck", "run", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
        .map(|c| c.id() as i32)
}

/// Restore the container from its checkpoint (`container restore`), with
/// the monitor's stdio as the restored init's pipes; the network is
/// attached (into `networks`) once CRIU has made the namespaces.
fn restore(
    dirs: &Dirs,
    rec: &record::Record,
    opts: &CreateOpts,
    networks: &mut Option<Vec<record::NetAddr>>,
) -> Result<()> {
    let empty_network = crate::ops::engine_network(rec);
    let mut attach = |pid: i32| -> hako_runtime::Result<()> {
        if empty_network {
            let n = crate::network::attach(dirs, rec, pid)
                .map_err(|e| hako_runtime::Error::Other(format!("attach the network: {e}")))?;
            *networks = Some(n);
        }
        Ok(())
    };
    container::restore_with(
        &container::RestoreOpts {
            create: opts.clone(),
            image_path: crate::ops::checkpoint_dir(dirs, &rec.id),
            detach: true,
            empty_network,
            ..Default::default()
        },
        &mut attach,
    )?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Src {
    Signal,
    Out,
    Err,
    Master,
    Stdin,
}

fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    os::read_fd(fd, buf).unwrap_or(0)
}

/// Output of the container (`stream` 0 stdout, 1 stderr): to the log, the
/// attach clients and, attached, our own stdout or stderr. False when
/// our reader is gone (EPIPE).
fn relay(
    log: &mut LogWriter,
    server: &mut Option<crate::attach::Server>,
    attached: bool,
    stream: usize,
    data: &[u8],
) -> bool {
    log.write(stream, data);
    if let Some(s) = server {
        let kind = if stream == 1 {
            crate::attach::STDERR
        } else {
            crate::attach::STDOUT
        };
        s.broadcast(kind, data);
    }
    if !attached {
        return true;
    }
    // SAFETY: fds 1 and 2 stay open for the life of the process.
    let to = unsafe { BorrowedFd::borrow_raw(if stream == 1 { 2 } else { 1 }) };
    !is_broken_pipe(os::write_all_fd(to, data))
}

/// Which of a foreground container's streams meet the caller's terminal
/// (`-a`; all three when none is named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Shown {
    const ALL: Shown = Shown {
        stdin: true,
        stdout: true,
        stderr: true,
    };

    /// The `-a` values, checked (Docker's message for a bad one).
    pub fn of(o: &crate::record::RunOptions) -> Result<Shown> {
        if o.attach.is_empty() {
            return Ok(Shown::ALL);
        }
        let mut s = Shown {
            stdin: false,
            stdout: false,
            stderr: false,
        };
        for a in &o.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => s.stdin = true,
                "stdout" => s.stdout = true,
                "stderr" => s.stderr = true,
                _ => {
                    return Err(Error::Usage(format!(
                        "-a {a}: valid streams are STDIN, STDOUT and STDERR"
                    )))
                }
            }
        }
        Ok(s)
    }

    /// Stream 0 (stdout, and a terminal's output) or 1 (stderr).
    fn output(self, stream: usize) -> bool {
        if stream == 1 {
            self.stderr
        } else {
            self.stdout
        }
    }
}

/// How a foreground monitor shares the caller's terminal (`run`, `start
/// -a`): the detach keys it watches stdin for, and whether it passes the
/// signals it gets on to the container (`--sig-proxy`).
#[derive(Debug, Clone, Default)]
pub struct Foreground {
    pub detach_keys: crate::attach::DetachKeys,
    pub sig_proxy: bool,
}

/// The monitor's loop; returns the container's exit code.
fn supervise(dirs: &Dirs, id: &str, fg: Option<&Foreground>, st: Started) -> i32 {
    let mut attached = fg.is_some();
    let sig_proxy = fg.is_some_and(|f| f.sig_proxy);
    let mut escape = fg.map(|f| crate::attach::Escape::new(&f.detach_keys));
    let rec = record::load(dirs, id).ok();
    let shown = rec
        .as_ref()
        .and_then(|r| Shown::of(&r.opts).ok())
        .unwrap_or(Shown::ALL);
    // Without stdin attached (`-a` without STDIN) the terminal's input is
    // not the container's.
    let interactive = rec.as_ref().is_some_and(|r| r.opts.interactive) && shown.stdin;
    let log_cfg = rec
        .as_ref()
        .and_then(|r| LogConfig::of(&r.opts).ok())
        .unwrap_or_default();
    let mut log = LogWriter::open(&record::log_path(dirs, id), log_cfg);
    let _ = os::block_all_signals();
    let sfd = os::signalfd_all().ok();
    // SAFETY: fd 0 stays open for the life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let mut server = st.attach;
    // The container's stdin, for attach clients: the pipe of a detached
    // `-i` container (held open until it exits), or the pty master.
    let (mut out, mut err, master, stdin_pipe) = match st.streams {
        Streams::Pipes { out, err, stdin } => (out, err, None, stdin),
        Streams::Pty(m) => (None, None, m, None),
    };
    let mut raw = if attached && master.is_some() && interactive {
        RawMode::enter(0)
    } else {
        None
    };
    if let (true, Some(m)) = (attached, &master) {
        if let Ok((r, c)) = os::get_winsize(0) {
            let _ = os::set_winsize(m.as_raw_fd(), r, c);
        }
    }
    if !attached {
        shrink();
    }
    let mut master = master;
    let mut stdin_open = attached && interactive && master.is_some();
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let keeper = KEEPER.load(std::sync::atomic::Ordering::Relaxed);

    // SIGCHLD may have come before the signalfd existed: look once.
    let mut check_children = true;
    // Health checks: a `hako healthcheck run` child every interval (one at
    // a time), so this loop never waits for one.
    let health = rec.as_ref().and_then(|r| r.healthcheck.clone());
    let mut next_check = health
        .as_ref()
        .map(|h| std::time::Instant::now() + h.interval);
    let mut health_child: Option<i32> = None;
    loop {
        if check_children {
            check_children = false;
            while let Some((p, s)) = os::wait_any_nohang() {
                if p == st.pid {
                    status = Some(s);
                } else if Some(p) == health_child {
                    health_child = None;
                }
            }
            if status.is_some() {
                break;
            }
        }
        if let (Some(h), Some(t)) = (&health, next_check) {
            let now = std::time::Instant::now();
            if now >= t {
                if health_child.is_none() {
                    health_child = spawn_health_check(id);
                }
                next_check = Some(now + h.interval);
            }
        }
        let mut srcs: Vec<(Src, BorrowedFd<'_>)> = Vec::new();
        if let Some(s) = &sfd {
            srcs.push((Src::Signal, s.as_fd()));
        }
        if let Some(o) = &out {
            srcs.push((Src::Out, o.as_fd()));
        }
        if let Some(e) = &err {
            srcs.push((Src::Err, e.as_fd()));
        }
        if let Some(m) = &master {
            srcs.push((Src::Master, m.as_fd()));
        }
        if stdin_open {
            srcs.push((Src::Stdin, stdin));
        }
        let mut fds: Vec<(BorrowedFd<'_>, i16)> =
            srcs.iter().map(|(_, f)| (*f, libc::POLLIN)).collect();
        if let Some(s) = &server {
            fds.extend(s.poll_set());
        }
        let timeout = match (&sfd, next_check) {
            (None, _) => 200,
            (Some(_), None) => -1,
            (Some(_), Some(t)) => t
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                .clamp(1, i32::MAX as u128) as i32,
        };
        let rev = match os::poll_events(&fds, timeout) {
            Ok(r) => r,
            Err(_) => continue,
        };
        drop(fds);
        if sfd.is_none() {
            check_children = true;
        }
        let mut close = Vec::new();
        let mut detach = false;
        for (i, (src, fd)) in srcs.iter().enumerate() {
            if rev[i] == 0 {
                continue;
            }
            match src {
                Src::Signal => {
                    let Some((sig, _, from)) = read_siginfo(*fd) else {
                        continue;
                    };
                    match sig {
                        libc::SIGCHLD => check_children = true,
                        libc::SIGWINCH => {
                            if let (true, Some(m)) = (attached, &master) {
                                if let Ok((r, c)) = os::get_winsize(0) {
                                    let _ = os::set_winsize(m.as_raw_fd(), r, c);
                                }
                            }
                        }
                        libc::SIGPIPE => {}
                        // The keeper leaves (`--sig-proxy=false` and a
                        // signal for it): go on without the terminal.
                        libc::SIGUSR2 if attached && from == keeper => detach = true,
                        s if attached && sig_proxy => {
                            let _ = os::pidfd_send_signal(st.pidfd.as_fd(), s);
                        }
                        _ => {}
                    }
                }
                Src::Out | Src::Err | Src::Master => {
                    let n = read_some(*fd, &mut buf);
                    if n == 0 {
                        close.push(*src);
                        continue;
                    }
                    let stream = usize::from(*src == Src::Err);
                    let to_us = attached && shown.output(stream);
                    if !relay(&mut log, &mut server, to_us, stream, &buf[..n]) {
                        // Whoever read our output is gone (`| head`):
                        // close the container's end too, so its next
                        // write fails as it would in a pipeline.
                        close.push(*src);
                    }
                }
                Src::Stdin => {
                    let n = read_some(*fd, &mut buf);
                    if n == 0 {
                        close.push(Src::Stdin);
                        continue;
                    }
                    let mut pass = Vec::with_capacity(n);
                    detach = match &mut escape {
                        Some(e) => e.feed(&buf[..n], &mut pass),
                        None => {
                            pass.extend_from_slice(&buf[..n]);
                            false
                        }
                    };
                    if let Some(m) = &master {
                        let _ = os::write_all_fd(m.as_fd(), &pass);
                    }
                }
            }
        }
        if let Some(s) = &mut server {
            for req in s.ready(&rev[srcs.len()..]) {
                use crate::attach::Request;
                match req {
                    Request::Stdin(data) => {
                        if let Some(to) = master.as_ref().or(stdin_pipe.as_ref()) {
                            let _ = os::write_all_fd(to.as_fd(), &data);
                        }
                    }
                    Request::Resize(r, c) => {
                        if let Some(m) = &master {
                            let _ = os::set_winsize(m.as_raw_fd(), r, c);
                        }
                    }
                    Request::Signal(sig) => {
                        let _ = os::pidfd_send_signal(st.pidfd.as_fd(), sig);
                    }
                }
            }
        }
        for c in close {
            match c {
                Src::Out => out = None,
                Src::Err => err = None,
                Src::Master => master = None,
                Src::Stdin => stdin_open = false,
                Src::Signal => {}
            }
        }
        if detach && attached {
            // The user detached (the keys, or the keeper's word): the
            // terminal is theirs again; the container goes on under this
            // monitor, in its own session, now without a keeper.
            drop(raw.take());
            if let Ok(null) = dev_null() {
                for n in 0..3 {
                    let _ = os::dup2(null.as_raw_fd(), n);
                }
            }
            // SAFETY: setsid has no memory effects; it fails only when we
            // lead a process group, which a spawned monitor does not.
            unsafe { libc::setsid() };
            if keeper > 0 {
                let _ = os::kill(keeper, libc::SIGUSR2);
            }
            attached = false;
            stdin_open = false;
            escape = None;
        }
    }
    // Drain what the container wrote before it exited.
    for (stream, fd) in [(0usize, &out), (1, &err), (0, &master)] {
        let Some(fd) = fd else { continue };
        while os::poll_in(fd.as_fd(), 0).unwrap_or(false) {
            let n = read_some(fd.as_fd(), &mut buf);
            if n == 0 {
                break;
            }
            relay(
                &mut log,
                &mut server,
                attached && shown.output(stream),
                stream,
                &buf[..n],
            );
        }
    }
    log.flush();
    drop(raw);
    let code = status.map_or(255, os::exit_code);
    if let Some(s) = server {
        s.finish(code);
    }
    code
}

/// Give back memory only the setup needed, so a detached monitor stays
/// small (the `ps` RSS of many idle monitors adds up): free heap goes back
/// to the kernel, and our references to read-only file pages (code and
/// constants of the runtime, network and JSON paths) are dropped; the loop
/// faults back the few pages it uses. Mappings with anonymous (COW'd)
/// pages, such as RELRO after relocation, are left alone: dropping them
/// would undo the dynamic linker's writes. The stack's pages below this
/// frame (argument parsing and the container start went deep once) are
/// dropped too.
#[inline(never)]
fn shrink() {
    const PAGE: usize = 4096;
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = hako_cgroups::read_kernel_file(std::path::Path::new("/proc/self/smaps")) else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    let mut zap = Vec::new();
    let mut stack = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|(a, _)| !a.ends_with(':')) {
            current = None;
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            if perms.starts_with('r') && !perms.contains('w') && path.starts_with('/') {
                // The text's last page is kept: a static binary's IFUNC
                // call stubs (.iplt, after .text) are there, and every
                // memcpy or memset goes through them, so a fault on that
                // page would come right back with the 36 KiB of cold libc
                // code around it (fault-around).
                let b = if perms.contains('x') { b - PAGE } else { b };
                current = Some((a, b));
            } else if path == "[stack]" {
                stack = Some(a);
            }
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if f.next() == Some("0") {
                    zap.push(range);
                }
            }
        }
    }
    // Freed before the zap: what runs after it is only this function, the
    // madvise call and the loop (see below).
    drop(smaps);
    // Everything more than 8 KiB below this frame is free stack: what
    // runs later (the loop, signal handlers) faults in zeroed pages there.
    let here = std::ptr::addr_of!(current) as usize;
    if let Some(low) = stack {
        let top = (here.saturating_sub(8 * 1024)) & !(PAGE - 1);
        if top > low {
            // SAFETY: [low, top) is the main thread's stack below the
            // frames in use (this one and its callers, all above `here`,
            // plus an 8 KiB margin for the calls we are in): its contents
            // are dead, so dropping the pages (zero-filled on the next
            // touch) changes nothing the program can observe.
            unsafe {
                libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED);
            }
        }
    }
    for (a, b) in zap {
        // SAFETY: [a, b) is (all but the text's last page of) a read-only,
        // file-backed mapping of this process with no private (anonymous)
        // pages: MADV_DONTNEED only drops page-table entries, and later
        // accesses re-read the same bytes from the page cache.
        // Each later fault maps the 64 KiB around it (fault-around, which
        // MADV_RANDOM does not turn off: measured on 6.18), so what comes
        // back depends on the code run from here on lying together: the
        // link order (crates/cli/order/hako.txt) starts with this function
        // and madvise (returned to after the zap), then what a steady
        // monitor and keeper run (bench/symbol-order.py).
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
        }
    }
}

static KEEPER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Tell the monitor (this process) that its parent is its keeper.
pub fn set_keeper(pid: i32) {
    KEEPER.store(pid, std::sync::atomic::Ordering::Relaxed);
}

fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// `hako __monitor ID` (detached): fork into keeper (parent) and monitor
/// (child). Must be called while the process is single-threaded; if it is
/// not, the monitor runs without a keeper.
pub fn detached(dirs: &Dirs, id: &str, ready: OwnedFd) -> Result<i32> {
    if !single_threaded() || os::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).is_err() {
        return run(dirs, id, None, Some(ready));
    }
    let keeper = os::getpid();
    // Blocked before the monitor exists, so that no signal reaches the
    // keeper unhandled (keep() reads them from a signalfd); the monitor
    // blocks them itself too.
    let _ = os::block_all_signals();
    // SAFETY: the process has a single thread (checked above), so the child
    // is a complete copy that may run any code; the parent only waits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(crate::sys_err("fork the monitor")(
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        set_keeper(keeper);
        return run(dirs, id, None, Some(ready));
    }
    // The spawner reads `ready` until EOF: only the monitor may hold it.
    drop(ready);
    shrink();
    Ok(keep(dirs, id, pid, None))
}

/// Foreground `run` / `start -a`: the monitor is `hako __monitor
/// --attached ID`, a child sharing our terminal; we are its keeper.
/// Returns the container's exit code, or 0 when the user detached.
pub fn foreground(dirs: &Dirs, id: &str, fg: &Foreground) -> Result<i32> {
    let mut cmd =
        hako_runtime::self_command().map_err(|e| Error::Other(format!("find hako: {e}")))?;
    os::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0)
        .map_err(crate::sys_err("become a child subreaper"))?;
    // Blocked before the monitor exists: a signal from then on is the
    // keeper's to pass on or act on (keep()), never its default action.
    // (std's spawn resets the mask in the child.)
    let old_mask = os::block_all_signals().map_err(crate::sys_err("block signals"))?;
    let child = match cmd
        .arg("__monitor")
        .arg("--attached")
        .arg(format!("--detach-keys={}", fg.detach_keys))
        .arg(format!("--sig-proxy={}", fg.sig_proxy))
        .arg(id)
        .env("HAKO_DATA_DIR", &dirs.data)
        .env("HAKO_RUN_DIR", &dirs.run)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = os::set_sigmask(&old_mask);
            return Err(Error::Other(format!("start the monitor: {e}")));
        }
    };
    // Reaped by `keep` (a std Child neither kills nor waits on drop).
    let pid = child.id() as i32;
    drop(child);
    Ok(keep(dirs, id, pid, Some(fg.sig_proxy)))
}

enum Reaped {
    Child(i32, i32),
    Nothing,
    NoChildren,
}

fn reap(flags: i32) -> Reaped {
    let mut st = 0;
    // SAFETY: st is a valid out-pointer for the status.
    let r = unsafe { libc::waitpid(-1, &mut st, flags) };
    match r {
        p if p > 0 => Reaped::Child(p, st),
        0 => Reaped::Nothing,
        _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) => {
            Reaped::NoChildren
        }
        _ => Reaped::Nothing,
    }
}

/// (signal, si_code, sender's pid) of the next signal on a signalfd.
pub(crate) fn read_siginfo(fd: BorrowedFd<'_>) -> Option<(i32, i32, i32)> {
    // SAFETY: a zeroed signalfd_siginfo is valid; we read at most its size
    // into it.
    unsafe {
        let mut si: libc::signalfd_siginfo = std::mem::zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            &mut si as *mut _ as *mut libc::c_void,
            std::mem::size_of::<libc::signalfd_siginfo>(),
        );
        (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize).then_some((
            si.ssi_signo as i32,
            si.ssi_code,
            si.ssi_pid as i32,
        ))
    }
}

/// What a monitor that ended left behind.
enum Left {
    /// The end of the container is in the record (or there was none).
    Recorded,
    /// The container still runs: its init is the keeper's child now.
    InitRunning,
    /// The container ended but the monitor did not say how (it died, or
    /// failed, between reaping the init and recording): recorded now as
    /// an unknown exit code with the monitor's fate as the error.
    Unrecorded,
}

/// After the monitor `monitor` ended with wait status `st`: did it record
/// its container's end? A monitor that records it clears `monitor_pid`;
/// any other way out (a panic, an error, a signal) leaves it set.
fn monitor_left(dirs: &Dirs, id: &str, monitor: i32, st: i32) -> Left {
    let Ok(r) = record::load(dirs, id) else {
        return Left::Recorded;
    };
    if r.monitor_pid != monitor || !(r.phase == Phase::Running || r.restarting) {
        return Left::Recorded;
    }
    if r.phase == Phase::Running && crate::status::init_alive(&r) {
        return Left::InitRunning;
    }
    let how = if libc::WIFSIGNALED(st) {
        format!("was killed by signal {}", libc::WTERMSIG(st))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(st))
    };
    let last = std::fs::read_to_string(dirs.container(id).join("monitor.log"))
        .ok()
        .and_then(|l| {
            l.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        });
    let msg = match last {
        Some(l) => format!("the monitor {how} before recording the container's end: {l}"),
        None => format!("the monitor {how} before recording the container's end"),
    };
    record_unrecorded_end(dirs, id, msg);
    Left::Unrecorded
}

/// The keeper records an end its monitor did not: an unknown code, `why`
/// as the error, and `--rm` done.
fn record_unrecorded_end(dirs: &Dirs, id: &str, why: String) {
    let _ = record::update(dirs, id, |r| r.error = Some(why.clone()));
    crate::teardown::finish(dirs, id, None);
    if record::load(dirs, id).is_ok_and(|r| r.opts.rm) {
        let _ = crate::teardown::remove_all_and_volumes(dirs, id);
    }
}

/// The keeper's loop: reap until the monitor is done; if the monitor dies
/// first, reap the container's init (now ours) and record its real code.
/// `sig_proxy`: None for a detached monitor's keeper. Some(true): pass
/// signals sent to us (not those of the terminal, which the monitor in
/// our process group got itself) on to the monitor; Some(false): such a
/// signal ends us alone and the monitor goes on detached.
/// Returns the monitor's exit code (the container's, or its own error's),
/// or 0 when the user detached. The caller blocked every signal before it
/// made the monitor; they are read here from a signalfd.
pub fn keep(dirs: &Dirs, id: &str, monitor: i32, sig_proxy: Option<bool>) -> i32 {
    let forward = sig_proxy == Some(true);
    let sfd = os::signalfd_all().ok();
    let mut monitor_alive = true;
    loop {
        loop {
            match reap(libc::WNOHANG) {
                Reaped::Child(p, st) if p == monitor => {
                    monitor_alive = false;
                    match monitor_left(dirs, id, monitor, st) {
                        // It recorded the end itself.
                        Left::Recorded => return os::exit_code(st),
                        // The init is ours now: reap it below.
                        Left::InitRunning => {}
                        Left::Unrecorded => return 255,
                    }
                }
                Reaped::Child(p, st) => {
                    let Ok(r) = record::load(dirs, id) else {
                        continue;
                    };
                    if r.pid == p && r.phase == Phase::Running {
                        let code = os::exit_code(st);
                        crate::teardown::finish(dirs, id, Some(code));
                        if r.opts.rm {
                            let _ = crate::teardown::remove_all_and_volumes(dirs, id);
                        }
                        if !monitor_alive {
                            return code;
                        }
                    }
                }
                Reaped::Nothing => break,
                // The monitor died and its init (if any) is reaped.
                Reaped::NoChildren => {
                    if record::load(dirs, id)
                        .is_ok_and(|r| r.monitor_pid == monitor && r.phase == Phase::Running)
                    {
                        record_unrecorded_end(
                            dirs,
                            id,
                            "the container's end was not recorded (its monitor died)".into(),
                        );
                    }
                    return 255;
                }
            }
        }
        let Some(sfd) = &sfd else {
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        };
        if !os::poll_in(sfd.as_fd(), 1000).unwrap_or(false) {
            continue;
        }
        let Some((sig, code, from)) = read_siginfo(sfd.as_fd()) else {
            continue;
        };
        // The monitor's word that the user detached: its terminal is free.
        if sig_proxy.is_some() && sig == libc::SIGUSR2 && from == monitor {
            return 0;
        }
        // `--sig-proxy=false`: a signal that would end a client ends us
        // alone; the monitor goes on detached (Docker's client dies).
        if sig_proxy == Some(false)
            && monitor_alive
            && matches!(
                sig,
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
            )
        {
            let _ = os::kill(monitor, libc::SIGUSR2);
            return 128 + sig;
        }
        // si_code <= 0: sent by a process (kill, sigqueue, tkill); the
        // terminal's signals (SI_KERNEL) reached the whole process group.
        if !forward || code > 0 || matches!(sig, libc::SIGCHLD | libc::SIGWINCH | libc::SIGPIPE) {
            continue;
        }
        if monitor_alive {
            let _ = os::kill(monitor, sig);
        } else if let Ok(r) = record::load(dirs, id) {
            if crate::status::init_alive(&r) {
                let _ = os::kill(r.pid, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_json() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(951_868_801, 5);
        let mut out = Vec::new();
        encode_line(&mut out, 1, b"a \"q\" \\ \x01\t\xff\n", t);
        assert!(out.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2000-03-01T00:00:01.000000005Z");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["log"], "a \"q\" \\ \u{1}\t\u{fffd}\n");
        let s = now_rfc3339_nanos();
        let mut out = Vec::new();
        encode_line(&mut out, 0, b"x", std::time::SystemTime::now());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"].as_str().unwrap()[..16], s[..16]);
    }
}
