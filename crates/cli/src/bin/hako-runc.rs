//! hako-runc: parse runc's command line and call the runtime library.

#[path = "../runc_cli.rs"]
mod runc_cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hako_runtime::container::{self, CreateOpts};
use hako_runtime::{defaults, log, state};
use runc_cli::{Cli, Cmd, CreateArgs, ListFormat, LogFormat};

fn create_opts(cli: &Cli, a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: cli.root.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// "KILL", "SIGKILL", "kill" or "9".
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        other => {
            if let Some(rest) = other.strip_prefix("RTMIN") {
                let off: i32 = if rest.is_empty() {
                    0
                } else {
                    rest.trim_start_matches('+').parse().unwrap_or(-1)
                };
                if (0..=30).contains(&off) {
                    return Ok(libc::SIGRTMIN() + off);
                }
            }
            bail!("unknown signal {s:?}")
        }
    };
    Ok(n)
}

fn owner_name(uid: u32) -> String {
    if let Ok(p) = std::fs::read_to_string("/etc/passwd") {
        for l in p.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 2 && f[2] == uid.to_string() {
                return f[0].to_string();
            }
        }
    }
    format!("#{uid}")
}

fn run(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup && !std::path::Path::new("/run/systemd/system").exists() {
        bail!("--systemd-cgroup: the systemd cgroup driver needs systemd as init, and systemd is not running here");
    }
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(a) => {
            container::create(&create_opts(&cli, a))?;
        }
        Cmd::Start { id } => container::start(root, id)?,
        Cmd::State { id } => {
            let v = container::state_json(root, id)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            container::kill(root, id, sig, *all)?;
        }
        Cmd::Delete { force, id } => container::delete(root, id, *force)?,
        Cmd::Run { create, detach, .. } => {
            return Ok(container::run(&create_opts(&cli, create), *detach)?);
        }
        Cmd::List { format, quiet } => {
            let list = container::list(root)?;
            let mut out = std::io::stdout().lock();
            if *quiet {
                for (s, _) in &list {
                    writeln!(out, "{}", s.id)?;
                }
            } else if *format == ListFormat::Json {
                let v: Vec<_> = list.iter().map(|(s, st)| s.runc_json(*st)).collect();
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            } else {
                let owner = owner_name(hako_runtime::sys::geteuid());
                let rows: Vec<[String; 6]> = list
                    .iter()
                    .map(|(s, st)| {
                        [
                            s.id.clone(),
                            if *st == state::Status::Stopped {
                                0
                            } else {
                                s.pid
                            }
                            .to_string(),
                            st.to_string(),
                            s.bundle.display().to_string(),
                            s.created.clone(),
                            owner.clone(),
                        ]
                    })
                    .collect();
                let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
                let mut w = [0usize; 6];
                for r in std::iter::once(&head).chain(rows.iter()) {
                    for (i, c) in r.iter().enumerate() {
                        w[i] = w[i].max(c.len());
                    }
                }
                for r in std::iter::once(&head).chain(rows.iter()) {
                    let line: Vec<String> = r
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            if i == 5 {
                                c.clone()
                            } else {
                                format!("{c:<width$}", width = w[i] + 3)
                            }
                        })
                        .collect();
                    writeln!(out, "{}", line.join(""))?;
                }
            }
        }
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists; remove it first", path.display());
            }
            // SAFETY: getuid/getgid cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let v = defaults::example_spec(*rootless, uid, gid);
            std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
                .with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&defaults::features())?);
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(
        cli.log.clone(),
        cli.log_format == LogFormat::Json,
        cli.debug,
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = format!("{e:#}");
            log::error_to_file(&msg);
            eprintln!("hako-runc: {msg}");
            ExitCode::from(1)
        }
    }
}
