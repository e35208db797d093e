//! `logs [-f] [--tail N] [-t]`.

use std::io::{BufRead, Read, Seek, Write};
use std::time::Duration;

use serde_json::Value;

use crate::dirs::Dirs;
use crate::record::{self, Phase};
use crate::status::{monitor_alive, status};
use crate::util;
use crate::{io_err, Error, Result};

/// What `logs` shows.
#[derive(Debug, Default, Clone)]
pub struct LogOptions {
    pub follow: bool,
    /// The last N lines only.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Lines logged at or after this time (ns since the epoch) …
    pub since: Option<i64>,
    /// … and before this one.
    pub until: Option<i64>,
}

/// `--since`/`--until` as Docker reads them: an RFC 3339 time, seconds
/// since the epoch (`1733299200[.5]`), or a duration before `now_ns`
/// (`90s`, `10m`, `1h30m`, `1.5h`); in ns since the epoch.
pub fn time_bound(flag: &str, v: &str, now_ns: i64) -> Result<i64> {
    let bad = || {
        Error::Usage(format!(
            "{flag} {v:?}: an RFC 3339 time, seconds since the epoch, or a duration such as 10m or 1h30m"
        ))
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    if let Ok(secs) = v.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let d = crate::util::parse_go_duration(v).ok_or_else(bad)?;
    Ok(now_ns - d.as_nanos() as i64)
}

/// `logs`: write the container's log to `out`/`err`.
pub fn logs(
    dirs: &Dirs,
    name: &str,
    opts: &LogOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let LogOptions {
        follow, timestamps, ..
    } = *opts;
    // A line's time, for --since/--until.
    let in_window = |v: &Value| -> bool {
        if opts.since.is_none() && opts.until.is_none() {
            return true;
        }
        let t = v["time"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .and_then(|d| d.timestamp_nanos_opt());
        t.is_some_and(|t| opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t < u))
    };
    let id = record::resolve(dirs, name)?;
    if let Ok(r) = record::load(dirs, &id) {
        if crate::monitor::LogConfig::of(&r.opts).is_ok_and(|c| c.none) {
            return Err(Error::Usage(format!(
                "{name}: its log driver is none: there is no log to read (as Docker)"
            )));
        }
    }
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
        if !in_window(&v) {
            return Ok(true);
        }
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
    // Rotated files first (`--log-opt max-size`), oldest first.
    let mut content = String::new();
    for p in crate::monitor::log_files(&path) {
        if p != path {
            let _ = std::fs::File::open(&p).and_then(|mut r| r.read_to_string(&mut content));
        }
    }
    f.read_to_string(&mut content)
        .map_err(io_err("read", &path))?;
    let mut lines: Vec<&str> = content.lines().collect();
    if let Some(n) = opts.tail {
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
        // Rotated since (`--log-opt max-size`): the rest of the old file,
        // then the new one from its start.
        use std::os::unix::fs::MetadataExt;
        let rotated = std::fs::metadata(&path)
            .ok()
            .zip(f.metadata().ok())
            .is_some_and(|(now, open)| now.ino() != open.ino());
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
        drop(r);
        if rotated {
            // The files rotated after ours (ours is `.k`, or gone if the
            // rotations outran us), each in full, then the current one.
            let files = crate::monitor::log_files(&path);
            let ours = f.metadata().map(|m| m.ino()).ok();
            let after = files
                .iter()
                .position(|p| std::fs::metadata(p).ok().map(|m| m.ino()) == ours)
                .map_or(0, |i| i + 1);
            for p in &files[after..files.len() - 1] {
                let mut text = String::new();
                let _ = std::fs::File::open(p).and_then(|mut r| r.read_to_string(&mut text));
                for l in text.lines() {
                    if !print(l, out, err)? {
                        return Ok(());
                    }
                }
            }
            if let Ok(new) = std::fs::File::open(&path) {
                f = new;
                pos = 0;
                continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_until_read_as_docker_reads_them() {
        let now = 1_000_000 * 1_000_000_000i64;
        assert_eq!(
            time_bound("--since", "10m", now).unwrap(),
            now - 600_000_000_000
        );
        assert_eq!(
            time_bound("--since", "1h30m", now).unwrap(),
            now - 5_400_000_000_000
        );
        assert_eq!(
            time_bound("--since", "1.5h", now).unwrap(),
            now - 5_400_000_000_000
        );
        assert_eq!(
            time_bound("--since", "1733299200", now).unwrap(),
            1_733_299_200_000_000_000
        );
        assert_eq!(
            time_bound("--until", "2024-12-04T08:00:00Z", now).unwrap(),
            1_733_299_200_000_000_000
        );
        for bad in ["", "10", "x", "10q", "m", "10m5"] {
            if bad == "10" {
                continue; // seconds since the epoch
            }
            let e = time_bound("--since", bad, now).unwrap_err().to_string();
            assert!(e.starts_with("--since"), "{bad}: {e}");
        }
    }
}
