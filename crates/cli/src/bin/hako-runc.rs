//! hako-runc: parse runc's command line and call the runtime library.

#[path = "../runc_cli.rs"]
mod runc_cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hako_runtime::container::{self, CreateOpts};
use hako_runtime::log;
use runc_cli::{Cli, Cmd, CreateArgs, ExecArgs, ListFormat, LogFormat, UpdateArgs};

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
        systemd_cgroup: cli.systemd_cgroup,
    }
}

/// "512m", "1g", "1024" → bytes; "-1" stays -1 (hako_cgroups' one parser).
fn parse_size(field: &str, s: &str) -> Result<i64> {
    hako_runtime::parse_size(s).map_err(|e| anyhow::anyhow!("--{field}: {e}"))
}

/// runc's update: `--resources` JSON (or stdin) merged with the flags.
fn update_resources(u: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    let mut v: serde_json::Value = match u.resources.as_deref() {
        None => serde_json::json!({}),
        Some(src) => {
            let text = if src == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(src).with_context(|| format!("--resources: read {src}"))?
            };
            serde_json::from_str(&text).context("--resources: invalid JSON")?
        }
    };
    let mut set = |path: &[&str], val: serde_json::Value| {
        let mut cur = &mut v;
        for k in &path[..path.len() - 1] {
            if !cur.get(*k).is_some_and(|x| x.is_object()) {
                cur[*k] = serde_json::json!({});
            }
            cur = &mut cur[*k];
        }
        cur[path[path.len() - 1]] = val;
    };
    if let Some(w) = u.blkio_weight {
        set(&["blockIO", "weight"], w.into());
    }
    if let Some(x) = u.cpu_period {
        set(&["cpu", "period"], x.into());
    }
    if let Some(x) = u.cpu_quota {
        set(&["cpu", "quota"], x.into());
    }
    if let Some(x) = u.cpu_rt_period {
        set(&["cpu", "realtimePeriod"], x.into());
    }
    if let Some(x) = u.cpu_rt_runtime {
        set(&["cpu", "realtimeRuntime"], x.into());
    }
    if let Some(x) = u.cpu_share {
        set(&["cpu", "shares"], x.into());
    }
    if let Some(x) = &u.cpuset_cpus {
        set(&["cpu", "cpus"], x.clone().into());
    }
    if let Some(x) = &u.cpuset_mems {
        set(&["cpu", "mems"], x.clone().into());
    }
    for (flag, val, key) in [
        ("memory", &u.memory, "limit"),
        ("memory-reservation", &u.memory_reservation, "reservation"),
        ("memory-swap", &u.memory_swap, "swap"),
        ("kernel-memory", &u.kernel_memory, "kernel"),
        ("kernel-memory-tcp", &u.kernel_memory_tcp, "kernelTCP"),
    ] {
        if let Some(x) = val {
            set(&["memory", key], parse_size(flag, x)?.into());
        }
    }
    if let Some(x) = u.pids_limit {
        set(&["pids", "limit"], x.into());
    }
    serde_json::from_value(v).context("--resources: not a valid linux.resources object")
}

fn exec_process(cli: &Cli, a: &ExecArgs) -> Result<oci_spec::runtime::Process> {
    if let Some(p) = &a.process {
        let text = std::fs::read(p).with_context(|| format!("--process: read {}", p.display()))?;
        return hako_runtime::json_from_slice(&text)
            .map_err(|e| anyhow::anyhow!("--process {}: {e}", p.display()));
    }
    if a.command.is_empty() {
        bail!("exec: give a command or --process");
    }
    let mut p = hako_runtime::container::default_process(&cli.root, &a.id)?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &a.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, Some(g.parse::<u32>()?)),
            None => (
                u.parse::<u32>()
                    .with_context(|| format!("--user {u:?}: need uid[:gid]"))?,
                None,
            ),
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let parsed: Vec<oci_spec::runtime::Capability> = a
            .cap
            .iter()
            .map(|c| {
                serde_json::from_value(serde_json::Value::String(c.clone()))
                    .with_context(|| format!("--cap: unknown capability {c:?}"))
            })
            .collect::<Result<_>>()?;
        let add = |set: Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.unwrap_or_default();
            s.extend(parsed.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding().clone()));
        caps.set_effective(add(caps.effective().clone()));
        caps.set_permitted(add(caps.permitted().clone()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let (n, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(s.trim().len()),
    );
    let n: f64 = n.parse().with_context(|| format!("--interval {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => bail!("--interval {s:?}: use s, ms or m"),
    };
    if secs <= 0.0 {
        bail!("--interval must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn print_event(kind: &str, id: &str, data: Option<serde_json::Value>) -> Result<()> {
    let mut ev = serde_json::json!({"type": kind, "id": id});
    if let Some(d) = data {
        ev["data"] = d;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{ev}")?;
    out.flush()?;
    Ok(())
}

/// runc's default image path: `checkpoint` in the current directory.
/// Relative paths become absolute (CRIU gets them as fds, the log path
/// is reported).
fn image_path(a: &runc_cli::CriuArgs) -> Result<std::path::PathBuf> {
    let p = a
        .image_path
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("checkpoint"));
    Ok(if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    })
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
    let creates = matches!(&cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Restore(_));
    if creates && cli.systemd_cgroup && !std::path::Path::new("/run/systemd/system").exists() {
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
            let sig = hako_runtime::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))
                .map_err(anyhow::Error::msg)?;
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
                let owner = owner_name(hako_runtime::os::geteuid());
                let rows: Vec<[String; 6]> = list
                    .iter()
                    .map(|(s, st)| {
                        [
                            s.id.clone(),
                            if *st == container::Status::Stopped {
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
            let v = hako_runtime::example_spec(*rootless, uid, gid);
            std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
                .with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Exec(a) => {
            let process = exec_process(&cli, a)?;
            return Ok(hako_runtime::container::exec(
                &hako_runtime::container::ExecOpts {
                    root: cli.root.clone(),
                    id: a.id.clone(),
                    process,
                    detach: a.detach,
                    pid_file: a.pid_file.clone(),
                    console_socket: a.console_socket.clone(),
                    preserve_fds: a.preserve_fds,
                    detach_keys: None,
                },
            )?);
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = container::pids(root, id)?;
            if *format == ListFormat::Json {
                println!("{}", serde_json::to_string(&pids)?);
                return Ok(0);
            }
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            if *stats {
                print_event("stats", id, Some(container::stats(root, id)?))?;
                return Ok(0);
            }
            let every = parse_interval(interval)?;
            let mut ooms = container::oom_kills(root, id).unwrap_or(0);
            let mut next = std::time::Instant::now();
            loop {
                let (_, _, status) = container::load(root, id)?;
                if status == container::Status::Stopped {
                    break;
                }
                if let Ok(n) = container::oom_kills(root, id) {
                    if n > ooms {
                        print_event("oom", id, None)?;
                        ooms = n;
                    }
                }
                if std::time::Instant::now() >= next {
                    if let Ok(s) = container::stats(root, id) {
                        print_event("stats", id, Some(s))?;
                    }
                    next += every;
                }
                std::thread::sleep(std::time::Duration::from_millis(100).min(every));
            }
        }
        Cmd::Update(u) => {
            let r = update_resources(u)?;
            container::update(root, &u.id, &r)?;
        }
        Cmd::Pause { id } => container::pause(root, id)?,
        Cmd::Resume { id } => container::resume(root, id)?,
        Cmd::Checkpoint(a) => container::checkpoint(&container::CheckpointOpts {
            root: root.clone(),
            id: a.id.clone(),
            image_path: image_path(&a.criu)?,
            work_path: a.criu.work_path.clone(),
            parent_path: a.parent_path.clone(),
            leave_running: a.leave_running,
            tcp_established: a.criu.tcp_established,
            ext_unix_sk: a.criu.ext_unix_sk,
            shell_job: a.criu.shell_job,
            file_locks: a.criu.file_locks,
            pre_dump: a.pre_dump,
            manage_cgroups_mode: a.criu.manage_cgroups_mode.clone(),
            empty_network: a.criu.empty_ns.is_some(),
        })?,
        Cmd::Restore(a) => {
            return Ok(container::restore(&container::RestoreOpts {
                create: CreateOpts {
                    id: a.id.clone(),
                    bundle: a.bundle.clone(),
                    root: root.clone(),
                    pid_file: a.pid_file.clone(),
                    console_socket: a.console_socket.clone(),
                    no_pivot: a.no_pivot,
                    systemd_cgroup: cli.systemd_cgroup,
                    ..Default::default()
                },
                image_path: image_path(&a.criu)?,
                work_path: a.criu.work_path.clone(),
                detach: a.detach,
                tcp_established: a.criu.tcp_established,
                ext_unix_sk: a.criu.ext_unix_sk,
                shell_job: a.criu.shell_job,
                file_locks: a.criu.file_locks,
                manage_cgroups_mode: a.criu.manage_cgroups_mode.clone(),
                empty_network: a.criu.empty_ns.is_some(),
            })?);
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&hako_runtime::features())?
            );
        }
    }
    Ok(0)
}

/// runc's default: /run for root; the user's runtime dir otherwise.
fn default_root() -> std::path::PathBuf {
    let uid = hako_runtime::os::geteuid();
    if uid == 0 {
        return "/run/hako-runc".into();
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        return std::path::PathBuf::from(x).join("hako-runc");
    }
    let run_user = std::path::PathBuf::from(format!("/run/user/{uid}"));
    if run_user.is_dir() {
        return run_user.join("hako-runc");
    }
    std::env::temp_dir().join(format!("hako-runc-{uid}"))
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::State { .. }
            | Cmd::List { .. }
            | Cmd::Spec { .. }
            | Cmd::Features
            | Cmd::Ps { .. }
            | Cmd::Events { .. }
    ) {
        // For verbs that only print, a closed stdout (`| head`) ends the
        // command quietly, as for every Unix tool, instead of a panic in
        // println!. Not for verbs that drive a container: there a hook that
        // exits without reading its state must give EPIPE, not kill us.
        // SAFETY: setting a signal's disposition to SIG_DFL has no memory effects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    cli.root = cli.root_arg.clone().unwrap_or_else(default_root);
    log::init(
        cli.log.clone(),
        cli.log_format == LogFormat::Json,
        cli.debug,
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = hako_runtime::chain_message(e.as_ref());
            log::error_to_file(&msg);
            eprintln!("hako-runc: {msg}");
            ExitCode::from(1)
        }
    }
}
