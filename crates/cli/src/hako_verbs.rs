//! The `hako` verbs that need more than one call into the engine: each
//! takes the parsed arguments, calls the engine, prints through
//! [`crate::output`], and returns the exit code.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hako_engine::attach::parse_detach_keys;
use hako_engine::{hako_image, hako_net, monitor, ns, ops, util, Dirs, RunOptions};

use crate::hako_cli::{ExecArgs, ImageCmd, NetCmd, NsCmd, VolCmd};
use crate::output;

/// `__monitor [--attached …] ID`: the monitor role of this binary.
pub fn monitor(dirs: &Dirs, id: &str, fg: Option<monitor::Foreground>) -> Result<i32> {
    if let Some(fg) = fg {
        monitor::set_keeper(hako_runtime::os::getppid());
        return Ok(monitor::run(dirs, id, Some(fg), None)?);
    }
    // fd 1 is the spawner's ready pipe; afterwards we talk to no one.
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    let ready = util::dup_high(1)?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    hako_runtime::os::dup2(null.as_raw_fd(), 1)?;
    // SAFETY: `ready` is a fresh descriptor we own; re-wrap it.
    let ready = unsafe { OwnedFd::from_raw_fd(ready.into_raw_fd()) };
    Ok(monitor::detached(dirs, id, ready)?)
}

/// `run`: the container's exit code, or its id when detached.
pub fn run(dirs: &Dirs, opts: &RunOptions) -> Result<i32> {
    let (id, code) = ops::run(dirs, opts)?;
    if opts.detach {
        println!("{id}");
    }
    Ok(code)
}

/// How a foreground monitor shares the terminal, from the flags.
pub fn foreground(detach_keys: Option<&str>, sig_proxy: bool) -> Result<monitor::Foreground> {
    Ok(monitor::Foreground {
        detach_keys: parse_detach_keys(detach_keys.unwrap_or(""))?,
        sig_proxy,
    })
}

/// `start -a CONTAINER`.
pub fn start_attached(dirs: &Dirs, containers: &[String], keys: Option<&str>) -> Result<i32> {
    let [c] = containers else {
        bail!("start -a takes one container");
    };
    Ok(ops::start_attached(dirs, c, &foreground(keys, true)?)?)
}

/// `attach`: the container's code; 1 with "read escape sequence" after
/// the detach keys, as Docker.
pub fn attach(
    dirs: &Dirs,
    container: &str,
    keys: Option<&str>,
    stdin: bool,
    sig_proxy: Option<bool>,
) -> Result<i32> {
    let o = ops::AttachOptions {
        stdin,
        detach_keys: parse_detach_keys(keys.unwrap_or(""))?,
        sig_proxy: sig_proxy.unwrap_or(true),
    };
    Ok(match ops::attach(dirs, container, &o)? {
        ops::Attached::Exited(code) => code,
        ops::Attached::Detached => {
            eprintln!("read escape sequence");
            1
        }
        ops::Attached::Interrupted(sig) => 128 + sig,
    })
}

/// `exec`.
pub fn exec(dirs: &Dirs, a: ExecArgs) -> Result<i32> {
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
            detach_keys: a.detach_keys.as_deref(),
            pid_file: None,
        },
    )?)
}

/// `logs`.
pub fn logs(dirs: &Dirs, container: &str, a: &crate::hako_cli::LogsArgs) -> Result<i32> {
    let now = chrono_now_ns();
    let bound = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        Ok(v.as_deref()
            .map(|v| ops::time_bound(flag, v, now))
            .transpose()?)
    };
    let opts = ops::LogOptions {
        follow: a.follow,
        tail: match a.tail.as_deref() {
            None | Some("all") => None,
            Some(n) => Some(n.parse::<usize>().context("--tail")?),
        },
        timestamps: a.timestamps,
        since: bound("--since", &a.since)?,
        until: bound("--until", &a.until)?,
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    ops::logs(dirs, container, &opts, &mut out, &mut err)?;
    Ok(0)
}

fn chrono_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// `inspect`: every container found is printed; exit 1 if one was not.
/// `inspect [--type T] NAME…`: each name as a container, else an image, a
/// volume or a network (Docker's order), or only as `kind`. Every object
/// found is printed; one line per name not found, and exit 125.
pub fn inspect(
    dirs: &Dirs,
    kind: Option<&str>,
    names: &[String],
    format: Option<&str>,
) -> Result<i32> {
    // A bad template fails before anything is looked up.
    let format = format.map(crate::format::parse).transpose()?;
    let mut out = Vec::new();
    let mut code = 0;
    let wants = |k: &str| kind.is_none_or(|w| w == k);
    for n in names {
        let found = (|| -> Option<serde_json::Value> {
            if wants("container") {
                if let Ok(v) = ops::inspect(dirs, n) {
                    return Some(v);
                }
            }
            if wants("image") {
                if let Ok(v) = dirs.image_store().and_then(|s| Ok(s.inspect(n)?)) {
                    return serde_json::to_value(v).ok();
                }
            }
            if wants("volume") {
                if let Ok(v) = hako_engine::volume::get(dirs, n) {
                    return Some(v.inspect(dirs));
                }
            }
            if wants("network") {
                if let Ok(i) = dirs.net_manager().inspect(n) {
                    return Some(hako_engine::network::view(&i.network, &i.leases));
                }
            }
            None
        })();
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("hako: no such {}: {n}", kind.unwrap_or("object"));
                code = 125;
            }
        }
    }
    match &format {
        Some(f) => crate::format::print(&out, f)?,
        None => output::pretty(&out)?,
    }
    Ok(code)
}

/// Host memory, the 100 % of a container without a memory limit.
fn host_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// `stats`: the named containers, or every running one, sampled every
/// second and redrawn (Docker's default), or once with `--no-stream`.
/// CPU % is the time used between two samples over the time between them
/// (100 % = one CPU), so the first figures come after a short first wait.
pub fn stats(
    dirs: &Dirs,
    containers: Vec<String>,
    no_stream: bool,
    format: Option<&str>,
) -> Result<i32> {
    // A bad template fails first.
    if let Some(f) = format.filter(|f| *f != "json") {
        crate::format::parse(f)?;
    }
    let named = !containers.is_empty();
    let tty = hako_runtime::os::isatty(1);
    let mut prev: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
    let mut first = true;
    loop {
        let names: Vec<String> = if named {
            containers.clone()
        } else {
            ops::ps(dirs, false, &Default::default(), None)?
                .iter()
                .filter_map(|r| r["ID"].as_str().map(str::to_string))
                .collect()
        };
        let mut rows = names
            .iter()
            .map(|n| ops::stats(dirs, n))
            .collect::<hako_engine::Result<Vec<_>>>()?;
        let now = std::time::Instant::now();
        for r in &mut rows {
            let id = r["ID"].as_str().unwrap_or("").to_string();
            let cpu = r["Stats"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
            r["CPUPerc"] = match prev.insert(id, (cpu, now)) {
                Some((c0, t0)) if now > t0 => format!(
                    "{:.2}%",
                    cpu.saturating_sub(c0) as f64 / (now - t0).as_nanos() as f64 * 100.0
                ),
                _ => "--".into(),
            }
            .into();
            let usage = r["Stats"]["memory"]["usage"]["usage"].as_u64();
            let limit = r["Stats"]["memory"]["usage"]["limit"]
                .as_u64()
                .filter(|l| *l < 1 << 60)
                .or_else(host_memory);
            if let Some(l) = limit {
                r["MemLimit"] = l.into();
            }
            r["MemPerc"] = match (usage, limit) {
                (Some(u), Some(l)) if l > 0 => format!("{:.2}%", u as f64 / l as f64 * 100.0),
                _ => "--".into(),
            }
            .into();
        }
        if first && !rows.is_empty() {
            first = false;
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        if tty && !no_stream {
            print!("\x1b[2J\x1b[H");
        }
        output::stats(&rows, format)?;
        if no_stream {
            return Ok(0);
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if named
            && rows
                .iter()
                .all(|r| r["State"] != "running" && r["State"] != "paused")
        {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `wait`: each container's exit code, one per line.
pub fn wait(dirs: &Dirs, containers: &[String]) -> Result<i32> {
    for c in containers {
        println!("{}", ops::wait(dirs, c)?);
    }
    Ok(0)
}

/// `ns ls|keep|enter|rm`.
pub fn ns(dirs: &Dirs, c: NsCmd) -> Result<i32> {
    match c {
        NsCmd::Ls { container, format } => {
            output::namespaces(&ns::ls(dirs, container.as_deref())?, format.as_deref())?
        }
        NsCmd::Keep {
            container,
            r#type,
            path,
        } => ns::keep(dirs, &container, &r#type, &path)?,
        NsCmd::Enter { target, cmd } => {
            let t = ns::targets(dirs, &target)?;
            let exec = ns::Exec {
                cmd,
                ..Default::default()
            };
            return Ok(ns::enter(t, &exec)?);
        }
        NsCmd::Rm { path } => ns::rm(&path)?,
    }
    Ok(0)
}

/// `pull`: the image id.
pub fn pull(dirs: &Dirs, image: &str, insecure: bool, quiet: bool) -> Result<i32> {
    let opts = hako_image::PullOptions {
        insecure,
        progress: if quiet {
            hako_image::Progress::Quiet
        } else {
            hako_image::Progress::Auto
        },
        ..Default::default()
    };
    let id = dirs.image_store()?.pull(image, &opts)?;
    hako_engine::events::emit(dirs, "image", "pull", &id.to_string(), &[("name", image)]);
    println!("{id}");
    Ok(0)
}

/// `events`: past ones in the window, then new ones until `--until`.
pub fn events(
    dirs: &Dirs,
    since: Option<&str>,
    until: Option<&str>,
    filter: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let now = chrono_now_ns();
    let since = since
        .map(|v| ops::time_bound("--since", v, now))
        .transpose()?;
    let until = until
        .map(|v| ops::time_bound("--until", v, now))
        .transpose()?;
    let filters = hako_engine::events::Filters::parse(filter)?;
    let fmt = format.map(crate::format::parse).transpose()?;
    let mut failed = None;
    hako_engine::events::read(dirs, since, until, &filters, |ev| {
        let r = match &fmt {
            Some(f) => crate::format::print(std::slice::from_ref(ev), f),
            None => {
                println!("{}", hako_engine::events::line(ev));
                Ok(())
            }
        };
        let flushed = std::io::Write::flush(&mut std::io::stdout());
        if let Err(e) = r {
            failed = Some(e);
            return false;
        }
        // Whoever read us is gone (`| head`): stop.
        flushed.is_ok()
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// `system df|info|prune` and `info`.
pub fn system(dirs: &Dirs, c: crate::hako_cli::SystemCmd) -> Result<i32> {
    use crate::hako_cli::SystemCmd;
    match c {
        SystemCmd::Df { format } => output::df(&ops::df(dirs)?, format.as_deref())?,
        SystemCmd::Info { format } => output::info(&ops::info(dirs)?, format.as_deref())?,
        SystemCmd::Prune { all, volumes, .. } => {
            let p = ops::system_prune(dirs, all, volumes)?;
            output::deleted("Containers", &p.containers);
            output::deleted("Networks", &p.networks);
            output::deleted("Images", &p.images);
            if volumes {
                output::deleted("Volumes", &p.volumes);
            }
            println!("Total reclaimed space: {}", output::human_bytes(p.bytes));
        }
    }
    Ok(0)
}

/// `ps --size`: Docker's SizeRw (what the container wrote), SizeRootFs
/// (with its image) and the SIZE column's text.
pub fn add_sizes(dirs: &Dirs, rows: &mut [serde_json::Value]) -> Result<()> {
    let store = dirs.image_store()?;
    let images = store.list()?;
    let human = output::human_bytes;
    for r in rows.iter_mut() {
        let Some(id) = r["FullID"].as_str().map(str::to_string) else {
            continue;
        };
        let rw = store.changes_size(&id);
        let image = hako_engine::record::load(dirs, &id)
            .ok()
            .and_then(|rec| images.iter().find(|i| i.id == rec.image_id).map(|i| i.size))
            .unwrap_or(0);
        r["SizeRw"] = rw.into();
        r["SizeRootFs"] = (rw + image).into();
        r["Size"] = format!("{} (virtual {})", human(rw), human(rw + image)).into();
    }
    Ok(())
}

/// `push IMAGE [DESTINATION]`: progress on stderr, the digest on stdout.
pub fn push(dirs: &Dirs, image: &str, destination: Option<&str>, insecure: bool) -> Result<i32> {
    let opts = hako_image::push::PushOptions {
        insecure,
        ..Default::default()
    };
    let digest = dirs.image_store()?.push(image, destination, &opts)?;
    let to = destination.unwrap_or(image);
    hako_engine::events::emit(dirs, "image", "push", &digest.to_string(), &[("name", to)]);
    println!("{digest}");
    Ok(0)
}

/// `images` and `image ls`.
/// `images [-q] [--filter K=V…] [--format F]`.
pub fn images(dirs: &Dirs, quiet: bool, filter: &[String], format: Option<&str>) -> Result<i32> {
    let f = ImageFilter::parse(filter)?;
    let list: Vec<_> = dirs
        .image_store()?
        .list()?
        .into_iter()
        .filter_map(|i| f.apply(i))
        .collect();
    output::images(&list, quiet, format)?;
    Ok(0)
}

/// A listing's `--filter KEY=VALUE…`, each key one of `keys`: the pairs,
/// or one usage line naming the bad one.
fn filters<'a>(filter: &'a [String], keys: &[&str]) -> Result<Vec<(&'a str, &'a str)>> {
    filter
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if keys.contains(&k) && !v.is_empty() => Ok((k, v)),
            _ => {
                let known: Vec<String> = keys.iter().map(|k| format!("{k}=…")).collect();
                bail!("--filter {f}: not one of {}", known.join(", "))
            }
        })
        .collect()
}

/// A filter's true or false (Docker also takes 1 and 0).
fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("--filter {key}={v}: {key} is true or false"),
    }
}

/// Docker's `images --filter`: dangling=true|false, reference=PATTERN
/// (path.Match on the tag's familiar `repository:tag` or `repository`,
/// as `busybox:latest` for docker.io/library/busybox:latest).
struct ImageFilter {
    dangling: Option<bool>,
    references: Vec<String>,
}

impl ImageFilter {
    /// Bad filters fail before anything is listed.
    fn parse(filter: &[String]) -> Result<ImageFilter> {
        let mut f = ImageFilter {
            dangling: None,
            references: Vec::new(),
        };
        for (k, v) in filters(filter, &["dangling", "reference"])? {
            match k {
                "dangling" => f.dangling = Some(parse_bool(k, v)?),
                _ => f.references.push(v.to_string()),
            }
        }
        Ok(f)
    }

    /// The image with only its tags that match, or None.
    fn apply(&self, mut i: hako_image::ImageSummary) -> Option<hako_image::ImageSummary> {
        if self.dangling.is_some_and(|d| d != i.repo_tags.is_empty()) {
            return None;
        }
        if self.references.is_empty() {
            return Some(i);
        }
        i.repo_tags.retain(|t| {
            let familiar = t
                .strip_prefix("docker.io/library/")
                .or_else(|| t.strip_prefix("docker.io/"))
                .unwrap_or(t);
            let repo = familiar.rsplit_once(':').map_or(familiar, |(r, _)| r);
            self.references.iter().any(|p| {
                hako_engine::build::ignore::matches(p, familiar)
                    || hako_engine::build::ignore::matches(p, repo)
            })
        });
        (!i.repo_tags.is_empty()).then_some(i)
    }
}

/// A tar to `output` (removed if writing fails) or to stdout, which must
/// not be a terminal (as Docker refuses).
fn write_tar(
    verb: &str,
    output: Option<&Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
) -> Result<i32> {
    match output {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?;
            if let Err(e) = write(&mut std::io::BufWriter::new(f)) {
                let _ = std::fs::remove_file(p);
                return Err(e);
            }
        }
        None => {
            if hako_runtime::os::isatty(1) {
                bail!("{verb}: refusing to write a tar to a terminal (redirect it, or use -o)");
            }
            write(&mut std::io::BufWriter::new(std::io::stdout().lock()))?;
        }
    }
    Ok(0)
}

/// `export CONTAINER [-o FILE]`.
pub fn export(dirs: &Dirs, container: &str, output: Option<&Path>) -> Result<i32> {
    write_tar("export", output, |w| Ok(ops::export(dirs, container, w)?))
}

/// `save [-o FILE] [--format F] IMAGE...`.
pub fn save(dirs: &Dirs, images: &[String], format: &str, output: Option<&Path>) -> Result<i32> {
    let format: hako_image::save::SaveFormat = format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let store = dirs.image_store()?;
    // Every image is checked before anything is written.
    for i in images {
        store.resolve(i)?;
    }
    write_tar("save", output, |w| Ok(store.save(images, format, w)?))
}

/// `build`: the steps on stderr, the image id on stdout (and in
/// --iidfile); any failure is one line and exit 1, as Docker's.
pub fn build(dirs: &Dirs, o: &hako_engine::build::BuildOptions) -> Result<i32> {
    match hako_engine::build::build(dirs, o) {
        Ok(id) => {
            if let Some(f) = &o.iidfile {
                if let Err(e) = std::fs::write(f, id.to_string()) {
                    eprintln!("hako: build: --iidfile {}: {e}", f.display());
                    return Ok(1);
                }
            }
            hako_engine::events::emit(dirs, "image", "build", &id.to_string(), &[]);
            if !o.quiet {
                for t in &o.tags {
                    eprintln!("Successfully tagged {t}");
                }
            }
            println!("{id}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("hako: build: {}", hako_runtime::chain_message(&e));
            Ok(1)
        }
    }
}

/// `history IMAGE`: Docker's columns, newest first.
pub fn history(dirs: &Dirs, image: &str, no_trunc: bool, quiet: bool) -> Result<i32> {
    let store = dirs.image_store()?;
    let id = store.inspect(image)?.id;
    let h = store.history(image)?;
    output::history(&id, &h, no_trunc, quiet);
    Ok(0)
}

/// `image ls|inspect|rm|prune`.
pub fn image(dirs: &Dirs, c: ImageCmd) -> Result<i32> {
    match c {
        ImageCmd::Ls {
            quiet,
            filter,
            format,
        } => return images(dirs, quiet, &filter, format.as_deref()),
        ImageCmd::Inspect { images, format } => {
            return inspect(dirs, Some("image"), &images, format.as_deref())
        }
        ImageCmd::Rm { force, images } => return rmi(dirs, &images, force),
        ImageCmd::Prune { all, .. } => {
            let (gone, bytes) = ops::prune_images(dirs, all)?;
            output::deleted("Images", &gone);
            println!("Total reclaimed space: {}", output::human_bytes(bytes));
        }
        // Made a top-level verb before dispatch (bin/hako.rs docker_form).
        ImageCmd::Other(v) => anyhow::bail!("image {}: not an image verb", v.join(" ")),
    }
    Ok(0)
}

/// `rmi` and `image rm`: untags, and deletes images no tag or container uses.
pub fn rmi(dirs: &Dirs, images: &[String], force: bool) -> Result<i32> {
    let store = dirs.image_store()?;
    let mut failed = false;
    let in_use =
        |id: &hako_image::ImageId| hako_engine::record::image_in_use(dirs, &id.to_string());
    for i in images {
        match store.remove(i, force, &in_use) {
            Ok(rep) => {
                for u in rep.untagged {
                    hako_engine::events::emit(dirs, "image", "untag", &u, &[("name", &u)]);
                    println!("Untagged: {u}");
                }
                if let Some(d) = rep.deleted {
                    hako_engine::events::emit(dirs, "image", "delete", &d.to_string(), &[]);
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
    // One line per failure was printed: no summary line, exit 125.
    Ok(if failed { 125 } else { 0 })
}

/// `load -i FILE`.
pub fn load(dirs: &Dirs, input: &Path) -> Result<i32> {
    for l in dirs.image_store()?.load(input)? {
        hako_engine::events::emit(dirs, "image", "load", &l.id.to_string(), &[]);
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.id);
        }
        for n in l.names {
            println!("Loaded image: {n}");
        }
    }
    Ok(0)
}

/// `login`: the password from the flag or one line of stdin.
pub fn login(
    registry: &str,
    username: String,
    password: Option<String>,
    password_stdin: bool,
) -> Result<i32> {
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
        registry,
        &hako_image::Credentials { username, password },
    )?;
    println!("Login Succeeded");
    Ok(0)
}

/// `logout`.
pub fn logout(registry: &str) -> Result<i32> {
    if hako_image::logout(&hako_image::auth::default_auth_file(), registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

/// `network create|ls|inspect|rm|connect|disconnect`.
pub fn network(dirs: &Dirs, c: NetCmd) -> Result<i32> {
    // Rootless: the user's networks live in the user's network namespace.
    if hako_engine::dirs::rootless() && !hako_engine::rootless::inside_netns() {
        return Ok(hako_engine::network::in_rootless_netns(dirs, || {
            network(dirs, c).map_err(|e| hako_engine::Error::Other(format!("{e:#}")))
        })?);
    }
    let mgr = dirs.net_manager();
    match c {
        NetCmd::Create {
            subnet,
            gateway,
            bridge,
            internal,
            disable_dns,
            dns,
            name,
        } => {
            let mut spec = hako_net::NetworkSpec::new(&name);
            spec.dns_enabled = !disable_dns;
            for d in &dns {
                spec.dns.push(
                    d.parse()
                        .with_context(|| format!("--dns {d:?}: not an IP address"))?,
                );
            }
            spec.subnet = subnet.map(|s| s.parse()).transpose().context("--subnet")?;
            spec.gateway = gateway
                .map(|s| s.parse())
                .transpose()
                .context("--gateway")?;
            spec.bridge = bridge;
            spec.internal = internal;
            let n = mgr.create(&spec)?;
            hako_engine::events::emit(
                dirs,
                "network",
                "create",
                &n.name,
                &[("name", &n.name), ("type", "bridge")],
            );
            println!("{}", n.name);
        }
        NetCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let f = filters(&filter, &["dangling", "name"])?;
            let mut list = Vec::new();
            for n in mgr.list()? {
                let mut keep = true;
                for (k, v) in &f {
                    keep &= match *k {
                        "dangling" => parse_bool(k, v)? == mgr.inspect(&n.name)?.leases.is_empty(),
                        _ => n.name.contains(v),
                    };
                }
                if keep {
                    list.push(n);
                }
            }
            if quiet {
                list.iter().for_each(|n| println!("{}", n.name));
            } else {
                output::networks(&list, format.as_deref())?
            }
        }
        NetCmd::Prune { .. } => {
            output::deleted("Networks", &hako_engine::network::prune(dirs)?);
        }
        NetCmd::Inspect { networks, format } => {
            return inspect(dirs, Some("network"), &networks, format.as_deref())
        }
        NetCmd::Rm { networks } => {
            // Leases left by a reboot or a crash must not keep it in use.
            hako_engine::network::free_stale_leases(dirs);
            for n in &networks {
                hako_engine::network::remove(dirs, n)?;
                hako_engine::events::emit(
                    dirs,
                    "network",
                    "destroy",
                    n,
                    &[("name", n), ("type", "bridge")],
                );
                println!("{n}");
            }
        }
        NetCmd::Connect {
            ip,
            network,
            container,
        } => {
            let ip = ip
                .map(|a| {
                    a.parse::<std::net::Ipv4Addr>().map_err(|_| {
                        hako_engine::Error::Usage(format!("--ip {a}: not an IPv4 address"))
                    })
                })
                .transpose()?;
            hako_engine::network::connect(dirs, &network, &container, ip)?
        }
        NetCmd::Disconnect { network, container } => {
            hako_engine::network::disconnect(dirs, &network, &container)?
        }
    }
    Ok(0)
}

pub fn volume(dirs: &Dirs, c: VolCmd) -> Result<i32> {
    use hako_engine::volume;
    match c {
        VolCmd::Create { label, name } => {
            let mut labels = std::collections::BTreeMap::new();
            for l in label {
                let (k, v) = l.split_once('=').unwrap_or((&l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let name = match name {
                Some(n) => n,
                None => util::random_id()?,
            };
            let v = volume::ensure(dirs, &name, &labels, false)?.0;
            hako_engine::events::emit(dirs, "volume", "create", &v.name, &[("driver", "local")]);
            println!("{}", v.name);
        }
        VolCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let f = filters(&filter, &["dangling", "name", "label"])?;
            let mut list = Vec::new();
            for v in volume::list(dirs) {
                let mut keep = true;
                for (k, want) in &f {
                    keep &= match *k {
                        "dangling" => {
                            parse_bool(k, want)? == volume::users(dirs, &v.name).is_empty()
                        }
                        "name" => v.name.contains(want),
                        _ => match want.split_once('=') {
                            Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
                            None => v.labels.contains_key(*want),
                        },
                    };
                }
                if keep {
                    list.push(v);
                }
            }
            output::volumes(dirs, &list, quiet, format.as_deref())?
        }
        VolCmd::Inspect { volumes, format } => {
            return inspect(dirs, Some("volume"), &volumes, format.as_deref())
        }
        VolCmd::Rm { force, volumes } => {
            return Ok(each_named(&volumes, |n| {
                volume::remove(dirs, n, force).map_err(|e| e.to_string())?;
                hako_engine::events::emit(dirs, "volume", "destroy", n, &[("driver", "local")]);
                Ok(())
            }))
        }
        VolCmd::Prune { all, .. } => output::deleted("Volumes", &volume::prune(dirs, all)?),
    }
    Ok(0)
}

/// Apply `f` to each name, printing the name on success (as Docker does)
/// and one line per failure; the exit code: 0, or 125 if any failed.
pub fn each_named(names: &[String], mut f: impl FnMut(&str) -> Result<(), String>) -> i32 {
    let mut code = 0;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("hako: {e}");
                code = 125;
            }
        }
    }
    code
}

/// `completion SHELL` (clap_complete) or `completion man DIR`
/// (clap_mangen): both from the clap definitions, so they list every verb
/// and flag with its help.
pub fn completion(shell: &str, dir: Option<&Path>) -> Result<i32> {
    let mut cmd = public_command();
    if shell == "man" {
        let Some(dir) = dir else {
            bail!("completion man: give the directory for the pages");
        };
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        cmd.build();
        write_man(&cmd, "hako", dir)?;
        return Ok(0);
    }
    let sh: clap_complete::Shell = shell.parse().map_err(|_| {
        anyhow::anyhow!("completion {shell:?}: bash, zsh, fish, elvish, powershell, or man DIR")
    })?;
    clap_complete::generate(sh, &mut cmd, "hako", &mut std::io::stdout());
    Ok(0)
}

/// The CLI as users see it: without the internal (hidden) verbs, which
/// some completion generators would otherwise offer.
pub fn public_command() -> clap::Command {
    use clap::CommandFactory;
    let full = crate::hako_cli::Cli::command();
    let mut c = clap::Command::new("hako")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(
            full.get_arguments()
                .filter(|a| a.get_id() != "version")
                .cloned(),
        );
    for s in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        c = c.subcommand(s.clone());
    }
    c
}

/// One page per command and subcommand (`hako-volume-create.1`); hidden
/// (internal) verbs get none.
pub fn write_man(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    let page = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .render(&mut buf)
        .context("render a manual page")?;
    std::fs::write(&page, buf).with_context(|| format!("write {}", page.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
