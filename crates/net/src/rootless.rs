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

/// slirp4netns's command line: the namespace by path, the interface
/// configured (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3), the host's
/// loopback out of reach, and an API socket for the ports.
pub fn slirp_args(netns: &Path, api: &Path, ready_fd: i32, exit_fd: i32) -> Vec<String> {
    vec![
        "--configure".into(),
        "--mtu=65520".into(),
        "--disable-host-loopback".into(),
        format!("--ready-fd={ready_fd}"),
        format!("--exit-fd={exit_fd}"),
        format!("--api-socket={}", api.display()),
        "--netns-type=path".into(),
        netns.display().to_string(),
        "tap0".into(),
    ]
}

/// An `add_hostfwd` request of slirp4netns's API for one published port.
pub fn slirp_hostfwd(p: &PortMapping) -> String {
    let proto = match p.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let host_addr = p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
    format!(
        r#"{{"execute":"add_hostfwd","arguments":{{"proto":"{proto}","host_addr":"{host_addr}","host_port":{},"guest_port":{}}}}}"#,
        p.host_port, p.container_port
    )
}

/// Starts slirp4netns (`program`) on the namespace file `netns` and
/// forwards `ports` through its API socket `api`. It runs until the write
/// end of its exit pipe, which the caller keeps, closes. Returns its pid.
pub fn start_slirp(
    program: &Path,
    netns: &Path,
    api: &Path,
    ports: &[PortMapping],
    exit_keep: &mut Option<std::os::fd::OwnedFd>,
) -> Result<i32, RootlessError> {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let target = netns.display().to_string();
    let spawn_err = |source| RootlessError::Spawn {
        program: program.to_owned(),
        target: target.clone(),
        source,
    };
    let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fds we own.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (ready_r, ready_w) = pipe().map_err(spawn_err)?;
    let (exit_r, exit_w) = pipe().map_err(spawn_err)?;
    let _ = std::fs::remove_file(api);
    let (rw, er) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
    let mut cmd = Command::new(program);
    // Only its ends of the pipes reach slirp4netns: were the exit pipe's
    // write end there too, it would never see it close.
    // SAFETY: fcntl is async-signal-safe; the closure touches only the
    // two integers it owns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for fd in [rw, er] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .args(slirp_args(netns, api, rw, er))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    drop(ready_w);
    drop(exit_r);
    let mut ready = [0u8; 1];
    let got = std::fs::File::from(ready_r).read(&mut ready).unwrap_or(0);
    if got != 1 {
        let _ = child.kill();
        let out = child.wait_with_output().map_err(spawn_err)?;
        return Err(RootlessError::Failed {
            program: program.to_owned(),
            target,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    for p in ports {
        let reply = std::os::unix::net::UnixStream::connect(api).and_then(|mut s| {
            s.write_all(slirp_hostfwd(p).as_bytes())?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        });
        let failed = match &reply {
            Ok(r) if r.contains("\"error\"") => Some(r.trim().to_string()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RootlessError::Failed {
                program: program.to_owned(),
                target: format!("{target} port {}", p.host_port),
                status: std::process::ExitStatus::default(),
                stderr: why,
            });
        }
    }
    let pid = child.id() as i32;
    // Reaped by whoever reaps our children (the monitor); it ends with
    // the exit pipe.
    drop(child);
    *exit_keep = Some(exit_w);
    Ok(pid)
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
    fn slirp_forwards_each_port_through_its_api() {
        let p: PortMapping = "127.0.0.1:8080:80".parse().unwrap();
        assert_eq!(
            slirp_hostfwd(&p),
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_port":80}}"#
        );
        let a = slirp_args(Path::new("/run/ns"), Path::new("/run/api"), 5, 6).join(" ");
        assert_eq!(
            a,
            "--configure --mtu=65520 --disable-host-loopback --ready-fd=5 --exit-fd=6 \
             --api-socket=/run/api --netns-type=path /run/ns tap0"
        );
    }

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
