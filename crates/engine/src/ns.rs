//! Namespace tools: `ns ls`, `ns keep` (bind-mount a namespace file so it
//! outlives its processes), `ns enter` (setns + exec) and `ns rm`; and
//! [`enter`], which `exec` uses to join a running container.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hako_runtime::os;
use hako_runtime::NsKind;
use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::record;
use crate::status;
use crate::{io_err, Error, Result};

/// Namespace names as /proc/PID/ns shows them, in the runtime's one table.
pub const NS_TYPES: [&str; 8] = {
    let k = hako_runtime::NsKind::BY_NAME;
    [
        k[0].proc_name(),
        k[1].proc_name(),
        k[2].proc_name(),
        k[3].proc_name(),
        k[4].proc_name(),
        k[5].proc_name(),
        k[6].proc_name(),
        k[7].proc_name(),
    ]
};

pub fn ns_ids(pid: impl std::fmt::Display) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for t in NS_TYPES {
        if let Ok(l) = std::fs::read_link(format!("/proc/{pid}/ns/{t}")) {
            m.insert(t.into(), json!(l.to_string_lossy()));
        }
    }
    m
}

fn ns_flag(t: &str) -> Option<i32> {
    NsKind::from_name(t).map(NsKind::flag)
}

fn proc_name(t: &str) -> &str {
    match NsKind::from_name(t) {
        Some(k) => k.proc_name(),
        None => t,
    }
}

/// A running container's init pid.
fn live_pid(dirs: &Dirs, name: &str) -> Result<(String, i32)> {
    let (_, r) = status::live(dirs, name)?;
    Ok((r.name, r.pid))
}

/// `ns ls [CONTAINER]`: one row per (container, namespace) with its id,
/// whether the host shares it, and which other containers share it.
pub fn ls(dirs: &Dirs, name: Option<&str>) -> Result<Vec<Value>> {
    let mut live = Vec::new();
    for r in record::all(dirs) {
        if status::status(dirs, &r).is_live() {
            live.push((r.name.clone(), ns_ids(r.pid)));
        }
    }
    let host = ns_ids("self");
    let wanted: Option<String> = match name {
        Some(n) => Some(live_pid(dirs, n)?.0),
        None => None,
    };
    let mut rows = Vec::new();
    for (cname, ids) in &live {
        if wanted.as_ref().is_some_and(|w| w != cname) {
            continue;
        }
        for t in NS_TYPES {
            let Some(id) = ids.get(t) else { continue };
            let shared: Vec<&str> = live
                .iter()
                .filter(|(n, m)| n != cname && m.get(t) == Some(id))
                .map(|(n, _)| n.as_str())
                .collect();
            rows.push(json!({
                "Container": cname,
                "Type": t,
                "Id": id,
                "Host": host.get(t) == Some(id),
                "SharedWith": shared,
            }));
        }
    }
    Ok(rows)
}

/// `ns keep CONTAINER TYPE PATH`.
pub fn keep(dirs: &Dirs, name: &str, t: &str, path: &Path) -> Result<()> {
    let (_, pid) = live_pid(dirs, name)?;
    if ns_flag(t).is_none() {
        return Err(Error::Usage(format!(
            "unknown namespace type {t:?}: one of {NS_TYPES:?}"
        )));
    }
    if let Some(p) = path.parent() {
        crate::dirs::mkdir_p(p)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("create", path))?;
    let src = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
    os::mount(Some(src.as_os_str()), path, None, libc::MS_BIND, None)
        .map_err(|e| io_err("bind-mount the namespace onto", path)(e))
}

/// `ns rm PATH`: unmount a kept namespace and remove the file.
pub fn rm(path: &Path) -> Result<()> {
    os::umount2(path, libc::MNT_DETACH).map_err(io_err("unmount", path))?;
    std::fs::remove_file(path).map_err(io_err("remove", path))
}

/// What to run after joining.
#[derive(Debug, Default, Clone)]
pub struct Exec {
    pub cmd: Vec<String>,
    pub env: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32)>,
}

/// Namespaces (type, fd) of a target: a namespace file, or a container.
pub fn targets(dirs: &Dirs, target: &str) -> Result<Vec<(i32, OwnedFd)>> {
    let p = Path::new(target);
    if p.is_absolute() && p.exists() {
        let fd = os::openat(None, p, libc::O_RDONLY, 0).map_err(io_err("open", p))?;
        let t = os::ns_type(fd.as_fd())
            .map_err(|e| Error::Usage(format!("{target} is not a namespace file: {e}")))?;
        return Ok(vec![(t, fd)]);
    }
    let (_, pid) = live_pid(dirs, target)?;
    container_targets(pid)
}

/// Every namespace of `pid` that differs from ours.
pub fn container_targets(pid: i32) -> Result<Vec<(i32, OwnedFd)>> {
    let mut out = Vec::new();
    for t in NS_TYPES {
        let p = PathBuf::from(format!("/proc/{pid}/ns/{t}"));
        let (Ok(theirs), Ok(ours)) = (
            std::fs::read_link(&p),
            std::fs::read_link(format!("/proc/self/ns/{t}")),
        ) else {
            continue;
        };
        if theirs == ours {
            continue;
        }
        let fd = os::openat(None, &p, libc::O_RDONLY, 0).map_err(io_err("open", &p))?;
        out.push((ns_flag(t).expect("known type"), fd));
    }
    Ok(out)
}

/// Fork; the child joins `ns` (user first, mount last), forks once more if
/// it joined a pid namespace, and execs. Returns the command's exit code.
pub fn enter(mut ns: Vec<(i32, OwnedFd)>, x: &Exec) -> Result<i32> {
    if x.cmd.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    ns.sort_by_key(|(t, _)| (*t != libc::CLONE_NEWUSER, *t == libc::CLONE_NEWNS));
    let joins_pid = ns.iter().any(|(t, _)| *t == libc::CLONE_NEWPID);
    match os::fork().map_err(crate::sys_err("fork"))? {
        Some(child) => {
            drop(ns);
            // Let the command have the terminal's signals; we just wait.
            // SAFETY: setting SIG_IGN for SIGINT/SIGQUIT in the parent only.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            }
            let st = os::waitpid(child, 0).map_err(crate::sys_err("wait"))?;
            Ok(st.map_or(255, os::exit_code))
        }
        None => {
            let code = (|| -> std::result::Result<i32, String> {
                for (t, fd) in &ns {
                    os::setns(fd.as_fd(), *t).map_err(|e| format!("setns {t:#x}: {e}"))?;
                }
                drop(ns);
                if joins_pid {
                    // A pid namespace applies to children: fork once more.
                    if let Some(gc) = os::fork().map_err(|e| format!("fork: {e}"))? {
                        let st = os::waitpid(gc, 0).map_err(|e| format!("wait: {e}"))?;
                        return Ok(st.map_or(255, os::exit_code));
                    }
                }
                let mut c = std::process::Command::new(&x.cmd[0]);
                c.args(&x.cmd[1..]);
                if let Some(env) = &x.env {
                    c.env_clear();
                    for kv in env {
                        if let Some((k, v)) = kv.split_once('=') {
                            c.env(k, v);
                        }
                    }
                }
                if let Some(d) = &x.cwd {
                    c.current_dir(d);
                }
                if let Some((u, g)) = x.user {
                    c.uid(u).gid(g);
                }
                let e = c.exec();
                eprintln!("hako: exec {}: {e}", x.cmd[0]);
                Ok(if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                })
            })();
            let code = code.unwrap_or_else(|e| {
                eprintln!("hako: {e}");
                125
            });
            // SAFETY: _exit ends the forked child without running the
            // parent's atexit handlers or destructors twice.
            unsafe { libc::_exit(code) }
        }
    }
}

/// `exec`: the runtime's exec (namespaces, cgroup, capabilities, seccomp,
/// the container's env and cwd), with our overrides.
pub struct ExecRequest<'a> {
    pub cmd: Vec<String>,
    pub env: &'a [String],
    pub workdir: Option<String>,
    pub user: Option<&'a str>,
    pub tty: bool,
    pub detach: bool,
    /// With a terminal: the keys that detach (default ctrl-p,ctrl-q).
    pub detach_keys: Option<&'a str>,
    /// Where the runtime writes the process's host pid.
    pub pid_file: Option<std::path::PathBuf>,
}

pub fn exec(dirs: &Dirs, name: &str, req: ExecRequest<'_>) -> Result<i32> {
    let detach_keys = crate::attach::parse_detach_keys(req.detach_keys.unwrap_or(""))?;
    let (id, r) = status::live(dirs, name)?;
    let root = dirs.runtime_root();
    let mut p = hako_runtime::container::default_process(&root, &id)?;
    // Behind --init the argv starts with the init helper: the exec runs
    // the command itself.
    p.set_args(Some(req.cmd));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in req.env {
        let k = kv.split('=').next().unwrap_or(kv);
        env.retain(|x| x.split('=').next() != Some(k));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(w) = req.workdir {
        p.set_cwd(w.into());
    }
    if let Some(u) = req.user {
        let who = crate::spec::user_in_rootfs(&r.rootfs, u)?;
        let mut user = p.user().clone();
        user.set_uid(who.uid);
        user.set_gid(who.gid);
        user.set_additional_gids(Some(who.additional_gids).filter(|g| !g.is_empty()));
        p.set_user(user);
    }
    p.set_terminal(Some(req.tty));
    let opts = hako_runtime::container::ExecOpts {
        root,
        id,
        process: p,
        detach: req.detach,
        pid_file: req.pid_file,
        console_socket: None,
        preserve_fds: 0,
        detach_keys: req.tty.then_some(detach_keys),
    };
    if !crate::dirs::rootless() {
        return Ok(hako_runtime::container::exec(&opts)?);
    }
    // Rootless: the runtime enters the container's pid namespace for its
    // fork and cannot come back (the host's pid namespace belongs to the
    // initial user namespace), so it runs in a child of ours that ends
    // with the exec.
    in_child(|| match hako_runtime::container::exec(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hako: {}", Error::from(e));
            125
        }
    })
}

/// Run `f` in a forked child and return its exit code; signals sent to
/// us by another process go on to the child (the terminal's reach it
/// anyway, in our process group). For a single-threaded caller.
fn in_child(f: impl FnOnce() -> i32) -> Result<i32> {
    use std::os::fd::AsFd;
    let old = os::block_all_signals().map_err(crate::sys_err("block signals"))?;
    let child = match os::fork().map_err(crate::sys_err("fork"))? {
        None => {
            let _ = os::set_sigmask(&old);
            let code = f();
            use std::io::Write;
            let _ = std::io::stdout().flush();
            // SAFETY: _exit ends the forked child without the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code & 0xff) }
        }
        Some(pid) => pid,
    };
    let sfd = os::signalfd_all().map_err(crate::sys_err("signalfd"));
    let code = loop {
        if let Ok(Some(st)) = os::waitpid(child, libc::WNOHANG) {
            break os::exit_code(st);
        }
        let Ok(sfd) = &sfd else {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        };
        if !os::poll_in(sfd.as_fd(), 1000).unwrap_or(false) {
            continue;
        }
        if let Some((sig, code, _)) = crate::monitor::read_siginfo(sfd.as_fd()) {
            if code <= 0 && !matches!(sig, libc::SIGCHLD | libc::SIGWINCH | libc::SIGPIPE) {
                let _ = os::kill(child, sig);
            }
        }
    };
    let _ = os::set_sigmask(&old);
    Ok(code)
}
