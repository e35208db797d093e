//! hako: the daemonless engine CLI. Parses the command line (hako_cli.rs)
//! and calls hako-engine; `__monitor` and `__init` are the same binary in
//! its monitor and init roles.

#[path = "../hako_cli.rs"]
mod hako_cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hako_cli::{Cli, Cmd, ExecArgs, ImageCmd, NetCmd, NsCmd, RunArgs};
use hako_engine::{hako_image, hako_net, monitor, ns, ops, record, util, Dirs, RunOptions};
use serde_json::{json, Value};

fn run_options(a: RunArgs) -> RunOptions {
    RunOptions {
        image: a.image,
        cmd: a.cmd,
        entrypoint: a.entrypoint,
        name: a.name,
        hostname: a.hostname,
        env: a.env,
        env_files: a.env_file,
        workdir: a.workdir,
        user: a.user,
        volumes: a.volume,
        tmpfs: a.tmpfs,
        read_only: a.read_only,
        publish: a.publish,
        network: a.network,
        memory: a.memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        privileged: a.privileged,
        security_opt: a.security_opt,
        init: a.init,
        userns: a.userns,
        pid: a.pid,
        ipc: a.ipc,
        uts: a.uts,
        time_offset: a.time_offset,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        rm: a.rm,
    }
}

/// Print a table with columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn json_lines(rows: &[Value]) {
    for r in rows {
        println!("{r}");
    }
}

fn each(names: &[String], mut f: impl FnMut(&str) -> hako_engine::Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("hako: {n}: {e}");
            failed = true;
        }
    }
    if failed {
        bail!("some operations failed");
    }
    Ok(())
}

fn cmd_exec(dirs: &Dirs, a: ExecArgs) -> Result<i32> {
    let _ = a.interactive;
    Ok(ns::exec(
        dirs,
        &a.container,
        ns::ExecRequest {
            cmd: a.cmd,
            env: &a.env,
            workdir: a.workdir,
            user: a.user.as_deref(),
            tty: a.tty,
            detach: a.detach,
        },
    )?)
}

fn images(dirs: &Dirs, quiet: bool, format: Option<String>) -> Result<()> {
    let store = dirs.image_store()?;
    let list = store.list()?;
    if format.as_deref() == Some("json") {
        for i in &list {
            println!("{}", serde_json::to_string(i)?);
        }
        return Ok(());
    }
    if quiet {
        for i in &list {
            println!("{}", short_image(&i.id));
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in &list {
        let tags = if i.repo_tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            i.repo_tags.clone()
        };
        for t in tags {
            let (repo, tag) = t
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .unwrap_or((&t, "<none>"));
            rows.push(vec![
                repo.to_string(),
                tag.to_string(),
                short_image(&i.id),
                i.created.clone().unwrap_or_default(),
                format!("{:.1}MB", i.size as f64 / 1e6),
            ]);
        }
    }
    table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
    Ok(())
}

fn short_image(id: &str) -> String {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    h[..12.min(h.len())].to_string()
}

fn rmi(dirs: &Dirs, images: &[String], force: bool) -> Result<()> {
    let store = dirs.image_store()?;
    let mut failed = false;
    for i in images {
        let in_use = |id: &hako_image::ImageId| ops::image_in_use(dirs, &id.to_string());
        match store.remove(i, force, &in_use) {
            Ok(rep) => {
                for u in rep.untagged {
                    println!("Untagged: {u}");
                }
                if let Some(d) = rep.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(e) => {
                eprintln!("hako: {i}: {e}");
                failed = true;
            }
        }
    }
    let _ = store.gc();
    if failed {
        bail!("some images were not removed");
    }
    Ok(())
}

fn network(dirs: &Dirs, c: NetCmd) -> Result<()> {
    let mgr = dirs.net_manager();
    match c {
        NetCmd::Create {
            subnet,
            gateway,
            bridge,
            internal,
            name,
        } => {
            let mut spec = hako_net::NetworkSpec::new(&name);
            spec.subnet = subnet.map(|s| s.parse()).transpose().context("--subnet")?;
            spec.gateway = gateway
                .map(|s| s.parse())
                .transpose()
                .context("--gateway")?;
            spec.bridge = bridge;
            spec.internal = internal;
            let n = mgr.create(&spec)?;
            println!("{}", n.name);
        }
        NetCmd::Ls { format } => {
            let list = mgr.list()?;
            if format.as_deref() == Some("json") {
                for n in &list {
                    println!("{}", serde_json::to_string(n)?);
                }
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| {
                        let v = serde_json::to_value(n).unwrap_or_default();
                        vec![
                            n.name.clone(),
                            n.bridge.clone(),
                            v["subnet"].as_str().unwrap_or("").to_string(),
                            v["gateway"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "BRIDGE", "SUBNET", "GATEWAY"], &rows);
            }
        }
        NetCmd::Inspect { networks } => {
            let mut out = Vec::new();
            for n in &networks {
                let info = mgr.inspect(n)?;
                let mut v = serde_json::to_value(&info.network)?;
                v["containers"] = serde_json::to_value(&info.leases)?;
                out.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetCmd::Rm { networks } => {
            // Leases left by a reboot or a crash must not keep it in use.
            ops::free_stale_leases(dirs);
            for n in &networks {
                mgr.remove(n)?;
                println!("{n}");
            }
        }
        NetCmd::Connect { network, container } => {
            ops::network_connect(dirs, &network, &container)?;
        }
        NetCmd::Disconnect { network, container } => {
            ops::network_disconnect(dirs, &network, &container)?;
        }
    }
    Ok(())
}

fn real_main(cli: Cli) -> Result<i32> {
    // Verbs that start a process inside a container run from a read-only
    // copy of this binary (CVE-2019-5736, see hako_runtime::protect); before
    // anything else, since the re-exec starts the verb over.
    if matches!(
        cli.cmd,
        Cmd::Run(_)
            | Cmd::Create(_)
            | Cmd::Start { .. }
            | Cmd::Restart { .. }
            | Cmd::Exec(_)
            | Cmd::Monitor { .. }
            | Cmd::Ns(NsCmd::Enter { .. })
    ) {
        hako_runtime::protect::reexec_protected()?;
    }
    if let Some(d) = &cli.data_root {
        std::env::set_var("HAKO_DATA_DIR", d);
    }
    if let Some(d) = &cli.run_root {
        std::env::set_var("HAKO_RUN_DIR", d);
    }
    let dirs = Dirs::from_env();
    match cli.cmd {
        Cmd::Init { cmd } => return Ok(hako_engine::initproc::main(&cmd)),
        Cmd::Monitor { attached: true, id } => {
            monitor::set_keeper(hako_runtime::os::getppid());
            return Ok(monitor::run(&dirs, &id, true, None)?);
        }
        Cmd::Monitor { id, .. } => {
            // fd 1 is the spawner's ready pipe; afterwards we talk to no one.
            use std::os::fd::FromRawFd;
            let ready = util::dup_high(1)?;
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            hako_runtime::os::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1)?;
            // SAFETY: `ready` is a fresh descriptor we own; re-wrap it.
            let ready = unsafe {
                std::os::fd::OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(ready))
            };
            return Ok(monitor::detached(&dirs, &id, ready)?);
        }
        Cmd::Run(a) => {
            let o = run_options(a);
            let detach = o.detach;
            let (id, code) = ops::run(&dirs, &o)?;
            if detach {
                println!("{id}");
            }
            return Ok(code);
        }
        Cmd::Create(a) => {
            let id = ops::create(&dirs, &run_options(a))?;
            println!("{id}");
        }
        Cmd::Ps { all, quiet, format } => {
            let rows = ops::ps(&dirs, all);
            if format.as_deref() == Some("json") {
                json_lines(&rows);
            } else if quiet {
                for r in &rows {
                    println!("{}", r["ID"].as_str().unwrap_or(""));
                }
            } else {
                let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let mut cmd = s(r, "Command");
                        if cmd.len() > 20 {
                            cmd.truncate(19);
                            cmd.push('…');
                        }
                        vec![
                            s(r, "ID"),
                            s(r, "Image"),
                            format!("\"{cmd}\""),
                            s(r, "RunningFor"),
                            s(r, "Status"),
                            s(r, "Ports"),
                            s(r, "Names"),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "CONTAINER ID",
                        "IMAGE",
                        "COMMAND",
                        "CREATED",
                        "STATUS",
                        "PORTS",
                        "NAMES",
                    ],
                    &t,
                );
            }
        }
        Cmd::Start {
            attach: true,
            containers,
            ..
        } => {
            if containers.len() != 1 {
                bail!("start -a takes one container");
            }
            return Ok(ops::start_attached(&dirs, &containers[0])?);
        }
        Cmd::Start { containers, .. } => each(&containers, |c| {
            ops::start(&dirs, c)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Stop { time, containers } => each(&containers, |c| {
            ops::stop(&dirs, c, time)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Restart { time, containers } => each(&containers, |c| {
            ops::restart(&dirs, c, time)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Kill { signal, containers } => {
            let sig = util::parse_signal(&signal)?;
            each(&containers, |c| {
                ops::kill(&dirs, c, sig)?;
                println!("{c}");
                Ok(())
            })?
        }
        Cmd::Rm {
            force, containers, ..
        } => each(&containers, |c| {
            ops::rm(&dirs, c, force)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Exec(a) => return cmd_exec(&dirs, a),
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse::<usize>().context("--tail")?),
            };
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            ops::logs(
                &dirs, &container, follow, tail, timestamps, &mut out, &mut err,
            )?;
        }
        Cmd::Inspect { containers } => {
            let mut out = Vec::new();
            let mut failed = false;
            for c in &containers {
                match ops::inspect(&dirs, c) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("hako: {e}");
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            if failed {
                return Ok(1);
            }
        }
        Cmd::Top { container } => {
            let rows: Vec<Vec<String>> = ops::top(&dirs, &container)?
                .into_iter()
                .map(|r| r.to_vec())
                .collect();
            table(&["PID", "UID", "STAT", "CMD"], &rows);
        }
        Cmd::Stats {
            containers, format, ..
        } => {
            let names: Vec<String> = if containers.is_empty() {
                ops::ps(&dirs, false)
                    .iter()
                    .filter_map(|r| r["ID"].as_str().map(str::to_string))
                    .collect()
            } else {
                containers
            };
            let mut rows = Vec::new();
            for n in &names {
                rows.push(ops::stats(&dirs, n)?);
            }
            if format.as_deref() == Some("json") {
                json_lines(&rows);
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let st = &r["Stats"];
                        let mib = |v: Option<u64>| {
                            v.filter(|l| *l < 1 << 60)
                                .map_or("-".into(), |m| format!("{:.1}MiB", m as f64 / 1048576.0))
                        };
                        vec![
                            r["ID"].as_str().unwrap_or("").into(),
                            r["Name"].as_str().unwrap_or("").into(),
                            format!(
                                "{} / {}",
                                mib(st["memory"]["usage"]["usage"].as_u64()),
                                mib(st["memory"]["usage"]["limit"].as_u64())
                            ),
                            r["PIDs"].to_string(),
                        ]
                    })
                    .collect();
                table(&["CONTAINER ID", "NAME", "MEM USAGE / LIMIT", "PIDS"], &t);
            }
        }
        Cmd::Pause { containers } => each(&containers, |c| {
            ops::pause(&dirs, c, true)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Unpause { containers } => each(&containers, |c| {
            ops::pause(&dirs, c, false)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Wait { containers } => {
            for c in &containers {
                println!("{}", ops::wait(&dirs, c)?);
            }
        }
        Cmd::Ns(c) => match c {
            NsCmd::Ls { container, format } => {
                let rows = ns::ls(&dirs, container.as_deref())?;
                if format.as_deref() == Some("json") {
                    json_lines(&rows);
                } else {
                    let t: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            let shared: Vec<String> = r["SharedWith"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|s| s.as_str().map(str::to_string))
                                        .collect()
                                })
                                .unwrap_or_default();
                            let mut w = Vec::new();
                            if r["Host"] == json!(true) {
                                w.push("host".to_string());
                            }
                            w.extend(shared);
                            vec![
                                r["Container"].as_str().unwrap_or("").into(),
                                r["Type"].as_str().unwrap_or("").into(),
                                r["Id"].as_str().unwrap_or("").into(),
                                if w.is_empty() {
                                    "-".into()
                                } else {
                                    w.join(",")
                                },
                            ]
                        })
                        .collect();
                    table(&["CONTAINER", "TYPE", "NAMESPACE", "SHARED WITH"], &t);
                }
            }
            NsCmd::Keep {
                container,
                r#type,
                path,
            } => ns::keep(&dirs, &container, &r#type, &path)?,
            NsCmd::Enter { target, cmd } => {
                let t = ns::targets(&dirs, &target)?;
                return Ok(ns::enter(
                    t,
                    &ns::Exec {
                        cmd,
                        ..Default::default()
                    },
                )?);
            }
            NsCmd::Rm { path } => ns::rm(&path)?,
        },
        Cmd::Pull { image, insecure } => {
            let store = dirs.image_store()?;
            let opts = hako_image::PullOptions {
                insecure,
                ..Default::default()
            };
            let id = store.pull(&image, &opts)?;
            println!("{id}");
        }
        Cmd::Images { quiet, format } => images(&dirs, quiet, format)?,
        Cmd::Image(c) => match c {
            ImageCmd::Ls { quiet, format } => images(&dirs, quiet, format)?,
            ImageCmd::Inspect { images } => {
                let store = dirs.image_store()?;
                let mut out = Vec::new();
                for i in &images {
                    out.push(serde_json::to_value(store.inspect(i)?)?);
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            ImageCmd::Rm { force, images } => rmi(&dirs, &images, force)?,
            ImageCmd::Prune => {
                let r = dirs.image_store()?.gc()?;
                println!(
                    "removed {} blobs, {} layers, {} bytes",
                    r.blobs_removed, r.layers_removed, r.bytes_freed
                );
            }
        },
        Cmd::Rmi { force, images } => rmi(&dirs, &images, force)?,
        Cmd::Import { source, name } => {
            let id = dirs.image_store()?.import_rootfs(&source, &name)?;
            println!("{id}");
        }
        Cmd::Load { input } => {
            for l in dirs.image_store()?.load(&input)? {
                if l.names.is_empty() {
                    println!("Loaded image ID: {}", l.id);
                }
                for n in l.names {
                    println!("Loaded image: {n}");
                }
            }
        }
        Cmd::Login {
            registry,
            username,
            password,
            password_stdin,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin().read_line(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => bail!("give --password or --password-stdin"),
            };
            hako_image::login(
                &hako_image::auth::default_auth_file(),
                &registry,
                &hako_image::Credentials { username, password },
            )?;
            println!("Login Succeeded");
        }
        Cmd::Logout { registry } => {
            if hako_image::logout(&hako_image::auth::default_auth_file(), &registry)? {
                println!("Removing login credentials for {registry}");
            } else {
                println!("Not logged in to {registry}");
            }
        }
        Cmd::Network(c) => network(&dirs, c)?,
    }
    let _ = std::io::stdout().flush();
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::Ps { .. }
            | Cmd::Inspect { .. }
            | Cmd::Top { .. }
            | Cmd::Stats { .. }
            | Cmd::Images { .. }
            | Cmd::Image(_)
            | Cmd::Logs { .. }
            | Cmd::Network(_)
            | Cmd::Ns(NsCmd::Ls { .. })
    ) {
        // For verbs that only print, a closed stdout (`| head`) ends the
        // command quietly, as for every Unix tool, instead of a panic in
        // println!. Verbs that drive containers handle EPIPE where they
        // write (the attached relay) and must not die of SIGPIPE.
        // SAFETY: setting a signal's disposition to SIG_DFL has no memory effects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let _ = record::RECORD;
    match real_main(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = hako_runtime::error::chain_message(e.as_ref());
            eprintln!("hako: {msg}");
            // Docker's codes: 127 command not found, 126 not executable.
            if msg.contains("executable file not found") {
                ExitCode::from(127)
            } else if msg.contains("exec:") && msg.contains("ermission denied") {
                ExitCode::from(126)
            } else {
                ExitCode::from(125)
            }
        }
    }
}
