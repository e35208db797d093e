//! The foreground side of `run`: forward signals to the container, proxy
//! its terminal when it has one, reap, and report the exit code.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use std::os::fd::OwnedFd;

use crate::error::{Context, Result};
use crate::sys;

/// Puts the caller's terminal in raw mode and restores it on drop.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// None when `fd` is not a terminal (or its attributes cannot be read).
    pub fn enter(fd: i32) -> Option<RawMode> {
        if !sys::isatty(fd) {
            return None;
        }
        // SAFETY: zeroed termios is a valid out value for tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a tty; t is a valid out pointer.
        if unsafe { libc::tcgetattr(fd, &mut t) } < 0 {
            return None;
        }
        let saved = t;
        // SAFETY: cfmakeraw edits the struct in place.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: valid fd and termios.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes we saved on the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// `--detach-keys`: Docker's notation, keys separated by commas, each a
/// single character or `ctrl-<c>` with c in a-z, @, [, \, ], ^, _.
/// Empty means the default, ctrl-p,ctrl-q (as in Docker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys(vec![0x10, 0x11])
    }
}

impl DetachKeys {
    pub fn parse(s: &str) -> Result<DetachKeys, String> {
        if s.is_empty() {
            return Ok(DetachKeys::default());
        }
        let bad = |k: &str| {
            format!(
                "--detach-keys: invalid key {k:?} (a single character or ctrl-<c> with c one of \
                 a-z, @, [, \\, ], ^, _; keys separated by commas)"
            )
        };
        let mut keys = Vec::new();
        for k in s.split(',') {
            let b = k.as_bytes();
            let byte = match b {
                [c] if c.is_ascii_graphic() => *c,
                _ => match k.strip_prefix("ctrl-").map(str::as_bytes) {
                    Some([c @ b'a'..=b'z']) => c - b'a' + 1,
                    Some([c @ b'@'..=b'_']) if !c.is_ascii_uppercase() => c - b'@',
                    _ => return Err(bad(k)),
                },
            };
            keys.push(byte);
        }
        Ok(DetachKeys(keys))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The notation [`DetachKeys::parse`] reads.
impl std::fmt::Display for DetachKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match b {
                1..=26 => write!(f, "ctrl-{}", char::from(b'a' + b - 1))?,
                0 | 27..=31 => write!(f, "ctrl-{}", char::from(b'@' + b))?,
                _ => write!(f, "{}", char::from(b))?,
            }
        }
        Ok(())
    }
}

/// Finds the detach sequence in a stream of input, holding back a partial
/// match (sent on once the next byte breaks it, as Docker does).
#[derive(Debug)]
pub struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    pub fn new(keys: &DetachKeys) -> Escape {
        Escape {
            keys: keys.0.clone(),
            matched: 0,
        }
    }

    /// Bytes of `input` to pass on go to `out`; true when the whole
    /// sequence was typed (what followed it is dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

fn copy_once(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> std::io::Result<usize> {
    let mut buf = [0u8; 8192];
    let n = sys::read_fd(from, &mut buf)?;
    if n > 0 {
        sys::write_all_fd(to, &buf[..n])?;
    }
    Ok(n)
}

/// The process a foreground `run` or `exec` waits for.
pub struct Foreground<'a> {
    pub pid: i32,
    pub pidfd: BorrowedFd<'a>,
    pub console_master: Option<&'a OwnedFd>,
    /// With a terminal: the keys that detach (the process runs on; the
    /// wait returns 0).
    pub detach_keys: Option<&'a DetachKeys>,
}

/// Wait for the process; returns its exit code (128+signal), or 0 when
/// the user typed the detach keys.
pub fn wait_foreground(c: &Foreground<'_>, sfd: BorrowedFd<'_>) -> Result<i32> {
    let pid = c.pid;
    // A closed stdout must not kill us (SIGPIPE) before we report the
    // container's exit; the relay's write then just fails.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: fds 0 and 1 belong to the process for its whole life.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let _raw = c.console_master.as_ref().and_then(|_| RawMode::enter(0));
    if let Some(m) = c.console_master {
        if let Ok((r, col)) = sys::get_winsize(0) {
            let _ = sys::set_winsize(m.as_raw_fd(), r, col);
        }
    }
    let mut stdin_open = c.console_master.is_some();
    let mut escape = c.detach_keys.map(Escape::new);
    let mut init_status: Option<i32> = None;
    loop {
        let mut fds = vec![sfd];
        if let Some(m) = c.console_master {
            fds.push(m.as_fd());
            if stdin_open {
                fds.push(stdin);
            }
        }
        let rev = sys::poll_many(&fds, -1).ctx(|| "poll".into())?;
        if let Some(m) = c.console_master {
            if rev[1] & (libc::POLLIN | libc::POLLHUP) != 0 {
                // EIO once the last peer closes: the container is exiting.
                match copy_once(m.as_fd(), stdout) {
                    Ok(n) if n > 0 => {}
                    _ => {}
                }
            }
            if stdin_open && rev.len() > 2 && rev[2] & (libc::POLLIN | libc::POLLHUP) != 0 {
                let mut buf = [0u8; 8192];
                let n = sys::read_fd(stdin, &mut buf).unwrap_or(0);
                if n == 0 {
                    stdin_open = false;
                } else {
                    let mut pass = Vec::with_capacity(n);
                    let detach = match &mut escape {
                        Some(e) => e.feed(&buf[..n], &mut pass),
                        None => {
                            pass.extend_from_slice(&buf[..n]);
                            false
                        }
                    };
                    if sys::write_all_fd(m.as_fd(), &pass).is_err() {
                        stdin_open = false;
                    }
                    if detach {
                        hold_in_background(m);
                        return Ok(0);
                    }
                }
            }
        }
        if rev[0] & libc::POLLIN == 0 {
            continue;
        }
        let sig = sys::read_signal(sfd).ctx(|| "read signalfd".into())?;
        match sig {
            libc::SIGCHLD => {
                // Reap everything: the init, and orphans adopted as subreaper.
                while let Some((p, status)) = sys::wait_any_nohang() {
                    if p == pid {
                        init_status = Some(status);
                    }
                }
                if let Some(s) = init_status {
                    drain(c, stdout);
                    return Ok(sys::exit_code(s));
                }
            }
            libc::SIGWINCH => {
                if let Some(m) = c.console_master {
                    if let Ok((r, col)) = sys::get_winsize(0) {
                        let _ = sys::set_winsize(m.as_raw_fd(), r, col);
                    }
                }
            }
            s => {
                let _ = sys::pidfd_send_signal(c.pidfd, s);
            }
        }
    }
}

/// After a detach: a background copy of us keeps the pty master open and
/// reads what the process writes (to nowhere), so the process neither
/// gets a hangup nor blocks on a full terminal; it ends when the last
/// holder of the terminal's other side does.
///
/// It keeps nothing else: its stdio goes to /dev/null, every other fd is
/// closed, and it is not dumpable, so a container it may share a pid
/// namespace with (a rootless exec: see exec.rs) can neither trace it nor
/// reach our mount namespace through its /proc entries.
fn hold_in_background(master: &OwnedFd) {
    // SAFETY: the child only calls async-signal-safe functions (setsid,
    // prctl, dup2, open, close_range, read, _exit) on a stack buffer and a
    // static string before it exits.
    unsafe {
        if libc::fork() == 0 {
            libc::setsid();
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            if libc::dup2(master.as_raw_fd(), 3) != 3 {
                libc::_exit(1);
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for n in 0..3 {
                libc::dup2(null, n);
            }
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            let mut buf = [0u8; 4096];
            while libc::read(3, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
            libc::_exit(0);
        }
    }
}

fn drain(c: &Foreground<'_>, stdout: BorrowedFd<'_>) {
    if let Some(m) = c.console_master {
        while sys::poll_in(m.as_fd(), 0).unwrap_or(false) {
            match copy_once(m.as_fd(), stdout) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_reads_them() {
        assert_eq!(DetachKeys::parse("").unwrap().bytes(), &[16, 17]);
        assert_eq!(
            DetachKeys::parse("ctrl-p,ctrl-q").unwrap().bytes(),
            &[16, 17]
        );
        assert_eq!(DetachKeys::parse("ctrl-a,x").unwrap().bytes(), &[1, b'x']);
        assert_eq!(DetachKeys::parse("ctrl-@").unwrap().bytes(), &[0]);
        assert_eq!(
            DetachKeys::parse("ctrl-[,ctrl-_").unwrap().bytes(),
            &[27, 31]
        );
        assert_eq!(DetachKeys::parse("Q").unwrap().bytes(), b"Q");
        for keys in ["ctrl-p,ctrl-q", "ctrl-@,ctrl-_,x,Q,ctrl-a"] {
            assert_eq!(DetachKeys::parse(keys).unwrap().to_string(), keys);
        }
        for bad in ["ctrl-", "ctrl-A", "ctrl-1", "ab", "a,,b", "ctrl-pq", " "] {
            let e = DetachKeys::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--detach-keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn escape_holds_a_partial_match_and_passes_it_on_when_broken() {
        let keys = DetachKeys::default();
        let mut e = Escape::new(&keys);
        let mut out = Vec::new();
        assert!(!e.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        // The held ctrl-p goes on with the byte that broke the match.
        assert!(!e.feed(b"c", &mut out));
        assert_eq!(out, b"ab\x10c");
        // ctrl-p ctrl-p: the first goes on, the second may still start it.
        out.clear();
        assert!(!e.feed(b"\x10\x10", &mut out));
        assert_eq!(out, b"\x10");
        assert!(e.feed(b"\x11tail", &mut out));
        assert_eq!(out, b"\x10");
        // Split over reads.
        let mut e = Escape::new(&keys);
        out.clear();
        assert!(!e.feed(b"x\x10", &mut out));
        assert!(e.feed(b"\x11", &mut out));
        assert_eq!(out, b"x");
        // One key.
        let one = DetachKeys::parse("ctrl-x").unwrap();
        let mut e = Escape::new(&one);
        out.clear();
        assert!(e.feed(b"ab\x18", &mut out));
        assert_eq!(out, b"ab");
    }
}
