//! `attach`: a client of the container monitor's attach socket (see
//! [`crate::attach`]): the container's output here, our stdin there (if
//! it was created with `-i`), our terminal's size and (without a
//! terminal, `--sig-proxy`) our signals passed on; the detach keys leave
//! it running.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use hako_runtime::os::{self, RawMode};

use crate::attach::{frame, take_frames, DetachKeys, Escape};
use crate::dirs::Dirs;
use crate::record;
use crate::status::{status, Status};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Our stdin goes to the container (when it keeps stdin open, `-i`).
    pub stdin: bool,
    pub detach_keys: DetachKeys,
    /// Signals we get go to the container (without a terminal, as Docker).
    pub sig_proxy: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            stdin: true,
            detach_keys: DetachKeys::default(),
            sig_proxy: true,
        }
    }
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The container exited with this code.
    Exited(i32),
    /// The user typed the detach keys; the container runs on.
    Detached,
    /// A signal ended the attach (the container runs on): exit 128+sig.
    Interrupted(i32),
}

pub fn attach(dirs: &Dirs, name: &str, o: &AttachOptions) -> Result<Attached> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let not = |msg: &str| Error::State {
        id: r.name.clone(),
        msg: msg.into(),
    };
    match status(dirs, &r) {
        Status::Running => {}
        Status::Paused => return Err(not("is paused: unpause it first")),
        _ if r.restarting && crate::status::monitor_alive(&r) => {
            return Err(not("is restarting: wait until it runs"))
        }
        _ => return Err(not("is not running: start it first")),
    }
    let tty = r.opts.tty;
    let stdin = o.stdin && r.opts.interactive;
    if tty && stdin && !os::isatty(0) {
        return Err(Error::Usage(
            "the input device is not a TTY (the container has one): use --no-stdin, or attach \
             from a terminal"
                .into(),
        ));
    }
    let dir_path = dirs.run_container(&id);
    let dir = File::open(&dir_path).map_err(crate::io_err("open", &dir_path))?;
    let sock_path = format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd());
    // Signals are blocked before the monitor knows us: one that comes as
    // soon as we are attached is handled (passed on, or ending the attach
    // with 128+sig), never the default action that kills us unannounced.
    let old_mask = os::block_all_signals().map_err(crate::sys_err("block signals"))?;
    let mut sock = match UnixStream::connect(&sock_path) {
        Ok(s) => s,
        Err(e) => {
            let _ = os::set_sigmask(&old_mask);
            return Err(Error::State {
                id: r.name.clone(),
                msg: format!("cannot be attached: its monitor does not answer ({e})"),
            });
        }
    };
    drop(dir);
    let sfd = os::signalfd_all().map_err(crate::sys_err("signalfd"));
    let end = sfd.and_then(|sfd| {
        let _raw = if tty && stdin {
            RawMode::enter(0)
        } else {
            None
        };
        pump(&mut sock, sfd.as_fd(), tty, stdin, o)
    });
    let _ = os::set_sigmask(&old_mask);
    match end? {
        Some(a) => Ok(a),
        // The monitor went away without the exit frame (killed?): the
        // record has the end if anyone recorded it.
        None => {
            let r = record::load(dirs, &id)?;
            match status(dirs, &r) {
                Status::Exited(Some(code)) => Ok(Attached::Exited(code)),
                _ => Err(Error::State {
                    id: r.name,
                    msg: "lost its monitor while attached".into(),
                }),
            }
        }
    }
}

fn pump(
    sock: &mut UnixStream,
    sfd: BorrowedFd<'_>,
    tty: bool,
    mut stdin_open: bool,
    o: &AttachOptions,
) -> Result<Option<Attached>> {
    // SAFETY: fds 0, 1 and 2 stay open for the life of the process.
    let (stdin, stdout, stderr) = unsafe {
        (
            BorrowedFd::borrow_raw(0),
            BorrowedFd::borrow_raw(1),
            BorrowedFd::borrow_raw(2),
        )
    };
    let send = |sock: &mut UnixStream, kind: u8, p: &[u8]| {
        sock.write_all(&frame(kind, p))
            .map_err(crate::sys_err("write to the attach socket"))
    };
    let resize = |sock: &mut UnixStream| -> Result<()> {
        if let Ok((r, c)) = os::get_winsize(0) {
            let mut p = r.to_be_bytes().to_vec();
            p.extend_from_slice(&c.to_be_bytes());
            send(sock, crate::attach::RESIZE, &p)?;
        }
        Ok(())
    };
    if tty {
        resize(sock)?;
    }
    let mut escape = Escape::new(&o.detach_keys);
    let mut inbuf = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![(sfd, libc::POLLIN), (sock.as_fd(), libc::POLLIN)];
        if stdin_open {
            fds.push((stdin, libc::POLLIN));
        }
        let rev = os::poll_events(&fds, -1).map_err(crate::sys_err("poll"))?;
        drop(fds);
        if rev[0] != 0 {
            let sig = os::read_signal(sfd).map_err(crate::sys_err("read a signal"))?;
            match sig {
                libc::SIGCHLD | libc::SIGPIPE | libc::SIGURG => {}
                libc::SIGWINCH if tty => resize(sock)?,
                libc::SIGWINCH => {}
                s if o.sig_proxy && !tty => send(sock, crate::attach::SIGNAL, &s.to_be_bytes())?,
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT => {
                    return Ok(Some(Attached::Interrupted(sig)))
                }
                _ => {}
            }
        }
        if rev[1] != 0 {
            let n = match sock.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => n,
            };
            inbuf.extend_from_slice(&buf[..n]);
            let frames = take_frames(&mut inbuf).map_err(Error::Other)?;
            for (kind, data) in frames {
                let to = match kind {
                    crate::attach::STDOUT => stdout,
                    crate::attach::STDERR => stderr,
                    crate::attach::EXIT if data.len() == 4 => {
                        let code = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                        return Ok(Some(Attached::Exited(code)));
                    }
                    _ => continue,
                };
                if os::write_all_fd(to, &data).is_err() {
                    // Our reader is gone (`| head`): so are we.
                    return Ok(Some(Attached::Interrupted(libc::SIGPIPE)));
                }
            }
        }
        if stdin_open && rev.get(2).is_some_and(|r| *r != 0) {
            let n = os::read_fd(stdin, &mut buf).unwrap_or(0);
            if n == 0 {
                // Our input ended; the container's stdin stays open for
                // others (Docker closes it only for `run -i`'s own client).
                stdin_open = false;
                continue;
            }
            let mut pass = Vec::with_capacity(n);
            let detached = escape.feed(&buf[..n], &mut pass);
            if !pass.is_empty() {
                send(sock, crate::attach::STDIN, &pass)?;
            }
            if detached {
                return Ok(Some(Attached::Detached));
            }
        }
    }
}
