//! The rootless namespace: one user namespace and one mount namespace per
//! user, held open by a pause process (`hako __pause`), which every
//! rootless `hako` command joins before it does anything (podman's model).
//!
//! Inside, the user is root of a user namespace that maps container uid 0
//! to the user and 1..=N to the user's subordinate range from
//! /etc/subuid and /etc/subgid (written by the setuid `newuidmap` and
//! `newgidmap` of the `uidmap` package, the only way an unprivileged user
//! may map ids other than their own). There the engine can do what a
//! container needs without any privilege on the host:
//! - image layers unpack with their own owners (chown to mapped ids), so
//!   `ls -ln` in a container shows the image's owners;
//! - the container's root is an overlayfs (the kernel's unprivileged
//!   overlay, `userxattr`), mounted in this mount namespace only;
//! - containers' namespaces (pid, net, mount, ...) are owned by this user
//!   namespace, so `exec`, `stop` and `ns enter` from a later command can
//!   join them.
//!
//! Files written by container uid N belong on the host to the N-th id of
//! the user's range; only hako (inside) removes them.
//!
//! The pause also holds a network namespace of the user's: user networks
//! (`network create`) live there, their bridges, rules and name servers,
//! with pasta as the way out to the host; containers on the default
//! network get a pasta of their own instead (see [`crate::network`]).
//!
//! A user without subordinate ranges gets one clear error saying how to
//! add them; `rootless_single_id = true` under `[engine]` in hako.toml
//! asks for a map of the user's own id alone instead (images whose files
//! belong to other ids then cannot be unpacked as they are).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hako_runtime::os;

use crate::{Error, Result};

/// A range of subordinate ids: the first host id and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The user's ranges in a subuid/subgid file's text: lines
/// `NAME_OR_ID:START:COUNT` whose first field is the user's name or id.
pub fn ranges_in(text: &str, name: &str, id: u32) -> Vec<Range> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            Some(Range {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// `newuidmap PID 0 ID 1 1 START COUNT [N START COUNT]...`: container id
/// 0 is the user, then the ranges follow one another.
pub fn map_args(pid: i32, own: u32, ranges: &[Range]) -> Vec<String> {
    let mut a = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut next = 1u64;
    for r in ranges {
        a.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += u64::from(r.count);
    }
    a
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

fn real_uid() -> u32 {
    // SAFETY: getuid has no failure mode.
    unsafe { libc::getuid() }
}

fn real_gid() -> u32 {
    // SAFETY: getgid has no failure mode.
    unsafe { libc::getgid() }
}

/// The user is root of the initial user namespace: nothing to join.
fn privileged() -> bool {
    os::geteuid() == 0 && os::in_initial_userns()
}

/// Join the user's rootless namespace, making it first if there is none.
/// Must run while the process has one thread. A no-op as root, and for a
/// process that is inside already (the monitors and helpers the engine
/// starts from inside).
pub fn enter(run_dir: &Path, single_id: bool) -> Result<()> {
    if privileged() || !os::in_initial_userns() {
        return Ok(());
    }
    crate::dirs::mkdir_p(run_dir)?;
    // /tmp/hako-UID (no XDG_RUNTIME_DIR) could have been made by someone
    // else first: the pause's pid file and the containers' sockets go only
    // into a directory of ours that no one else can enter.
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(run_dir).map_err(crate::io_err("stat", run_dir))?;
        if m.uid() != real_uid() || m.mode() & 0o077 != 0 {
            return Err(Error::Other(format!(
                "rootless: {} belongs to uid {} with mode {:o}; it must be yours and 0700 \
                 (remove it, or set XDG_RUNTIME_DIR)",
                run_dir.display(),
                m.uid(),
                m.mode() & 0o7777
            )));
        }
    }
    let pid_file = run_dir.join("pause.pid");
    let pid = match live_pause(&pid_file) {
        Some(p) => p,
        None => {
            let _l = crate::util::Lock::exclusive(&run_dir.join("pause.lock"))?;
            match live_pause(&pid_file) {
                Some(p) => p,
                None => start_pause(&pid_file, single_id)?,
            }
        }
    };
    join(pid)
}

/// The pause process of `pid_file`, if it still runs: ours, and `hako
/// __pause` (a pid reused after a reboot is not).
fn live_pause(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_pause = cmdline.split(|b| *b == 0).any(|a| a == b"__pause");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse::<u32>()
        .ok()?;
    (is_pause && uid == real_uid()).then_some(pid)
}

/// The user's rootless network namespace (the pause process's), where
/// the user's networks live: bridges, rules, name servers. The pause
/// reaches the host through pasta, started with it.
pub fn netns(run_dir: &Path) -> Result<std::os::fd::OwnedFd> {
    let pid = live_pause(&run_dir.join("pause.pid")).ok_or_else(|| {
        Error::Other("rootless: the pause process is gone (run any hako command)".into())
    })?;
    let p = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let f = std::fs::File::open(&p).map_err(crate::io_err("open", &p))?;
    Ok(f.into())
}

/// Is this process in a network namespace other than its parent's view
/// of the host's, i.e. already in the rootless one (a helper child)?
pub fn inside_netns() -> bool {
    INSIDE_NETNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set by [`crate::network::in_rootless_netns`]'s child.
pub static INSIDE_NETNS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn join(pid: i32) -> Result<()> {
    let cwd = std::env::current_dir().ok();
    for ns in ["user", "mnt"] {
        let p = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
        let f = std::fs::File::open(&p).map_err(crate::io_err("open", &p))?;
        os::setns(f.as_fd(), 0).map_err(|e| {
            Error::Other(format!(
                "join the rootless {ns} namespace of pause process {pid}: {e}"
            ))
        })?;
    }
    // Joining a mount namespace moves us to its root: come back, so
    // relative paths on the command line mean what the user meant.
    if let Some(d) = cwd {
        let _ = std::env::set_current_dir(d);
    }
    Ok(())
}

fn missing_ranges(user: &str) -> Error {
    Error::Other(format!(
        "rootless: no subordinate ids for {user} in /etc/subuid and /etc/subgid; add a range \
         (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}), or \
         set rootless_single_id = true under [engine] in hako.toml to map your own id only"
    ))
}

/// Start `hako __pause`, map its user namespace, record its pid.
fn start_pause(pid_file: &Path, single_id: bool) -> Result<i32> {
    let (uid, gid) = (real_uid(), real_gid());
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let (uranges, granges) = if single_id {
        (Vec::new(), Vec::new())
    } else {
        let u = ranges_in(&read("/etc/subuid"), &name, uid);
        let g = ranges_in(&read("/etc/subgid"), &name, gid);
        if u.is_empty() || g.is_empty() {
            return Err(missing_ranges(&name));
        }
        (u, g)
    };
    let exe = hako_runtime::self_exe().map_err(|e| Error::Other(format!("find hako: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__pause");
    if single_id {
        cmd.arg("--single-id");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .current_dir("/")
        .spawn()
        .map_err(|e| Error::Other(format!("start the rootless pause process: {e}")))?;
    let pid = child.id() as i32;
    let fail = |child: &mut std::process::Child, e: Error| {
        let _ = child.kill();
        let _ = child.wait();
        e
    };
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    if line.trim() != "unshared" {
        return Err(fail(
            &mut child,
            Error::Other(format!(
                "rootless: the pause process could not make its namespaces: {}",
                line.trim()
            )),
        ));
    }
    if !single_id {
        for (prog, own, ranges) in [("newuidmap", uid, &uranges), ("newgidmap", gid, &granges)] {
            let o = Command::new(prog)
                .args(map_args(pid, own, ranges))
                .stdin(Stdio::null())
                .output();
            let why = match o {
                Ok(o) if o.status.success() => continue,
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("{prog} is missing (install the uidmap package)")
                }
                Err(e) => e.to_string(),
            };
            return Err(fail(
                &mut child,
                Error::Other(format!("rootless: {prog} for {name}: {why}")),
            ));
        }
    }
    let mut stdin = child.stdin.take().expect("piped");
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    line.clear();
    let _ = out.read_line(&mut line);
    if line.trim() != "ok" {
        return Err(fail(
            &mut child,
            Error::Other(format!(
                "rootless: the pause process failed: {}",
                line.trim()
            )),
        ));
    }
    crate::util::atomic_write(pid_file, pid.to_string().as_bytes())?;
    // Not waited for: it outlives us (re-parented to init), by design.
    drop(child);
    // The user networks' way out: pasta on the pause's network namespace
    // (ending with it). Without pasta they still reach each other.
    if let Some(p) = crate::network::which("pasta").as_deref() {
        let pf = pid_file.with_file_name("pause-pasta.pid");
        // The pasta of a pause that was killed holds its namespace alive
        // (pasta quits on its own only with a namespace path): it goes.
        if let Some(old) = std::fs::read_to_string(&pf)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let cmd = std::fs::read(format!("/proc/{old}/cmdline")).unwrap_or_default();
            if cmd.starts_with(p.as_os_str().as_encoded_bytes()) {
                let _ = os::kill(old, libc::SIGTERM);
            }
        }
        if let Err(e) = hako_net::rootless::start_pasta(
            p,
            &hako_net::rootless::Target::Pid(pid as u32),
            &[],
            &pf,
        ) {
            eprintln!("hako: warning: user networks will not reach outside: {e}");
        }
    }
    Ok(pid)
}

/// `hako __pause [--single-id]`: make the namespaces, report, wait to be
/// mapped, then hold them until killed.
pub fn pause_main(single_id: bool) -> i32 {
    let mut out = std::io::stdout();
    let (uid, gid) = (real_uid(), real_gid());
    if let Err(e) = os::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET) {
        let _ = writeln!(out, "unshare: {e}");
        return 1;
    }
    let _ = writeln!(out, "unshared");
    let _ = out.flush();
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    if go.trim() != "go" {
        return 1;
    }
    if single_id {
        let w = |f: &str, d: String| std::fs::write(f, d);
        let r = w("/proc/self/setgroups", "deny".into())
            .and_then(|()| w("/proc/self/uid_map", format!("0 {uid} 1\n")))
            .and_then(|()| w("/proc/self/gid_map", format!("0 {gid} 1\n")));
        if let Err(e) = r {
            let _ = writeln!(out, "write the id map: {e}");
            return 1;
        }
    }
    let _ = writeln!(out, "ok");
    let _ = out.flush();
    // Away from the caller's terminal and session; nothing but SIGKILL
    // (or a SIGTERM on purpose) ends us.
    crate::util::stdio_to_null();
    // SAFETY: setsid and signal dispositions have no memory effects.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_id() {
        let t = "alice:100000:65536\n1001:200000:1000\nbob:300000:65536\nalice:400000:10\nbad\n";
        assert_eq!(
            ranges_in(t, "alice", 1000),
            vec![
                Range {
                    start: 100000,
                    count: 65536
                },
                Range {
                    start: 400000,
                    count: 10
                }
            ]
        );
        assert_eq!(
            ranges_in(t, "carol", 1001),
            vec![Range {
                start: 200000,
                count: 1000
            }]
        );
        assert!(ranges_in(t, "dave", 5).is_empty());
    }

    #[test]
    fn the_map_puts_the_user_at_0_and_the_ranges_after() {
        let r = [
            Range {
                start: 100000,
                count: 65536,
            },
            Range {
                start: 400000,
                count: 10,
            },
        ];
        assert_eq!(
            map_args(42, 1000, &r).join(" "),
            "42 0 1000 1 1 100000 65536 65537 400000 10"
        );
    }
}
