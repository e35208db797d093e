//! Rootless networking: an unprivileged user cannot create bridges, veths
//! or nft rules, so the container's namespace gets a tap device served by
//! `pasta` (Debian package `passt`), a userspace stack that turns the
//! container's traffic into ordinary sockets of the user, and listens on
//! the host for published ports.
//!
//! pasta daemonizes once the namespace is configured and exits by itself
//! when the namespace's last process does, so the engine only starts it
//! and, when removing a container early, stops it by the PID it recorded.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ports::{PortMapping, Proto};

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("start {program} for {target}")]
    Spawn {
        program: PathBuf,
        target: String,
        source: io::Error,
    },
    #[error("{program} for {target} failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        target: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("read pasta pid file {path}")]
    PidFile { path: PathBuf, source: io::Error },
    #[error("stop pasta (pid {pid})")]
    Stop { pid: i32, source: io::Error },
}

/// Whose namespace pasta serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A process: pasta joins its user and network namespaces.
    Pid(u32),
    /// Namespace files (bind mounts); the user namespace is optional.
    Paths {
        netns: PathBuf,
        userns: Option<PathBuf>,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Pid(p) => write!(f, "pid {p}"),
            Target::Paths { netns, .. } => write!(f, "netns {}", netns.display()),
        }
    }
}

/// True when hako runs unprivileged and must use [`start_pasta`].
pub fn is_rootless() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() != 0 }
}

fn port_spec(p: &PortMapping) -> String {
    match p.host_ip {
        Some(ip) => format!("{ip}/{}:{}", p.host_port, p.container_port),
        None => format!("{}:{}", p.host_port, p.container_port),
    }
}

/// pasta's command line. Every forwarding direction is spelled out: pasta's
/// default (`auto`) would also forward every port the container binds, and
/// let the container reach ports bound on the host's loopback (-T/-U);
/// `--no-map-gw` keeps the gateway address from leading to the host.
pub fn pasta_args(target: &Target, ports: &[PortMapping], pid_file: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["--config-net", "--quiet", "--no-map-gw"]
        .map(String::from)
        .to_vec();
    a.push("--pid".into());
    a.push(pid_file.display().to_string());
    for (flag, proto) in [("-t", Proto::Tcp), ("-u", Proto::Udp)] {
        let mut any = false;
        for p in ports.iter().filter(|p| p.proto == proto) {
            a.push(flag.into());
            a.push(port_spec(p));
            any = true;
        }
        if !any {
            a.extend([flag.to_string(), "none".into()]);
        }
    }
    a.extend(["-T", "none", "-U", "none"].map(String::from));
    match target {
        Target::Pid(pid) => a.push(pid.to_string()),
        Target::Paths { netns, userns } => {
            if let Some(u) = userns {
                a.push("--userns".into());
                a.push(u.display().to_string());
            }
            a.push("--netns".into());
            a.push(netns.display().to_string());
        }
    }
    a
}

/// Starts pasta for `target` and returns its PID once the namespace is
/// configured (pasta forks into the background when ready).
pub fn start_pasta(
    program: &Path,
    target: &Target,
    ports: &[PortMapping],
    pid_file: &Path,
) -> Result<i32, RootlessError> {
    let out = Command::new(program)
        .args(pasta_args(target, ports, pid_file))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| RootlessError::Spawn {
            program: program.to_owned(),
            target: target.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(RootlessError::Failed {
            program: program.to_owned(),
            target: target.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let pid_err = |source| RootlessError::PidFile {
        path: pid_file.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(pid_file).map_err(pid_err)?;
    text.trim()
        .parse()
        .map_err(|_| pid_err(io::Error::new(io::ErrorKind::InvalidData, text.clone())))
}

/// Stops a pasta started by [`start_pasta`]; an already exited one is fine.
pub fn stop_pasta(pid: i32) -> Result<(), RootlessError> {
    // SAFETY: kill(2) takes plain integers; a stale PID is the caller's
    // responsibility (hako records the PID it got from pasta's pid file).
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(RootlessError::Stop { pid, source: e });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_spell_out_every_direction() {
        let ports: Vec<PortMapping> = vec![
            "127.0.0.1:8080:80".parse().unwrap(),
            "53:53/udp".parse().unwrap(),
        ];
        let a = pasta_args(&Target::Pid(42), &ports, Path::new("/run/p.pid"));
        let s = a.join(" ");
        assert_eq!(
            s,
            "--config-net --quiet --no-map-gw --pid /run/p.pid -t 127.0.0.1/8080:80 \
             -u 53:53 -T none -U none 42"
        );
        let a = pasta_args(
            &Target::Paths {
                netns: "/run/netns/x".into(),
                userns: None,
            },
            &[],
            Path::new("/p"),
        );
        assert!(a
            .join(" ")
            .ends_with("-t none -u none -T none -U none --netns /run/netns/x"));
    }
}
