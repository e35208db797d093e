//! `logs [-f] [--tail N] [-t]`.

use std::io::{BufRead, Read, Seek, Write};
use std::time::Duration;

use serde_json::Value;

use crate::dirs::Dirs;
use crate::record::{self, Phase};
use crate::status::{monitor_alive, status};
use crate::util;
use crate::{io_err, Error, Result};

/// `logs`: write the container's log to `out`/`err`.
pub fn logs(
    dirs: &Dirs,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let id = record::resolve(dirs, name)?;
    let path = record::log_path(dirs, &id);
    let mut f = loop {
        match std::fs::File::open(&path) {
            Ok(f) => break f,
            Err(_)
                if follow && record::load(dirs, &id).is_ok_and(|r| status(dirs, &r).is_live()) =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => return Ok(()),
        }
    };
    // Ok(false): the reader of our output is gone (`| head`): stop quietly.
    let print = |line: &str, out: &mut dyn Write, err: &mut dyn Write| -> Result<bool> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return Ok(true);
        };
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        let r = (|| {
            if timestamps {
                write!(w, "{} ", v["time"].as_str().unwrap_or(""))?;
            }
            w.write_all(text.as_bytes())?;
            w.flush()
        })();
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(Error::Other(format!("write the log: {e}"))),
        }
    };
    let mut content = String::new();
    f.read_to_string(&mut content)
        .map_err(io_err("read", &path))?;
    let mut lines: Vec<&str> = content.lines().collect();
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    for l in lines {
        if !print(l, out, err)? {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position().map_err(io_err("read", &path))?;
    let mut partial = String::new();
    loop {
        let live = record::load(dirs, &id).is_ok_and(|r| {
            let s = status(dirs, &r);
            s.is_live() || (r.phase == Phase::Running && monitor_alive(&r))
        });
        let mut r = std::io::BufReader::new(&f);
        let _ = r.seek(std::io::SeekFrom::Start(pos));
        let mut got = false;
        loop {
            let mut l = String::new();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pos += n as u64;
                    got = true;
                    partial.push_str(&l);
                    if partial.ends_with('\n') {
                        if !print(partial.trim_end(), out, err)? {
                            return Ok(());
                        }
                        partial.clear();
                    }
                }
            }
        }
        if !live && !got {
            return Ok(());
        }
        if !got {
            if util::stdout_closed() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
