//! hako: the daemonless engine CLI. `hako_cli.rs` is the command line
//! (clap), `real_main` below dispatches each verb to the engine (one call)
//! or to `hako_verbs.rs` (a few), and `hako_output.rs` prints. `__monitor`
//! and `__init` are the same binary in its monitor and init roles.

#[path = "../hako_format.rs"]
mod format;
#[path = "../hako_cli.rs"]
mod hako_cli;
#[path = "../hako_output.rs"]
mod output;
#[path = "../hako_verbs.rs"]
mod verbs;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use hako_cli::{Cli, Cmd, ContainerCmd, HealthCmd, ImageCmd, NsCmd};
use hako_engine::{ops, record, util, Dirs};

/// The engine's directories, entering the rootless user's namespace first
/// (a no-op as root).
fn engine_dirs() -> Result<Dirs> {
    let dirs = Dirs::from_env()?;
    hako_engine::rootless::enter(&dirs.run, dirs.config.engine.rootless_single_id)?;
    Ok(dirs)
}

fn real_main(cli: Cli) -> Result<i32> {
    let cli = match docker_form(cli) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // The in-container init (`--init`) has no engine state to look at.
    if let Cmd::Init { cmd } = &cli.cmd {
        return Ok(hako_engine::initproc::main(cmd));
    }
    if let Cmd::PauseNs { single_id } = &cli.cmd {
        return Ok(hako_engine::rootless::pause_main(*single_id));
    }
    // Verbs that start a process inside a container run from a read-only
    // copy of this binary (CVE-2019-5736, see hako_runtime::reexec_protected); before
    // anything else, since the re-exec starts the verb over.
    if matches!(
        cli.cmd,
        Cmd::Run(_)
            | Cmd::Create(_)
            | Cmd::Start { .. }
            | Cmd::Attach { .. }
            | Cmd::Restart { .. }
            | Cmd::Exec(_)
            | Cmd::Healthcheck(_)
            | Cmd::Ns(NsCmd::Enter { .. })
    ) {
        hako_runtime::reexec_protected()?;
    }
    if let Some(d) = &cli.data_root {
        std::env::set_var("HAKO_DATA_DIR", d);
    }
    if let Some(d) = &cli.run_root {
        std::env::set_var("HAKO_RUN_DIR", d);
    }
    if let Some(m) = cli.cgroup_manager {
        std::env::set_var("HAKO_CGROUP_MANAGER", m.to_string());
    }
    let dirs = &engine_dirs()?;
    let code = match cli.cmd {
        Cmd::Init { .. } | Cmd::PauseNs { .. } => unreachable!("handled above"),
        Cmd::Dns { network } => {
            // "ok" (or why not) on stdout for the engine that started us.
            use std::os::fd::FromRawFd;
            // SAFETY: fd 1 is open for the life of the process; the File
            // takes it over (and closes it once the report is written).
            let ready = unsafe { std::fs::File::from_raw_fd(1) };
            hako_engine::network::dns_main(dirs, &network, ready)?
        }
        Cmd::Run(a) => verbs::run(dirs, &a.options()?)?,
        Cmd::Create(a) => {
            println!("{}", ops::create(dirs, &a.options()?)?);
            0
        }
        Cmd::Ps {
            all,
            quiet,
            format,
            filter,
            no_trunc,
            size,
            last,
            latest,
        } => {
            let last = if latest { Some(1) } else { last };
            let mut rows = ops::ps(dirs, all, &ops::Filters::parse(&filter)?, last)?;
            if size {
                verbs::add_sizes(dirs, &mut rows)?;
            }
            output::ps(&rows, quiet, format.as_deref(), no_trunc)?;
            0
        }
        Cmd::Start { all: true, .. } => {
            let (started, failed) = ops::start_all(dirs);
            for id in started {
                println!("{id}");
            }
            for (name, e) in &failed {
                eprintln!("hako: {name}: {e}");
            }
            if failed.is_empty() {
                0
            } else {
                125
            }
        }
        Cmd::Start {
            attach: true,
            containers,
            detach_keys,
            ..
        } => verbs::start_attached(dirs, &containers, detach_keys.as_deref())?,
        Cmd::Attach {
            detach_keys,
            no_stdin,
            sig_proxy,
            container,
        } => verbs::attach(
            dirs,
            &container,
            detach_keys.as_deref(),
            !no_stdin,
            sig_proxy,
        )?,
        Cmd::Start { containers, .. } => each(&containers, |c| ops::start(dirs, c).map(drop))?,
        Cmd::Stop { time, containers } => {
            each(&containers, |c| ops::stop(dirs, c, time).map(drop))?
        }
        Cmd::Restart { time, containers } => {
            each(&containers, |c| ops::restart(dirs, c, time).map(drop))?
        }
        Cmd::Kill { signal, containers } => {
            let sig = util::parse_signal(&signal)?;
            each(&containers, |c| ops::kill(dirs, c, sig).map(drop))?
        }
        Cmd::Rm {
            force,
            containers,
            volumes,
        } => each(&containers, |c| ops::rm(dirs, c, force, volumes).map(drop))?,
        Cmd::System(c) => verbs::system(dirs, c)?,
        Cmd::Events {
            since,
            until,
            filter,
            format,
        } => verbs::events(
            dirs,
            since.as_deref(),
            until.as_deref(),
            &filter,
            format.as_deref(),
        )?,
        Cmd::Info { format } => verbs::system(dirs, hako_cli::SystemCmd::Info { format })?,
        Cmd::Healthcheck(HealthCmd::Run { container }) => {
            let status = hako_engine::health::run(dirs, &container)?;
            println!("{status}");
            i32::from(status != "healthy")
        }
        Cmd::Container(ContainerCmd::Prune { .. }) => {
            output::deleted("Containers", &ops::prune(dirs)?);
            0
        }
        Cmd::Container(ContainerCmd::Checkpoint {
            leave_running,
            tcp_established,
            export,
            containers,
        }) => {
            if export.is_some() && containers.len() > 1 {
                anyhow::bail!("--export: one container at a time");
            }
            let o = ops::CheckpointOptions {
                leave_running,
                tcp_established,
                export,
            };
            each(&containers, |c| ops::checkpoint(dirs, c, &o).map(drop))?
        }
        Cmd::Container(ContainerCmd::Restore {
            import: Some(file),
            name,
            ..
        }) => {
            let id = ops::restore_import(dirs, &file, name.as_deref())?;
            println!("{id}");
            0
        }
        Cmd::Container(ContainerCmd::Restore { containers, .. }) => {
            each(&containers, |c| ops::restore(dirs, c).map(drop))?
        }
        // Made a top-level verb before dispatch (docker_form).
        Cmd::Container(ContainerCmd::Other(v)) => {
            anyhow::bail!("container {}: not a container verb", v.join(" "))
        }
        Cmd::Version { format } => output::version(format.as_deref())?,
        Cmd::Completion { shell, dir } => verbs::completion(&shell, dir.as_deref())?,
        Cmd::Rename {
            container,
            new_name,
        } => {
            ops::rename(dirs, &container, &new_name)?;
            0
        }
        Cmd::Port { container, private } => output::ports(
            &container,
            &ops::port(dirs, &container)?,
            private.as_deref(),
        )?,
        Cmd::Update {
            limits,
            restart,
            containers,
        } => each(&containers, |c| {
            ops::update(dirs, c, &limits, restart.as_deref()).map(drop)
        })?,
        Cmd::Pause { containers } => each(&containers, |c| ops::pause(dirs, c, true).map(drop))?,
        Cmd::Unpause { containers } => each(&containers, |c| ops::pause(dirs, c, false).map(drop))?,
        Cmd::Exec(a) => verbs::exec(dirs, a)?,
        Cmd::Logs { args, container } => verbs::logs(dirs, &container, &args)?,
        Cmd::Inspect {
            kind,
            format,
            containers,
        } => verbs::inspect(dirs, kind.as_deref(), &containers, format.as_deref())?,
        Cmd::Top { container } => {
            output::top(&ops::top(dirs, &container)?);
            0
        }
        Cmd::Stats {
            containers,
            no_stream,
            format,
        } => verbs::stats(dirs, containers, no_stream, format.as_deref())?,
        Cmd::Wait { containers } => verbs::wait(dirs, &containers)?,
        Cmd::Ns(c) => verbs::ns(dirs, c)?,
        Cmd::Pull {
            image,
            platform,
            insecure,
            quiet,
        } => {
            check_platform(platform.as_deref())?;
            verbs::pull(dirs, &image, insecure, quiet)?
        }
        Cmd::Push {
            insecure,
            image,
            destination,
        } => verbs::push(dirs, &image, destination.as_deref(), insecure)?,
        Cmd::Images {
            quiet,
            filter,
            format,
        } => verbs::images(dirs, quiet, &filter, format.as_deref())?,
        Cmd::Image(c) => verbs::image(dirs, c)?,
        Cmd::Rmi { force, images } => verbs::rmi(dirs, &images, force)?,
        Cmd::Import {
            change,
            source,
            name,
        } => {
            let store = dirs.image_store()?;
            let id = store.import_rootfs_with(&source, &name, &change)?;
            hako_engine::events::emit(dirs, "image", "import", &id.to_string(), &[("name", &name)]);
            println!("{id}");
            0
        }
        Cmd::Load { input } => verbs::load(dirs, &input)?,
        Cmd::Build {
            platform,
            tag,
            file,
            build_arg,
            target,
            no_cache,
            pull,
            network,
            label,
            iidfile,
            quiet,
            context,
        } => {
            check_platform(platform.as_deref())?;
            verbs::build(
                dirs,
                &hako_engine::build::BuildOptions {
                    context,
                    file,
                    tags: tag,
                    build_args: build_arg,
                    target,
                    no_cache,
                    pull,
                    network,
                    labels: label,
                    iidfile,
                    quiet,
                },
            )?
        }
        Cmd::Commit {
            author,
            message,
            change,
            pause,
            container,
            repository,
        } => {
            let a = ops::CommitArgs {
                author,
                message,
                changes: change,
                pause,
            };
            println!(
                "{}",
                ops::commit(dirs, &container, repository.as_deref(), &a)?
            );
            0
        }
        Cmd::Cp {
            source,
            destination,
        } => {
            ops::cp(dirs, &source, &destination)?;
            0
        }
        Cmd::Diff { container } => {
            for c in ops::diff(dirs, &container)? {
                println!("{} {}", c.kind, c.path);
            }
            0
        }
        Cmd::Export { output, container } => verbs::export(dirs, &container, output.as_deref())?,
        Cmd::Save {
            output,
            format,
            images,
        } => verbs::save(dirs, &images, &format, output.as_deref())?,
        Cmd::Tag { source, target } => {
            dirs.image_store()?.tag(&source, &target)?;
            hako_engine::events::emit(dirs, "image", "tag", &source, &[("name", &target)]);
            0
        }
        Cmd::History {
            no_trunc,
            quiet,
            image,
        } => verbs::history(dirs, &image, no_trunc, quiet)?,
        Cmd::Login {
            registry,
            username,
            password,
            password_stdin,
        } => verbs::login(&registry, username, password, password_stdin)?,
        Cmd::Logout { registry } => verbs::logout(&registry)?,
        Cmd::Network(c) => verbs::network(dirs, c)?,
        Cmd::Volume(c) => verbs::volume(dirs, c)?,
    };
    let _ = std::io::stdout().flush();
    Ok(code)
}

/// Apply `f` to each named container, printing the name on success (as
/// Docker does) and the error on failure (one line each); one failure
/// fails the command with 125.
fn each(names: &[String], mut f: impl FnMut(&str) -> hako_engine::Result<()>) -> Result<i32> {
    Ok(verbs::each_named(names, |n| {
        f(n).map_err(|e| format!("{n}: {e}"))
    }))
}

/// The monitor role, `__monitor [--attached] [--detach-keys=K]
/// [--sig-proxy=B] ID`, read without clap: only the engine starts it
/// (monitor::foreground, ops::start), and clap's tree of every verb
/// would otherwise stay in the heap of every monitor for its container's
/// life (about 0.3 MiB of each container's cost, docs/benchmarks.md).
fn monitor_role(args: &[std::ffi::OsString]) -> Option<Result<i32>> {
    if args.get(1).map(|a| a.as_os_str()) != Some("__monitor".as_ref()) {
        return None;
    }
    Some((|| {
        let (mut attached, mut keys, mut sig_proxy, mut id) = (false, None, true, None);
        for a in &args[2..] {
            let a = a
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("__monitor: non-UTF-8 argument"))?;
            if a == "--attached" {
                attached = true;
            } else if let Some(k) = a.strip_prefix("--detach-keys=") {
                keys = Some(k.to_string());
            } else if let Some(b) = a.strip_prefix("--sig-proxy=") {
                sig_proxy = b.parse().map_err(|_| anyhow::anyhow!("__monitor: {a}"))?;
            } else if id.is_none() && !a.starts_with('-') {
                id = Some(a.to_string());
            } else {
                anyhow::bail!("__monitor: unexpected argument {a:?}");
            }
        }
        let id = id.ok_or_else(|| anyhow::anyhow!("__monitor: no container id"))?;
        hako_runtime::reexec_protected()?;
        let dirs = &engine_dirs()?;
        let fg = attached
            .then(|| verbs::foreground(keys.as_deref(), sig_proxy))
            .transpose()?;
        verbs::monitor(dirs, &id, fg)
    })())
}

fn main() -> ExitCode {
    hako_runtime::fix_own_name();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(r) = monitor_role(&args) {
        return exit(r);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; a usage
            // error (unknown flag or verb, missing argument) is bad input:
            // Docker's 125, not clap's 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 125 } else { 0 });
        }
    };
    if matches!(
        cli.cmd,
        Cmd::Ps { .. }
            | Cmd::Events { .. }
            | Cmd::Inspect { .. }
            | Cmd::Top { .. }
            | Cmd::Stats { .. }
            | Cmd::Images { .. }
            | Cmd::Image(_)
            | Cmd::Logs { .. }
            | Cmd::Network(_)
            | Cmd::Volume(_)
            | Cmd::Port { .. }
            | Cmd::Version { .. }
            | Cmd::Completion { .. }
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
    exit(real_main(cli))
}

/// Docker's management forms (`container ls`, `image pull`, …) as the
/// top-level verbs they name, with the global flags given before them;
/// the exit code of a usage error (printed) otherwise.
fn docker_form(cli: Cli) -> std::result::Result<Cli, i32> {
    let verb = match &cli.cmd {
        Cmd::Container(ContainerCmd::Other(v)) => {
            let mut v = v.clone();
            if matches!(v[0].as_str(), "ls" | "list") {
                v[0] = "ps".into();
            }
            v
        }
        Cmd::Image(ImageCmd::Other(v)) => v.clone(),
        _ => return Ok(cli),
    };
    match Cli::try_parse_from(std::iter::once("hako".to_string()).chain(verb)) {
        Ok(mut inner) => {
            inner.data_root = inner.data_root.or(cli.data_root);
            inner.run_root = inner.run_root.or(cli.run_root);
            inner.cgroup_manager = inner.cgroup_manager.or(cli.cgroup_manager);
            Ok(inner)
        }
        Err(e) => {
            let _ = e.print();
            Err(if e.use_stderr() { 125 } else { 0 })
        }
    }
}

/// `--platform` of pull and build: this host's, or a usage error.
fn check_platform(p: Option<&str>) -> Result<()> {
    if let Some(p) = p {
        hako_engine::hako_image::manifest::Platform::check_runnable(p)
            .map_err(hako_engine::Error::Usage)?;
    }
    Ok(())
}

/// The process's exit code: the verb's, or Docker's for its error.
fn exit(r: Result<i32>) -> ExitCode {
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = hako_runtime::chain_message(e.as_ref());
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `__monitor` is read by hand: other verbs are not taken for it, and
    /// what the engine never passes is refused before anything runs.
    #[test]
    fn the_monitor_role_reads_only_its_own_arguments() {
        let args = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(Into::into).collect() };
        assert!(super::monitor_role(&args(&["hako", "ps"])).is_none());
        assert!(super::monitor_role(&args(&["hako", "run", "__monitor"])).is_none());
        for (bad, why) in [
            (vec!["hako", "__monitor"], "no container id"),
            (
                vec!["hako", "__monitor", "--bogus", "id"],
                "unexpected argument",
            ),
            (vec!["hako", "__monitor", "a", "b"], "unexpected argument"),
            (
                vec!["hako", "__monitor", "--sig-proxy=maybe", "id"],
                "--sig-proxy=maybe",
            ),
        ] {
            let e = super::monitor_role(&args(&bad)).unwrap().unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    /// Every verb and every flag says what it does in --help (and so in
    /// the manual pages and completions made from them).
    #[test]
    fn every_verb_and_flag_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let internal = matches!(a.get_id().as_str(), "help" | "version");
                if a.get_help().is_none() && !a.is_positional() && !internal && !a.is_hide_set() {
                    missing.push(format!("{path} --{}", a.get_id()));
                }
            }
            for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let p = format!("{path} {}", s.get_name());
                if s.get_about().is_none() {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        let mut missing = Vec::new();
        let mut cli = super::hako_cli::Cli::command();
        cli.build(); // runs each verb's deferred definition
        walk(&cli, "hako", &mut missing);
        assert!(missing.is_empty(), "no help for:\n{}", missing.join("\n"));
    }

    /// Completions and manual pages come from the same definitions: a
    /// new verb or flag is in them without anyone writing it twice.
    #[test]
    fn completions_and_manual_pages_list_verbs_and_flags() {
        let mut cmd = super::verbs::public_command();
        for sh in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(sh, &mut cmd, "hako", &mut out);
            let s = String::from_utf8(out).unwrap();
            assert!(s.contains("volume") && s.contains("cgroup-manager"), "{sh}");
            assert!(!s.contains("__monitor"), "{sh}: hidden verbs stay hidden");
        }
        let d = tempfile::tempdir().unwrap();
        cmd.build();
        super::verbs::write_man(&cmd, "hako", d.path()).unwrap();
        let run = std::fs::read_to_string(d.path().join("hako-run.1")).unwrap();
        assert!(
            run.contains("memory\\-swap") || run.contains("memory-swap"),
            "{run}"
        );
        assert!(d.path().join("hako-volume-prune.1").exists());
        assert!(!d.path().join("hako-__monitor.1").exists());
    }
}
