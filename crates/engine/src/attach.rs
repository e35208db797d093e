//! Attaching to a running container: its monitor serves the container's
//! streams on a unix socket (`attach.sock` in the container's run
//! directory); `hako attach` is a client of it.
//!
//! The monitor owns the container's output (pipes or the pty master) and
//! its stdin (the pipe of a `-i` container, or the master); it copies
//! output to the log and to every client, and client input to the
//! container. Clients never block the monitor: a client that does not
//! read falls behind into a bounded queue and is dropped when that
//! overflows. The socket is root's (the run directory is 0700), as
//! Docker's and podman's are.
//!
//! The stream format is Docker's attach multiplexing: an 8-byte header
//! (kind, three zero bytes, the payload's length as u32 big-endian), then
//! the payload. Kinds monitor → client: 1 stdout, 2 stderr, 3 the exit
//! code (i32 BE) as the last frame. Client → monitor: 0 stdin bytes,
//! 4 a terminal size (rows, cols as u16 BE), 5 a signal (i32 BE).
//!
//! Detaching (`--detach-keys`, default ctrl-p,ctrl-q) is the client's
//! side: it watches its own stdin for the sequence and leaves; the
//! container and its monitor go on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

pub use hako_runtime::os::{DetachKeys, Escape};

use crate::{Error, Result};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const STDIN: u8 = 0;
pub const RESIZE: u8 = 4;
pub const SIGNAL: u8 = 5;

/// A frame's payload is at most this long (a client sending more is
/// broken and dropped).
const MAX_FRAME: usize = 1 << 20;
/// Output queued for a client that does not read; beyond it the client is
/// dropped, so a stuck `attach` never stalls the container or its log.
const MAX_QUEUED: usize = 4 << 20;

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&[kind, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Complete frames at the start of `buf`, removed from it; `Err` for a
/// frame no peer of ours sends.
pub fn take_frames(buf: &mut Vec<u8>) -> std::result::Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let h = &buf[at..at + 8];
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > MAX_FRAME || h[1..4] != [0, 0, 0] {
            return Err(format!("bad attach frame header {h:?}"));
        }
        if buf.len() - at - 8 < len {
            break;
        }
        out.push((h[0], buf[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    buf.drain(..at);
    Ok(out)
}

/// `--detach-keys`, with the engine's usage error.
pub fn parse_detach_keys(s: &str) -> Result<DetachKeys> {
    DetachKeys::parse(s).map_err(Error::Usage)
}

/// The socket, named through our fd of the directory: a path must fit
/// in sun_path (108 bytes), whatever the run root.
fn sock_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd()))
}

/// What a client asked of the monitor.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Stdin(Vec<u8>),
    Resize(u16, u16),
    Signal(i32),
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    queued: VecDeque<u8>,
    /// Fell behind or went away: dropped in [`Server::ready`], so the
    /// clients keep the places [`Server::poll_set`] gave them until then.
    gone: bool,
}

/// The monitor's side: the listening socket and its clients.
pub struct Server {
    _dir: File,
    path: PathBuf,
    listener: UnixListener,
    clients: Vec<Client>,
}

impl Server {
    pub fn bind(run_dir: &Path) -> Result<Server> {
        let dir = File::open(run_dir).map_err(crate::io_err("open", run_dir))?;
        let path = sock_path(&dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(crate::io_err("bind", &path))?;
        listener
            .set_nonblocking(true)
            .map_err(crate::io_err("set nonblocking", &path))?;
        Ok(Server {
            _dir: dir,
            path,
            listener,
            clients: Vec::new(),
        })
    }

    /// The fds to poll with their events, in the order [`Server::ready`]
    /// takes the results.
    pub fn poll_set(&self) -> Vec<(BorrowedFd<'_>, i16)> {
        let mut v = vec![(self.listener.as_fd(), libc::POLLIN)];
        for c in &self.clients {
            let mut ev = libc::POLLIN;
            if !c.queued.is_empty() {
                ev |= libc::POLLOUT;
            }
            v.push((c.sock.as_fd(), ev));
        }
        v
    }

    /// Act on the poll results of [`Server::poll_set`]: accept, read the
    /// clients' requests, write what is queued; drop clients that left.
    pub fn ready(&mut self, revents: &[i16]) -> Vec<Request> {
        let mut reqs = Vec::new();
        let mut gone: Vec<bool> = self.clients.iter().map(|c| c.gone).collect();
        for (i, c) in self.clients.iter_mut().enumerate() {
            if gone[i] {
                continue;
            }
            let rev = revents.get(i + 1).copied().unwrap_or(0);
            if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let mut buf = [0u8; 16 * 1024];
                match c.sock.read(&mut buf) {
                    Ok(0) => gone[i] = true,
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&buf[..n]);
                        match take_frames(&mut c.inbuf) {
                            Ok(frames) => reqs.extend(frames.into_iter().filter_map(request)),
                            Err(_) => gone[i] = true,
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => gone[i] = true,
                }
            }
            if rev & libc::POLLOUT != 0 && !gone[i] && flush(c).is_err() {
                gone[i] = true;
            }
        }
        let mut i = 0;
        self.clients.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        if revents.first().is_some_and(|r| r & libc::POLLIN != 0) {
            while let Ok((sock, _)) = self.listener.accept() {
                if sock.set_nonblocking(true).is_ok() {
                    self.clients.push(Client {
                        sock,
                        inbuf: Vec::new(),
                        queued: VecDeque::new(),
                        gone: false,
                    });
                }
            }
        }
        reqs
    }

    /// Output of the container, to every client.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let f = frame(kind, data);
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            c.queued.extend(&f);
            c.gone = c.queued.len() > MAX_QUEUED || flush(c).is_err();
        }
    }

    /// The container ended: each client gets what is queued and the exit
    /// code (waiting a little for slow ones), and the socket goes.
    pub fn finish(mut self, code: i32) {
        let _ = std::fs::remove_file(&self.path);
        let f = frame(EXIT, &code.to_be_bytes());
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            c.queued.extend(&f);
            let _ = c.sock.set_nonblocking(false);
            let _ = c
                .sock
                .set_write_timeout(Some(std::time::Duration::from_secs(2)));
            let (a, b) = c.queued.as_slices();
            let _ = c.sock.write_all(a).and_then(|()| c.sock.write_all(b));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write what the client can take now.
fn flush(c: &mut Client) -> std::io::Result<()> {
    while !c.queued.is_empty() {
        let (a, _) = c.queued.as_slices();
        match c.sock.write(a) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.queued.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn request((kind, p): (u8, Vec<u8>)) -> Option<Request> {
    match (kind, p.len()) {
        (STDIN, _) => Some(Request::Stdin(p)),
        (RESIZE, 4) => Some(Request::Resize(
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )),
        (SIGNAL, 4) => Some(Request::Signal(i32::from_be_bytes([
            p[0], p[1], p[2], p[3],
        ]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut wire = frame(STDIN, b"hello");
        wire.extend(frame(RESIZE, &[0, 24, 0, 80]));
        wire.extend(frame(SIGNAL, &15i32.to_be_bytes()));
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for chunk in wire.chunks(3) {
            buf.extend_from_slice(chunk);
            got.extend(take_frames(&mut buf).unwrap());
        }
        assert!(buf.is_empty());
        let reqs: Vec<Request> = got.into_iter().filter_map(request).collect();
        assert_eq!(
            reqs,
            vec![
                Request::Stdin(b"hello".to_vec()),
                Request::Resize(24, 80),
                Request::Signal(15)
            ]
        );
        let mut bad = vec![0u8, 1, 0, 0, 0, 0, 0, 1, 9];
        assert!(take_frames(&mut bad).is_err());
        let mut huge = frame(STDIN, b"");
        huge[4..8].copy_from_slice(&(u32::MAX).to_be_bytes());
        assert!(take_frames(&mut huge).is_err());
    }
}
