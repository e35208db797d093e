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
}

/// Wait for the process; returns its exit code (128+signal).
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
                match copy_once(stdin, m.as_fd()) {
                    Ok(n) if n > 0 => {}
                    _ => stdin_open = false,
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
