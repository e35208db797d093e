//! OCI hooks: each one runs with the container state JSON on stdin, its own
//! env, an optional timeout, and its output kept for the error message.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};
use crate::log;
use crate::sys;

fn output_file() -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a literal name returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"hako-hook".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is new and owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Run one hook to completion.
pub fn run_hook(kind: &'static str, idx: usize, hook: &Hook, state: &[u8]) -> Result<()> {
    let err = |msg: String| Error::Hook {
        kind,
        idx,
        path: hook.path().clone(),
        msg,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let out = output_file().map_err(|e| err(format!("output buffer: {e}")))?;
    let out2 = out.try_clone().map_err(|e| err(e.to_string()))?;
    let reader = out.try_clone().map_err(|e| err(e.to_string()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(out2));
    let mut child = cmd.spawn().map_err(|e| err(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state);
    }
    let pidfd = sys::pidfd_open(child.id() as i32).map_err(|e| err(e.to_string()))?;
    let timeout_ms = hook
        .timeout()
        .map(|t| t.saturating_mul(1000).min(i32::MAX as i64) as i32)
        .unwrap_or(-1);
    let done = sys::poll_in(pidfd.as_fd(), timeout_ms).map_err(|e| err(e.to_string()))?;
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err(format!(
            "timed out after {}s",
            hook.timeout().unwrap_or_default()
        )));
    }
    let status = child.wait().map_err(|e| err(e.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let text = read_back(reader);
    let text = text.trim();
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    Err(err(if text.is_empty() {
        how
    } else {
        format!("{how}: {}", tail(text, 512))
    }))
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Run a list of hooks. Fatal kinds stop at the first failure; the others
/// (poststart, poststop) warn and go on, as runtime-spec says.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state: &[u8], fatal: bool) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_hook(kind, i, h, state) {
            if fatal {
                return Err(e);
            }
            log::warn(&e.to_string());
        }
    }
    Ok(())
}

/// What the hook printed (stdout and stderr share one memfd).
fn read_back(mut f: std::fs::File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    s
}
