//! The runtime's log, in runc's shapes: containerd reads the last JSON
//! `{"level":"error","msg":…}` line of `--log` to report why a call failed.
//! A tiny writer rather than the `tracing` stack: it is on the start path.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Config {
    file: Option<PathBuf>,
    json: bool,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn init(file: Option<PathBuf>, json: bool, debug: bool) {
    let _ = CONFIG.set(Config { file, json, debug });
}

fn emit(level: &str, msg: &str, also_stderr: bool) {
    let cfg = CONFIG.get();
    let line = if cfg.is_some_and(|c| c.json) {
        let mut l = serde_json::json!({
            "level": level,
            "msg": msg,
            "time": crate::state::now_rfc3339(),
        })
        .to_string();
        l.push('\n');
        l
    } else {
        format!(
            "time=\"{}\" level={level} msg={:?}\n",
            crate::state::now_rfc3339(),
            msg
        )
    };
    let mut wrote_file = false;
    if let Some(path) = cfg.and_then(|c| c.file.as_ref()) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            wrote_file = f.write_all(line.as_bytes()).is_ok();
        }
    }
    if also_stderr || !wrote_file {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        emit("debug", msg, false);
    }
}

pub fn warn(msg: &str) {
    emit("warning", msg, false);
}

/// Record an error in the log file (the CLI prints the user-facing line).
pub fn error_to_file(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.file.is_some()) {
        emit("error", msg, false);
    }
}
