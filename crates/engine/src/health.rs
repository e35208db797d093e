//! Health checks, as Docker's: `--health-cmd` (or the image's
//! HEALTHCHECK), run in the container every `--health-interval` by its
//! monitor (a `hako healthcheck run` child, so the monitor's loop never
//! waits for one), each for at most `--health-timeout`; `--health-retries`
//! failures in a row make it unhealthy, failures within
//! `--health-start-period` do not count until it was healthy once. The
//! state and the last five results are in the record (inspect's
//! State.Health, `(healthy)` in ps).

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dirs::Dirs;
use crate::record::{self, Record};
use crate::{Error, Result};

/// What to run and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// One result (Docker's HealthcheckResult).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// The container's health (Docker's State.Health).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

fn duration(flag: &str, v: &Option<String>, default: Duration) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some(s) => crate::util::parse_go_duration(s)
            .or_else(|| s.parse::<u64>().ok().map(Duration::from_secs))
            .ok_or_else(|| Error::Usage(format!("--{flag} {s:?}: a duration such as 30s or 1m"))),
    }
}

/// An image's HEALTHCHECK: the command, its interval, timeout and start
/// period in nanoseconds, and its retries.
struct ImageCheck {
    test: Vec<String>,
    nanos: [Option<u64>; 3],
    retries: Option<u32>,
}

/// The image's HEALTHCHECK (Docker's config: Test, and nanoseconds).
fn from_image(h: &serde_json::Value) -> Option<ImageCheck> {
    let test: Vec<String> = h["Test"]
        .as_array()?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    let argv = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test.get(1)?.clone()],
        _ => return None,
    };
    let ns = |k: &str| h[k].as_u64().filter(|n| *n > 0);
    Some(ImageCheck {
        test: argv,
        nanos: [ns("Interval"), ns("Timeout"), ns("StartPeriod")],
        retries: h["Retries"].as_u64().map(|r| r as u32).filter(|r| *r > 0),
    })
}

/// The health check of a container: its flags over the image's; `None`
/// without one (or with `--no-healthcheck`). Bad flags are errors.
pub fn config(
    opts: &crate::record::RunOptions,
    image: &serde_json::Value,
) -> Result<Option<Config>> {
    if opts.no_healthcheck {
        return Ok(None);
    }
    let img = from_image(&image["Healthcheck"]);
    let test = match (&opts.health_cmd, &img) {
        (Some(c), _) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        (None, Some(i)) => i.test.clone(),
        (None, None) => return Ok(None),
    };
    let [ii, it, is] = img.as_ref().map(|i| i.nanos).unwrap_or_default();
    let d = |n: Option<u64>, dflt: u64| Duration::from_nanos(n.unwrap_or(dflt));
    Ok(Some(Config {
        test,
        interval: duration(
            "health-interval",
            &opts.health_interval,
            d(ii, 30_000_000_000),
        )?,
        timeout: duration(
            "health-timeout",
            &opts.health_timeout,
            d(it, 30_000_000_000),
        )?,
        retries: opts
            .health_retries
            .or(img.as_ref().and_then(|i| i.retries))
            .unwrap_or(3),
        start_period: duration("health-start-period", &opts.health_start_period, d(is, 0))?,
    }))
}

/// The state after one result: Docker's rules.
pub fn next(h: &Health, code: i32, retries: u32, in_start_period: bool) -> (String, u32) {
    if code == 0 {
        return ("healthy".into(), 0);
    }
    if in_start_period && h.status != "healthy" {
        return (h.status.clone(), h.failing_streak);
    }
    let streak = h.failing_streak + 1;
    let status = if streak >= retries {
        "unhealthy".to_string()
    } else if h.status.is_empty() {
        "starting".to_string()
    } else {
        h.status.clone()
    };
    (status, streak)
}

/// Run the check once now (`healthcheck run`, and the monitor's runs):
/// the command in the container with its output kept (at most 4 KiB), its
/// exit code, or -1 when it outlived the timeout (it is then killed).
/// Returns whether the container is healthy afterwards.
pub fn run(dirs: &Dirs, name: &str) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let Some(cfg) = r.healthcheck.clone() else {
        return Err(Error::State {
            id: r.name,
            msg: "has no health check".into(),
        });
    };
    crate::status::live(dirs, &id)?;
    let start = crate::util::now_rfc3339_nanos();
    let out = tempfile_fd()?;
    let pidfile = dirs
        .container(&id)
        .join(format!("health.{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    // A check the helper started but could not name yet (no pid file when
    // the timeout hits) is re-parented to us when the helper is killed,
    // so it can be killed too: see wait_or_kill.
    let _ = hako_runtime::os::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    let code = match hako_runtime::os::fork().map_err(crate::sys_err("fork"))? {
        None => {
            let _ = hako_runtime::os::dup2(std::os::fd::AsRawFd::as_raw_fd(&out), 1);
            let _ = hako_runtime::os::dup2(std::os::fd::AsRawFd::as_raw_fd(&out), 2);
            let code = crate::ns::exec(
                dirs,
                &id,
                crate::ns::ExecRequest {
                    cmd: cfg.test.clone(),
                    env: &[],
                    workdir: None,
                    user: None,
                    tty: false,
                    detach: false,
                    detach_keys: None,
                    pid_file: Some(pidfile.clone()),
                },
            )
            .unwrap_or(-1);
            // SAFETY: _exit ends the forked child without the parent's
            // destructors.
            unsafe { libc::_exit(code & 0xff) }
        }
        Some(child) => wait_or_kill(child, &pidfile, cfg.timeout),
    };
    let _ = std::fs::remove_file(&pidfile);
    let mut output = String::new();
    let mut f = std::fs::File::from(out);
    let _ = f.rewind();
    let _ = f.take(4096).read_to_string(&mut output);
    let probe = Probe {
        start,
        end: crate::util::now_rfc3339_nanos(),
        exit_code: code,
        output,
    };
    let started = r
        .started_at
        .as_deref()
        .and_then(crate::util::parse_rfc3339)
        .unwrap_or(0);
    let now_ns = crate::util::parse_rfc3339(&probe.end).unwrap_or(0);
    let in_start = now_ns - started < cfg.start_period.as_nanos() as i64;
    let before = r.health.as_ref().map(|h| h.status.clone());
    let r = record::update(dirs, &id, |r| {
        let h = r.health.get_or_insert_with(Default::default);
        let (status, streak) = next(h, code, cfg.retries, in_start);
        h.status = status;
        h.failing_streak = streak;
        h.log.push(probe.clone());
        let n = h.log.len();
        if n > 5 {
            h.log.drain(..n - 5);
        }
    })?;
    let now = r
        .health
        .as_ref()
        .map(|h| h.status.clone())
        .unwrap_or_default();
    if before.as_deref() != Some(now.as_str()) {
        crate::events::container(dirs, &format!("health_status: {now}"), &r, &[]);
    }
    Ok(now)
}

/// A close-on-exec anonymous file for the check's output.
fn tempfile_fd() -> Result<std::os::fd::OwnedFd> {
    let name = std::ffi::CString::new("hako-health").expect("no NUL");
    // SAFETY: memfd_create with a valid C string returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(crate::sys_err("memfd_create")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The check's exit code, or -1 after killing it at the timeout (the
/// process in the container, whose pid the runtime wrote, and our child).
fn wait_or_kill(child: i32, pidfile: &std::path::Path, timeout: Duration) -> i32 {
    let Ok(pidfd) = hako_runtime::os::pidfd_open(child) else {
        return hako_runtime::os::waitpid(child, 0)
            .ok()
            .flatten()
            .map_or(-1, hako_runtime::os::exit_code);
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    if hako_runtime::os::poll_in(pidfd.as_fd(), ms).unwrap_or(false) {
        return hako_runtime::os::waitpid(child, 0)
            .ok()
            .flatten()
            .map_or(-1, hako_runtime::os::exit_code);
    }
    if let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let _ = hako_runtime::os::kill(pid, libc::SIGKILL);
    }
    let _ = hako_runtime::os::kill(child, libc::SIGKILL);
    let _ = hako_runtime::os::waitpid(child, 0);
    // What the helper left is ours now (we are a subreaper): kill it and
    // wait until it is gone, so the check never outlives its verdict.
    // (Bounded: a task of a frozen v1 cgroup dies only once thawed.)
    let me = std::process::id();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let kids =
            std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        let kids: Vec<i32> = kids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.is_empty() {
            break;
        }
        for k in kids {
            let _ = hako_runtime::os::kill(k, libc::SIGKILL);
            let _ = hako_runtime::os::waitpid(k, libc::WNOHANG);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    -1
}

/// `(healthy)`, `(unhealthy)` or `(health: starting)` after ps's "Up …".
pub fn ps_suffix(r: &Record) -> String {
    match r.health.as_ref().map(|h| h.status.as_str()) {
        Some("healthy") => " (healthy)".into(),
        Some("unhealthy") => " (unhealthy)".into(),
        Some(_) => " (health: starting)".into(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_over_the_image() {
        let mut o = crate::record::RunOptions::default();
        let img = json!({"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 2}});
        let c = config(&o, &img).unwrap().unwrap();
        assert_eq!(c.test, ["/bin/sh", "-c", "true"]);
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.retries, 2);
        o.health_cmd = Some("exit 1".into());
        o.health_interval = Some("1s".into());
        let c = config(&o, &img).unwrap().unwrap();
        assert_eq!(c.test, ["/bin/sh", "-c", "exit 1"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        o.no_healthcheck = true;
        assert!(config(&o, &img).unwrap().is_none());
        assert!(config(
            &Default::default(),
            &json!({"Healthcheck": {"Test": ["NONE"]}})
        )
        .unwrap()
        .is_none());
        let bad = crate::record::RunOptions {
            health_cmd: Some("true".into()),
            health_interval: Some("often".into()),
            ..Default::default()
        };
        assert!(config(&bad, &json!({}))
            .unwrap_err()
            .to_string()
            .contains("--health-interval"));
    }

    #[test]
    fn dockers_state_rules() {
        let h = |s: &str, n| Health {
            status: s.into(),
            failing_streak: n,
            log: vec![],
        };
        assert_eq!(next(&h("starting", 2), 0, 3, false), ("healthy".into(), 0));
        assert_eq!(next(&h("healthy", 1), 1, 3, false), ("healthy".into(), 2));
        assert_eq!(next(&h("healthy", 2), 1, 3, false), ("unhealthy".into(), 3));
        assert_eq!(
            next(&h("starting", 0), 1, 1, true),
            ("starting".into(), 0),
            "start period"
        );
        assert_eq!(
            next(&h("healthy", 0), 1, 1, true),
            ("unhealthy".into(), 1),
            "counted once healthy"
        );
    }
}
