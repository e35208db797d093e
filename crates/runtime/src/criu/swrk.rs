//! One conversation with `criu swrk`: CRIU's RPC service on a socket
//! inherited as fd 3, which is how runc drives it (the `criu` command line
//! cannot pass fds for inherited pipes, namespaces or the pty master).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

use prost::Message;

use super::rpc::{Req, ReqType, Resp};
use crate::error::{Context, Error, Result};
use crate::sys;

/// The largest message CRIU sends (runc reads into the same size).
const MAX_MSG: usize = 10 * 4096;

/// What hako says when there is no criu to run.
pub const MISSING: &str =
    "checkpoint and restore need CRIU: criu was not found in PATH (Debian: apt install criu)";

pub struct Session {
    sock: OwnedFd,
    child: std::process::Child,
}

/// A notification CRIU sends while it works (`notify_scripts`).
pub struct Note {
    pub script: String,
    pub pid: i32,
    pub fd: Option<OwnedFd>,
}

impl Session {
    /// Start `criu swrk 3`; `extra` become its fds 4, 5, … (for
    /// `inherit_fd` entries). Its stdio is ours: on restore the inherited
    /// pipes of the restored process are keyed to it.
    pub fn start(extra: &[BorrowedFd<'_>]) -> Result<Session> {
        let (ours, theirs) = sys::socketpair_seqpacket().ctx(|| "criu socketpair".into())?;
        // Every source is first copied above any target number, so that
        // the dup2 calls in the child cannot overwrite one another.
        let mut moves: Vec<(OwnedFd, RawFd)> = Vec::new();
        for (i, fd) in std::iter::once(theirs.as_fd())
            .chain(extra.iter().copied())
            .enumerate()
        {
            let high = sys::dup_above(fd, 64 + extra.len() as RawFd)
                .ctx(|| "copy an fd for criu".into())?;
            moves.push((high, 3 + i as RawFd));
        }
        let pairs: Vec<(RawFd, RawFd)> = moves.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        let mut cmd = std::process::Command::new("criu");
        cmd.args(["swrk", "3"]);
        // SAFETY: between fork and exec the closure only calls dup2 and
        // sigprocmask, both async-signal-safe, on fds the parent keeps open
        // until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in &pairs {
                    if libc::dup2(*from, *to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // `run` blocks every signal; CRIU needs its SIGCHLD.
                let empty = sys::empty_sigmask();
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Other(MISSING.into())
            } else {
                Error::Io {
                    step: "start criu swrk".into(),
                    cause: e,
                }
            }
        })?;
        drop(moves);
        drop(theirs);
        Ok(Session { sock: ours, child })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `req` and answer CRIU's notifications with `on_note` until its
    /// final response, then wait for criu to exit.
    pub fn call(mut self, req: &Req, mut on_note: impl FnMut(Note) -> Result<()>) -> Result<Resp> {
        let r = self.exchange(req, &mut on_note);
        // Closing our end makes a criu still waiting for a request exit.
        drop(self.sock);
        let status = self.child.wait().ctx(|| "wait for criu".into())?;
        let resp = r?;
        // A pre-dump's criu waits for the next request; it is done.
        if !status.success() && req.r#type != ReqType::PreDump as i32 {
            return Err(Error::Other(format!("criu exited with {status}")));
        }
        Ok(resp)
    }

    fn exchange(
        &mut self,
        req: &Req,
        on_note: &mut impl FnMut(Note) -> Result<()>,
    ) -> Result<Resp> {
        self.send(req)?;
        loop {
            let (data, fd) =
                sys::recv_msg(self.sock.as_fd(), MAX_MSG).ctx(|| "read from criu".into())?;
            if data.is_empty() {
                return Err(Error::Other("criu exited before it answered".into()));
            }
            let resp = Resp::decode(&data[..])
                .map_err(|e| Error::Other(format!("criu sent a message hako cannot read: {e}")))?;
            if !resp.success {
                return Err(Error::Other(failure(&resp)));
            }
            if resp.r#type != ReqType::Notify as i32 {
                return Ok(resp);
            }
            let n = resp.notify.unwrap_or_default();
            on_note(Note {
                script: n.script.unwrap_or_default(),
                pid: n.pid.unwrap_or(0),
                fd,
            })?;
            self.send(&Req {
                r#type: ReqType::Notify as i32,
                notify_success: Some(true),
                ..Default::default()
            })?;
        }
    }

    fn send(&self, req: &Req) -> Result<()> {
        let data = req.encode_to_vec();
        // SAFETY: a plain send of a buffer we own on a socket we own.
        let n = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "write to criu".into());
        }
        Ok(())
    }
}

fn failure(resp: &Resp) -> String {
    let mut s = "criu failed".to_string();
    if let Some(m) = resp
        .cr_errmsg
        .as_deref()
        .map(log_message)
        .filter(|m| !m.is_empty())
    {
        s.push_str(&format!(": {m}"));
    }
    if let Some(e) = resp.cr_errno.filter(|e| *e != 0) {
        s.push_str(&format!(" ({})", std::io::Error::from_raw_os_error(e)));
    }
    s
}

/// CRIU's version as one number (3.17.1 → 31701), as runc compares it.
pub fn version() -> Result<u32> {
    let resp = Session::start(&[])?.call(
        &Req {
            r#type: ReqType::Version as i32,
            ..Default::default()
        },
        |_| Ok(()),
    )?;
    let v = resp
        .version
        .ok_or_else(|| Error::Other("criu did not report its version".into()))?;
    Ok(
        v.major_number as u32 * 10000
            + v.minor_number as u32 * 100
            + v.sublevel.unwrap_or(0) as u32,
    )
}

/// "(00.012345) Error (criu/x.c:12): what\n" → "what".
fn log_message(l: &str) -> &str {
    match l.find("Error (") {
        Some(i) => l[i..].split_once("): ").map_or(l, |(_, m)| m),
        None => l,
    }
    .trim()
}

/// The lines of a CRIU log that say what went wrong (at most a few), for a
/// one-line error; the whole log stays where it is.
pub fn log_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let errs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error"))
        .map(log_message)
        // CRIU logs every helper it probes with that fails (iptables…).
        .filter(|m| !m.starts_with("exited, status="))
        .take(2)
        .collect();
    errs.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_keeps_the_messages() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dump.log");
        std::fs::write(
            &p,
            "(00.000010) Version: 3.17.1\n\
             (00.000600) Error (criu/util.c:642): exited, status=1\n\
             (00.001000) Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n\
             (00.001100) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed\n\
             (00.001150) Error (criu/y.c:1): a third one\n\
             (00.001200) Warn  (criu/x.c:1): not an error\n",
        )
        .unwrap();
        assert_eq!(
            log_errors(&p),
            "vdso: Failed to fill self vdso symtable; kerndat_vdso_fill_symtable failed"
        );
        assert_eq!(log_errors(&d.path().join("missing.log")), "");
    }
}
