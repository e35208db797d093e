//! Typed messages between the runtime (parent) and the container's init.
//!
//! A SOCK_SEQPACKET socketpair carries one message per packet: a tag, an
//! integer and, for errors, text. No serde: a fixed little header, so a
//! desync shows as "expected X, got Y" instead of a hang.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// parent → init: cgroup joined, id maps written; the value is the
    /// init's pid as the host sees it.
    Go(i32),
    /// intermediate → parent: the pid of the real init (after a second fork).
    InitPid(i32),
    /// init → parent: mounts are done; run prestart/createRuntime hooks.
    HooksRequest,
    /// parent → init: those hooks ran.
    HooksDone,
    /// init → parent: everything is set up; waiting for `start`.
    Ready,
    /// init → parent: setup failed.
    Failed(String),
}

const T_GO: u32 = 1;
const T_INIT_PID: u32 = 2;
const T_HOOKS_REQUEST: u32 = 3;
const T_HOOKS_DONE: u32 = 4;
const T_READY: u32 = 5;
const T_FAILED: u32 = 6;

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::Go(_) => "go",
            Msg::InitPid(_) => "init-pid",
            Msg::HooksRequest => "hooks-request",
            Msg::HooksDone => "hooks-done",
            Msg::Ready => "ready",
            Msg::Failed(_) => "failed",
        }
    }
}

/// The most text one message carries (the receiver reads 4096 bytes).
const MAX_TEXT: usize = 4000;

/// `text` cut to at most `max` bytes from the middle: an error message
/// names the step first and its cause (the errno) last, so both ends stay.
fn bounded(text: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if text.len() <= max {
        return text.into();
    }
    let marker = format!(" [... {} bytes cut ...] ", text.len() - max);
    let keep = max.saturating_sub(marker.len());
    // Cut on UTF-8 character boundaries (never inside a character).
    let cont = |i: usize| text.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    let mut head = keep / 3;
    while head > 0 && cont(head) {
        head -= 1;
    }
    let mut start = text.len() - (keep - keep / 3);
    while start < text.len() && cont(start) {
        start += 1;
    }
    let mut out = Vec::with_capacity(max);
    out.extend_from_slice(&text[..head]);
    out.extend_from_slice(marker.as_bytes());
    out.extend_from_slice(&text[start..]);
    out.into()
}

pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    pub fn new(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn send(&self, m: &Msg) -> io::Result<()> {
        let (tag, val, text): (u32, i32, &[u8]) = match m {
            Msg::Go(p) => (T_GO, *p, &[]),
            Msg::InitPid(p) => (T_INIT_PID, *p, &[]),
            Msg::HooksRequest => (T_HOOKS_REQUEST, 0, &[]),
            Msg::HooksDone => (T_HOOKS_DONE, 0, &[]),
            Msg::Ready => (T_READY, 0, &[]),
            Msg::Failed(s) => (T_FAILED, 0, s.as_bytes()),
        };
        let text = bounded(text, MAX_TEXT);
        let mut buf = Vec::with_capacity(8 + text.len());
        buf.extend_from_slice(&tag.to_le_bytes());
        buf.extend_from_slice(&val.to_le_bytes());
        buf.extend_from_slice(&text);
        // SAFETY: buf is valid for its length; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receive one message; `Ok(None)` when the other side closed.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = [0u8; 4096];
        let n = sys::read_fd(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if n < 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short sync message",
            ));
        }
        let tag = u32::from_le_bytes(buf[0..4].try_into().unwrap_or_default());
        let val = i32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
        Ok(Some(match tag {
            T_GO => Msg::Go(val),
            T_INIT_PID => Msg::InitPid(val),
            T_HOOKS_REQUEST => Msg::HooksRequest,
            T_HOOKS_DONE => Msg::HooksDone,
            T_READY => Msg::Ready,
            T_FAILED => Msg::Failed(String::from_utf8_lossy(&buf[8..n]).into_owned()),
            t => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown sync message tag {t}"),
                ))
            }
        }))
    }

    /// Receive and insist on a particular kind of message. A `Failed` from
    /// the init becomes its error; EOF means the init died.
    pub fn expect(&self, want: &str) -> Result<Msg> {
        match self.recv() {
            Ok(Some(Msg::Failed(s))) => Err(Error::Init(s)),
            Ok(Some(m)) if m.name() == want => Ok(m),
            Ok(Some(m)) => Err(Error::Other(format!(
                "sync with container init: expected {want}, received {}",
                m.name()
            ))),
            Ok(None) => Err(Error::Init(format!(
                "container init exited before sending {want}"
            ))),
            Err(e) => Err(Error::Io {
                step: format!("sync with container init (waiting for {want})"),
                cause: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_desync() {
        let (a, b) = sys::socketpair_seqpacket().unwrap();
        let (a, b) = (Channel::new(a), Channel::new(b));
        a.send(&Msg::Go(42)).unwrap();
        assert_eq!(b.expect("go").unwrap(), Msg::Go(42));
        a.send(&Msg::Failed("mount proc on /proc: EPERM".into()))
            .unwrap();
        assert_eq!(
            b.expect("ready").unwrap_err().to_string(),
            "mount proc on /proc: EPERM"
        );
        a.send(&Msg::HooksRequest).unwrap();
        assert!(b
            .expect("ready")
            .unwrap_err()
            .to_string()
            .contains("expected ready, received hooks-request"));
        // A huge message keeps its start and its cause at the end.
        let long = format!(
            "setgroups {}: Invalid argument (os error 22)",
            "9, ".repeat(30_000)
        );
        a.send(&Msg::Failed(long)).unwrap();
        let got = b.expect("ready").unwrap_err().to_string();
        assert!(got.len() <= MAX_TEXT, "{}", got.len());
        assert!(got.starts_with("setgroups 9, 9"), "{got}");
        assert!(
            got.ends_with("9, : Invalid argument (os error 22)"),
            "{got}"
        );
        assert!(got.contains("bytes cut"), "{got}");
        // Multi-byte characters are never split.
        a.send(&Msg::Failed(format!("x{}", "é".repeat(5000))))
            .unwrap();
        let got = b.expect("ready").unwrap_err().to_string();
        assert!(!got.contains('\u{FFFD}'), "{got}");
        drop(a);
        assert!(b
            .expect("ready")
            .unwrap_err()
            .to_string()
            .contains("exited"));
    }
}
