//! The lifecycle verbs. Each is a short function over [`record`], the
//! runtime library, the image store and the network manager.

use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hako_runtime::container;
use serde_json::{json, Value};

use crate::dirs::{self, Dirs};
use crate::record::{self, NetAddr, Phase, Record, RunOptions};
use crate::spec::{self, InitHelper, Inputs};
use crate::util::{self, now_rfc3339_nanos};
use crate::{io_err, Error, Result};

/// The status `ps` shows, derived from the record, the runtime and /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited(Option<i32>),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited(_) => "exited",
        }
    }
    pub fn is_live(&self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

pub fn monitor_alive(r: &Record) -> bool {
    util::pid_alive(r.monitor_pid, r.monitor_start)
}

/// The monitor's parent that outlives it to record the exit code (see
/// [`crate::monitor::keep`]).
pub fn keeper_alive(r: &Record) -> bool {
    util::pid_alive(r.keeper_pid, r.keeper_start)
}

pub fn init_alive(r: &Record) -> bool {
    util::pid_alive(r.pid, r.pid_start)
}

/// The record of a container that must be running (or paused): its id and
/// record, or "NAME is not running".
pub fn live(dirs: &Dirs, name: &str) -> Result<(String, Record)> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if !status(dirs, &r).is_live() {
        return Err(Error::State {
            id: r.name,
            msg: "is not running".into(),
        });
    }
    Ok((id, r))
}

pub fn status(dirs: &Dirs, r: &Record) -> Status {
    match r.phase {
        Phase::Created => Status::Created,
        Phase::Exited => Status::Exited(r.exit_code),
        Phase::Running => {
            if !init_alive(r) {
                return Status::Exited(r.exit_code);
            }
            let paused = container::state_json(&dirs.runtime_root(), &r.id)
                .is_ok_and(|v| v["status"] == "paused");
            if paused || frozen(r) {
                return Status::Paused;
            }
            Status::Running
        }
    }
}

/// The container's cgroup is frozen (asked of the runtime's cgroup code by
/// pid, v1 or v2: the fallback when its runtime state is gone).
fn frozen(r: &Record) -> bool {
    hako_runtime::cgroup::process_frozen(r.pid)
}

/// Whether the runtime can apply `linux.seccomp` (its features say so).
fn seccomp_supported() -> bool {
    if std::env::var("HAKO_SECCOMP").is_ok_and(|v| v == "0") {
        return false;
    }
    hako_runtime::defaults::seccomp_enabled()
}

fn ns_join_path(dirs: &Dirs, flag: &Option<String>, kind: &str) -> Result<Option<PathBuf>> {
    let Some(other) = flag.as_deref().and_then(|f| f.strip_prefix("container:")) else {
        return Ok(None);
    };
    let oid = record::resolve(dirs, other)?;
    let o = record::load(dirs, &oid)?;
    if !init_alive(&o) {
        return Err(Error::State {
            id: o.name,
            msg: format!("is not running: cannot join its {kind} namespace"),
        });
    }
    Ok(Some(PathBuf::from(format!("/proc/{}/ns/{kind}", o.pid))))
}

fn image_config(store: &hako_image::Store, image: &str) -> Result<(String, Value)> {
    match store.inspect(image) {
        Ok(i) => Ok((i.id, i.config)),
        Err(hako_image::StoreError::NoSuchImage(_)) => {
            eprintln!("Unable to find image '{image}' locally; pulling");
            store.pull(image, &hako_image::PullOptions::default())?;
            let i = store.inspect(image)?;
            Ok((i.id, i.config))
        }
        Err(e) => Err(e.into()),
    }
}

/// `create`: record, rootfs, name files, config.json. Returns the id.
pub fn create(dirs: &Dirs, opts: &RunOptions) -> Result<String> {
    if let Some(n) = &opts.name {
        record::check_name(n)?;
    }
    let store = dirs.image_store()?;
    let (image_id, ic) = image_config(&store, &opts.image)?;
    let id = util::random_id()?;
    let name;
    {
        let _l = record::lock(dirs)?;
        name = match &opts.name {
            Some(n) => {
                if let Some(id) = record::name_owner(dirs, n)? {
                    return Err(Error::NameInUse {
                        name: n.clone(),
                        id,
                    });
                }
                n.clone()
            }
            None => record::generate_name(dirs, &id),
        };
        let dir = dirs.container(&id);
        dirs::mkdir_p(&dir)?;
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            image: opts.image.clone(),
            image_id,
            created: now_rfc3339_nanos(),
            opts: opts.clone(),
            phase: Phase::Created,
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            monitor_start: 0,
            keeper_pid: 0,
            keeper_start: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            rootfs: PathBuf::new(),
            hostname: String::new(),
            networks: vec![],
            restart_count: 0,
            command: String::new(),
            stop_signal: None,
        };
        record::save(dirs, &rec)?;
    }
    match prepare(dirs, &store, &id, opts, ic) {
        Ok(()) => Ok(id),
        Err(e) => {
            let _ = remove_all(dirs, &id);
            Err(e)
        }
    }
}

fn prepare(
    dirs: &Dirs,
    store: &hako_image::Store,
    id: &str,
    opts: &RunOptions,
    ic: Value,
) -> Result<()> {
    let dir = dirs.container(id);
    let rootfs = {
        let m = store.prepare_rootfs(&opts.image, id)?;
        m.path().to_path_buf()
    };
    // A container root in a user namespace never needs to search the
    // (owner-only) directories above its rootfs and volumes: the runtime
    // hands them over as mounts (hako_runtime::mounts::Handoff).
    let rootless = dirs::rootless();
    let mut joins = Vec::new();
    for (flag, kind, spec_kind) in [
        (&opts.pid, "pid", "pid"),
        (&opts.ipc, "ipc", "ipc"),
        (&opts.uts, "uts", "uts"),
        (&opts.network, "net", "network"),
    ] {
        if let Some(p) = ns_join_path(dirs, flag, kind)? {
            joins.push((spec_kind.to_string(), p));
        }
    }
    let net_name = opts.network.as_deref().unwrap_or("bridge");
    // The one parser of --network (hako_net::NetworkMode): bad values are
    // refused here, before anything exists.
    let net_mode: hako_net::NetworkMode = net_name.parse()?;
    use hako_net::NetworkMode as Nm;
    if !opts.publish.is_empty() && !matches!(net_mode, Nm::Bridge(_)) {
        // Docker's warning: there is no container address to forward to.
        eprintln!("hako: warning: published ports are discarded with --network {net_name}");
    }
    let host_network = net_mode == Nm::Host || (rootless && !matches!(net_mode, Nm::Container(_)));
    let hostname = match (&opts.hostname, &net_mode) {
        (Some(h), _) => h.clone(),
        (None, Nm::Host) => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| id[..12].to_string()),
        _ => id[..12].to_string(),
    };
    // Name files exist before create (they are bind mounts in the spec);
    // hako-net rewrites them in place once the addresses are known.
    let resolv = hako_net::names::host_resolv_conf().unwrap_or_default();
    hako_net::names::write_files(
        &dir,
        &hostname,
        &hako_net::names::resolv_conf(&resolv, &[]),
        &hako_net::names::hosts(&[], &[]),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    let mut volume_dirs = Vec::new();
    for v in &opts.volumes {
        let (src, _, _, named) = spec::parse_volume(v)?;
        if named && !src.is_empty() {
            let d = dirs.volumes().join(&src).join("_data");
            dirs::mkdir_p(&d)?;
            volume_dirs.push((src, d));
        } else if src.is_empty() {
            // An anonymous volume: a directory of its own.
            return Err(Error::Usage(format!(
                "anonymous volume {v:?}: give it a name (NAME:{v})"
            )));
        } else if !Path::new(&src).exists() {
            dirs::mkdir_p(Path::new(&src))?;
        }
    }
    // Mount points for volumes and tmpfs, made now as host root: a
    // container root in a user namespace may not create them in the image.
    // A bind of a host file needs a file to mount on, anything else a
    // directory.
    let dests = opts
        .volumes
        .iter()
        .filter_map(|v| spec::parse_volume(v).ok())
        .map(|(src, dst, _, named)| (dst, !named && Path::new(&src).is_file()))
        .chain(
            opts.tmpfs
                .iter()
                .map(|t| (t.split(':').next().unwrap_or("").to_string(), false)),
        );
    for (d, is_file) in dests {
        mount_point_in_rootfs(&rootfs, &d, is_file)?;
    }
    let mut env_file_lines = Vec::new();
    for f in &opts.env_files {
        let s = std::fs::read_to_string(f).map_err(io_err("read env file", f))?;
        for l in s.lines() {
            let l = l.trim();
            if !l.is_empty() && !l.starts_with('#') {
                env_file_lines.push(l.to_string());
            }
        }
    }
    let user_str = opts.user.clone().or_else(|| {
        ic["User"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    let user = match user_str {
        Some(u) => Some(match spec::numeric_user(&u) {
            Some((uid, Some(gid))) => (uid, gid),
            _ => spec::lookup_user(&rootfs, &u)?,
        }),
        None => None,
    };
    // SAFETY: getuid/getgid have no failure mode.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let inputs = Inputs {
        id: id.to_string(),
        rootfs: rootfs.clone(),
        ctr_dir: dir.clone(),
        hostname: hostname.clone(),
        image_config: ic,
        joins,
        host_network,
        init: if opts.init {
            Some(InitHelper::discover()?)
        } else {
            None
        },
        seccomp_supported: seccomp_supported(),
        rootless,
        uid,
        gid,
        volume_dirs,
        env_file_lines,
        user,
    };
    let s = spec::build(opts, &inputs)?;
    util::atomic_write(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&s).expect("json").as_bytes(),
    )?;
    let command = spec::argv(opts, &inputs.image_config).join(" ");
    let stop_signal = inputs.image_config["StopSignal"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    record::update(dirs, id, |r| {
        r.rootfs = rootfs;
        r.hostname = hostname;
        r.command = command;
        r.stop_signal = stop_signal;
    })?;
    Ok(())
}

/// Make the mount point `dest` inside the rootfs: `mkdir -p`, or an empty
/// file for a file bind. Every lookup resolves inside the rootfs (openat2
/// RESOLVE_IN_ROOT), so an image's symlink such as `/data -> /etc` leads to
/// the image's /etc, never to the host's.
fn mount_point_in_rootfs(rootfs: &Path, dest: &str, is_file: bool) -> Result<()> {
    use hako_runtime::paths;
    use std::os::fd::AsFd;
    let root = hako_runtime::os::openat(None, rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io_err("open rootfs", rootfs))?;
    let d = Path::new(dest);
    let r = if is_file {
        paths::ensure_file_in_root(root.as_fd(), d)
    } else {
        paths::mkdir_all_in_root(root.as_fd(), d, 0o755)
    };
    r.map(drop).map_err(io_err("create mount point", d))
}

/// Attach the created container's netns (called by the monitor).
pub fn attach_network(dirs: &Dirs, rec: &Record, pid: i32) -> Result<Vec<NetAddr>> {
    let mode_s = rec.opts.network.as_deref().unwrap_or("bridge");
    if dirs::rootless() {
        return Ok(vec![]);
    }
    let mode: hako_net::NetworkMode = mode_s.parse()?;
    let mgr = dirs.net_manager();
    // Leases of a container being started are from an earlier start whose
    // end was never recorded (a crash, a reboot): free them, and every
    // other lease whose container is gone, so addresses are reusable.
    let _ = mgr.release(&rec.id);
    free_stale_leases(dirs);
    let netns = hako_net::Netns::from_pid(pid as u32);
    let ports: Vec<hako_net::PortMapping> = rec
        .opts
        .publish
        .iter()
        .map(|p| {
            p.parse::<hako_net::PortMapping>()
                .map_err(|e| Error::Usage(format!("-p {p}: {e}")))
        })
        .collect::<Result<_>>()?;
    match &mode {
        hako_net::NetworkMode::Bridge(nets) => {
            let nets = if nets.is_empty() {
                vec![mgr.ensure_default()?.name]
            } else {
                nets.clone()
            };
            for (i, n) in nets.iter().enumerate() {
                let p: &[hako_net::PortMapping] = if i == 0 { &ports } else { &[] };
                let at = hako_net::Attach {
                    container_id: &rec.id,
                    container_name: &rec.name,
                    netns: &netns,
                    ports: p,
                };
                mgr.connect(n, &at)?;
            }
            mgr.write_name_files(&rec.id, &rec.hostname, &dirs.container(&rec.id))?;
            refresh_peers(dirs, &rec.id);
        }
        hako_net::NetworkMode::None => hako_net::Manager::setup_loopback(&netns)?,
        _ => {}
    }
    Ok(crate::monitor::net_addrs(&mgr.leases_of(&rec.id)?))
}

/// Release every lease whose container no longer exists, or whose
/// container's processes (init, monitor, keeper) are all gone: after a
/// reboot or a crash nobody recorded its end. A corrupt record keeps its
/// leases (its container may be running). A container being started has
/// a live monitor in its record before it attaches, so it is never taken
/// for stale.
pub fn free_stale_leases(dirs: &Dirs) {
    let mgr = dirs.net_manager();
    let Ok(nets) = mgr.list() else { return };
    let (good, bad) = record::scan(dirs);
    for n in nets {
        let Ok(info) = mgr.inspect(&n.name) else {
            continue;
        };
        for l in info.leases {
            let id = &l.container_id;
            let stale = match good.iter().find(|r| &r.id == id) {
                Some(r) => !init_alive(r) && !monitor_alive(r) && !keeper_alive(r),
                None => !bad.iter().any(|c| &c.id == id),
            };
            if stale {
                let _ = mgr.release(id);
            }
        }
    }
}

/// Re-create what a reboot took from a stopped container before it is
/// started again: its rootfs mount (the runtime state, the run root and
/// the network are re-made by the monitor's create and attach).
fn recover_for_start(dirs: &Dirs, r: &Record) -> Result<()> {
    if r.rootfs.as_os_str().is_empty() {
        return Ok(());
    }
    dirs.image_store()?.remount_rootfs(&r.id)?;
    Ok(())
}

/// Rewrite the /etc/hosts of containers sharing a network with `id`.
fn refresh_peers(dirs: &Dirs, id: &str) {
    let mgr = dirs.net_manager();
    let Ok(mine) = mgr.leases_of(id) else { return };
    for l in mine {
        let Ok(info) = mgr.inspect(&l.network) else {
            continue;
        };
        for p in info.leases {
            if p.container_id == id {
                continue;
            }
            if let Ok(r) = record::load(dirs, &p.container_id) {
                let _ = mgr.write_name_files(&r.id, &r.hostname, &dirs.container(&r.id));
            }
        }
    }
}

/// Start a detached monitor for `id` and wait until it started the container.
pub fn spawn_monitor(dirs: &Dirs, id: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe =
        hako_runtime::protect::self_exe().map_err(|e| Error::Other(format!("find hako: {e}")))?;
    let log = dirs.container(id).join("monitor.log");
    let errf = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log)
            .map_err(io_err("create", &log))?
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__monitor")
        .arg(id)
        .env("HAKO_DATA_DIR", &dirs.data)
        .env("HAKO_RUN_DIR", &dirs.run)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(errf)
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe; the closure touches no memory
    // shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Other(format!("start the monitor: {e}")))?;
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut msg);
    }
    if msg.trim() == "ok" {
        return Ok(());
    }
    let _ = child.wait();
    let extra = std::fs::read_to_string(&log).unwrap_or_default();
    Err(Error::Other(format!(
        "container {}: {}{}",
        &id[..12],
        msg.trim(),
        if extra.trim().is_empty() || extra.contains(msg.trim()) {
            String::new()
        } else {
            format!(" ({})", extra.trim())
        }
    )))
}

/// `run`: create, then monitor in the foreground or spawn a detached one.
pub fn run(dirs: &Dirs, opts: &RunOptions) -> Result<(String, i32)> {
    let id = create(dirs, opts)?;
    if opts.detach {
        // A run that could not start (a taken port, a network error) leaves
        // no container behind: the user asked for a running one.
        if let Err(e) = spawn_monitor(dirs, &id) {
            let _ = rm(dirs, &id, true);
            return Err(e);
        }
        return Ok((id, 0));
    }
    let code = crate::monitor::foreground(dirs, &id)?;
    if record::load(dirs, &id).is_ok_and(|r| r.started_at.is_none() && r.error.is_some()) {
        let _ = rm(dirs, &id, true);
    }
    Ok((id, code))
}

/// `start -a`: run the monitor here, attached; the container's exit code.
pub fn start_attached(dirs: &Dirs, name: &str) -> Result<i32> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if status(dirs, &r).is_live() {
        return Err(Error::State {
            id: r.name,
            msg: "is already running (attach is not supported)".into(),
        });
    }
    if r.phase == Phase::Running && monitor_alive(&r) {
        wait_exit(dirs, &id, Duration::from_secs(10));
    }
    recover_for_start(dirs, &r)?;
    crate::monitor::foreground(dirs, &id)
}

/// `start` (detached).
pub fn start(dirs: &Dirs, name: &str) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    match status(dirs, &r) {
        Status::Running | Status::Paused => return Ok(id),
        _ => {}
    }
    if r.phase == Phase::Running && monitor_alive(&r) {
        wait_exit(dirs, &id, Duration::from_secs(10));
    }
    recover_for_start(dirs, &r)?;
    spawn_monitor(dirs, &id)?;
    Ok(id)
}

fn wait_exit(dirs: &Dirs, id: &str, timeout: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let Ok(r) = record::load(dirs, id) else {
            return true;
        };
        // A live keeper is recording the end of a monitor that died.
        if !init_alive(&r)
            && (r.phase != Phase::Running || !(monitor_alive(&r) || keeper_alive(&r)))
        {
            if r.phase == Phase::Running {
                // The monitor is gone (killed?): record the end ourselves.
                crate::monitor::finish(dirs, id, None);
            }
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(dirs: &Dirs, r: &Record, sig: i32, all: bool) -> Result<()> {
    let root = dirs.runtime_root();
    match container::kill(&root, &r.id, sig, all) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The runtime state may be gone while the init lives (crashed
            // monitor): signal by pid, checked by start time.
            if init_alive(r) {
                hako_runtime::os::kill(r.pid, sig).map_err(crate::sys_err("kill"))
            } else {
                Err(e.into())
            }
        }
    }
}

/// `stop [-t]`: the stop signal, then SIGKILL after the grace period.
pub fn stop(dirs: &Dirs, name: &str, timeout: Option<u64>) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    if !status(dirs, &r).is_live() {
        wait_exit(dirs, &id, Duration::from_secs(5));
        return Ok(id);
    }
    if status(dirs, &r) == Status::Paused {
        let _ = container::resume(&dirs.runtime_root(), &id);
        let _ = set_frozen(&r, false);
    }
    let t = timeout.unwrap_or(10);
    let sig = r
        .stop_signal
        .as_deref()
        .and_then(|s| util::parse_signal(s).ok())
        .unwrap_or(libc::SIGTERM);
    let _ = signal(dirs, &r, sig, false);
    if !wait_exit(dirs, &id, Duration::from_secs(t)) {
        let _ = signal(dirs, &r, libc::SIGKILL, true);
        wait_exit(dirs, &id, Duration::from_secs(15));
    }
    Ok(id)
}

pub fn kill(dirs: &Dirs, name: &str, sig: i32) -> Result<String> {
    let (id, r) = live(dirs, name)?;
    signal(dirs, &r, sig, false)?;
    Ok(id)
}

pub fn restart(dirs: &Dirs, name: &str, timeout: Option<u64>) -> Result<String> {
    let id = stop(dirs, name, timeout)?;
    let _ = record::update(dirs, &id, |r| r.restart_count += 1);
    start(dirs, &id)
}

/// Everything of a container goes: runtime state, network, rootfs, dirs.
/// Idempotent; used by `rm`, `--rm` and failed creates.
pub fn remove_all(dirs: &Dirs, id: &str) -> Result<()> {
    let _ = container::delete(&dirs.runtime_root(), id, true);
    hako_runtime::cgroup::remove_empty_group("hako");
    let _ = dirs.net_manager().release(id);
    if let Ok(store) = dirs.image_store() {
        store.remove_rootfs(id)?;
    }
    let _ = std::fs::remove_dir_all(dirs.run_container(id));
    let _l = record::lock(dirs)?;
    match std::fs::remove_dir_all(dirs.container(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("remove", dirs.container(id))(e))
        }
        _ => Ok(()),
    }
}

/// `rm [-f]`.
pub fn rm(dirs: &Dirs, name: &str, force: bool) -> Result<String> {
    let id = record::resolve(dirs, name)?;
    if let Ok(r) = record::load(dirs, &id) {
        let st = status(dirs, &r);
        if st.is_live() {
            if !force {
                return Err(Error::State {
                    id: r.name,
                    msg: "is running: stop it first or use rm -f".into(),
                });
            }
            if st == Status::Paused {
                let _ = container::resume(&dirs.runtime_root(), &id);
                let _ = set_frozen(&r, false);
            }
            let _ = signal(dirs, &r, libc::SIGKILL, true);
        }
        wait_exit(dirs, &id, Duration::from_secs(15));
    } else if !force && record::exists(&dirs.container(&id)) {
        return Err(Error::State {
            id,
            msg: "has a corrupt record: remove it with rm -f".into(),
        });
    } else {
        kill_unrecorded(dirs, &id);
    }
    remove_all(dirs, &id)?;
    Ok(id)
}

/// A container without a readable record may still run: its init is found
/// through the runtime's state, killed, and waited for (its monitor then
/// finds no record to update and exits).
fn kill_unrecorded(dirs: &Dirs, id: &str) {
    let root = dirs.runtime_root();
    let Ok(st) = container::state_json(&root, id) else {
        return;
    };
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    let _ = container::kill(&root, id, libc::SIGKILL, true);
    let t0 = Instant::now();
    while util::pid_alive(pid, 0) && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why a container's exit code is not known.
pub const UNKNOWN_EXIT: &str = "exit code unknown: the container exited while \
     neither its monitor nor the monitor's keeper was there to collect it \
     (killed, or the host rebooted)";

/// `wait`: block until the container exits; its exit code.
pub fn wait(dirs: &Dirs, name: &str) -> Result<i32> {
    let id = record::resolve(dirs, name)?;
    loop {
        let r = record::load(dirs, &id)?;
        match status(dirs, &r) {
            Status::Exited(_) => {
                wait_exit(dirs, &id, Duration::from_secs(5));
                let r = record::load(dirs, &id)?;
                return r.exit_code.ok_or_else(|| Error::State {
                    id: r.name,
                    msg: UNKNOWN_EXIT.into(),
                });
            }
            Status::Created if !monitor_alive(&r) => {
                return Ok(r.exit_code.unwrap_or(0));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn set_frozen(r: &Record, on: bool) -> Result<()> {
    hako_runtime::cgroup::freeze_process(r.pid, on).map_err(|e| Error::State {
        id: r.name.clone(),
        msg: e.to_string(),
    })
}

pub fn pause(dirs: &Dirs, name: &str, on: bool) -> Result<String> {
    let (id, r) = live(dirs, name)?;
    let root = dirs.runtime_root();
    let r2 = if on {
        container::pause(&root, &id)
    } else {
        container::resume(&root, &id)
    };
    if r2.is_err() {
        // No runtime state (a monitor from before a crash): the cgroup itself.
        set_frozen(&r, on)?;
    }
    Ok(id)
}

fn command_line(r: &Record) -> String {
    if r.command.is_empty() {
        spec::argv(&r.opts, &Value::Null).join(" ")
    } else {
        r.command.clone()
    }
}

fn status_text(s: Status, r: &Record) -> String {
    match s {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            r.started_at
                .as_deref()
                .map(util::ago)
                .unwrap_or_default()
                .trim_end_matches(" ago")
        ),
        Status::Paused => "Up (Paused)".into(),
        Status::Exited(c) => format!(
            "Exited ({}) {}",
            c.map_or("unknown".to_string(), |c| c.to_string()),
            r.finished_at.as_deref().map(util::ago).unwrap_or_default()
        ),
    }
}

/// `ps` rows as JSON objects (the table is printed by the CLI).
pub fn ps(dirs: &Dirs, all: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let (good, bad) = record::scan(dirs);
    // A record that cannot be read is shown (it may be a running
    // container), never silently dropped.
    for c in bad.into_iter().filter(|_| all) {
        out.push(json!({
            "ID": &c.id[..12.min(c.id.len())],
            "Image": "",
            "Command": "",
            "CreatedAt": "",
            "RunningFor": "",
            "State": "corrupt",
            "Status": format!("Corrupt record ({})", c.error),
            "Ports": "",
            "Names": c.name.unwrap_or_default(),
        }));
    }
    for r in good {
        // A record whose directory vanished meanwhile is not listed.
        if !dirs.container(&r.id).exists() {
            continue;
        }
        let s = status(dirs, &r);
        if !all && !s.is_live() {
            continue;
        }
        out.push(json!({
            "ID": r.short_id(),
            "Image": r.image,
            "Command": command_line(&r),
            "CreatedAt": r.created,
            "RunningFor": util::ago(&r.created),
            "State": s.word(),
            "Status": status_text(s, &r),
            "Ports": r.opts.publish.join(", "),
            "Names": r.name,
        }));
    }
    out
}

/// Namespace names as /proc/PID/ns shows them, in the runtime's one table.
pub const NS_TYPES: [&str; 8] = {
    let k = hako_runtime::plan::NsKind::BY_NAME;
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

/// `inspect`.
pub fn inspect(dirs: &Dirs, name: &str) -> Result<Value> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let s = status(dirs, &r);
    let spec: Value = std::fs::read(dirs.container(&id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let live = s.is_live();
    let exit_code = match s {
        Status::Exited(c) => c,
        _ => r.exit_code.or(Some(0)),
    };
    let pid = if live { r.pid } else { 0 };
    let mut nets = serde_json::Map::new();
    for n in &r.networks {
        nets.insert(
            n.network.clone(),
            json!({"IPAddress": n.ip, "MacAddress": n.mac, "Interface": n.ifname}),
        );
    }
    let res = &spec["linux"]["resources"];
    Ok(json!({
        "Id": r.id,
        "Name": r.name,
        "Created": r.created,
        "Path": spec["process"]["args"][0],
        "Args": spec["process"]["args"].as_array().map(|a| a[1..].to_vec()).unwrap_or_default(),
        "Image": r.image_id,
        "ImageName": r.image,
        "State": {
            "Status": s.word(),
            "Running": s == Status::Running,
            "Paused": s == Status::Paused,
            "Pid": pid,
            // Unknown is -1 (never a false 0) with the reason in Error.
            "ExitCode": exit_code.unwrap_or(-1),
            "Error": match (exit_code, &r.error) {
                (_, Some(e)) => e.clone(),
                (None, None) if matches!(s, Status::Exited(_)) => UNKNOWN_EXIT.to_string(),
                _ => String::new(),
            },
            "StartedAt": r.started_at,
            "FinishedAt": r.finished_at,
            "MonitorPid": if monitor_alive(&r) { r.monitor_pid } else { 0 },
        },
        "HostPid": pid,
        "Namespaces": if live { Value::Object(ns_ids(pid)) } else { json!({}) },
        "HostNamespaces": Value::Object(ns_ids("self")),
        "RestartCount": r.restart_count,
        "LogPath": record::log_path(dirs, &id),
        "Rootfs": r.rootfs,
        "Mounts": spec["mounts"].as_array().map(|m| m.iter().filter(|m| m["type"] == "bind" || m["type"] == "tmpfs").map(|m| json!({
            "Type": m["type"], "Source": m["source"], "Destination": m["destination"],
            "RW": !m["options"].as_array().is_some_and(|o| o.iter().any(|x| x == "ro")),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "HostConfig": {
            "Memory": res["memory"]["limit"].as_i64().unwrap_or(0),
            "NanoCpus": res["cpu"]["quota"].as_i64().map_or(0, |q| q * 10_000),
            "PidsLimit": res["pids"]["limit"].as_i64().unwrap_or(0),
            "Privileged": r.opts.privileged,
            "ReadonlyRootfs": r.opts.read_only,
            "AutoRemove": r.opts.rm,
            "NetworkMode": r.opts.network.clone().unwrap_or_else(|| "bridge".into()),
            "CapAdd": r.opts.cap_add,
            "CapDrop": r.opts.cap_drop,
            "SecurityOpt": r.opts.security_opt,
            "Init": r.opts.init,
        },
        "Config": {
            "Hostname": r.hostname,
            "Env": spec["process"]["env"],
            "Cmd": r.opts.cmd,
            "WorkingDir": spec["process"]["cwd"],
            "User": r.opts.user.clone().unwrap_or_default(),
            "Tty": r.opts.tty,
            "OpenStdin": r.opts.interactive,
        },
        "Capabilities": spec["process"]["capabilities"]["bounding"],
        "Seccomp": if spec["linux"]["seccomp"].is_null() { "unconfined" } else { "default" },
        "NetworkSettings": {
            "IPAddress": r.networks.first().map(|n| n.ip.clone()).unwrap_or_default(),
            "Networks": nets,
            "Ports": r.opts.publish,
        },
    }))
}

/// `logs`: write the container's log to `out`/`err`.
pub fn logs(
    dirs: &Dirs,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let id = record::resolve(dirs, name)?;
    let path = record::log_path(dirs, &id);
    let mut f = loop {
        match std::fs::File::open(&path) {
            Ok(f) => break f,
            Err(_)
                if follow && record::load(dirs, &id).is_ok_and(|r| status(dirs, &r).is_live()) =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => return Ok(()),
        }
    };
    // Ok(false): the reader of our output is gone (`| head`): stop quietly.
    let print = |line: &str, out: &mut dyn Write, err: &mut dyn Write| -> Result<bool> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return Ok(true);
        };
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        let r = (|| {
            if timestamps {
                write!(w, "{} ", v["time"].as_str().unwrap_or(""))?;
            }
            w.write_all(text.as_bytes())?;
            w.flush()
        })();
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(Error::Other(format!("write the log: {e}"))),
        }
    };
    let mut content = String::new();
    f.read_to_string(&mut content)
        .map_err(io_err("read", &path))?;
    let mut lines: Vec<&str> = content.lines().collect();
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    for l in lines {
        if !print(l, out, err)? {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position().map_err(io_err("read", &path))?;
    let mut partial = String::new();
    loop {
        let live = record::load(dirs, &id).is_ok_and(|r| {
            let s = status(dirs, &r);
            s.is_live() || (r.phase == Phase::Running && monitor_alive(&r))
        });
        let mut r = std::io::BufReader::new(&f);
        let _ = r.seek(std::io::SeekFrom::Start(pos));
        let mut got = false;
        loop {
            let mut l = String::new();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pos += n as u64;
                    got = true;
                    partial.push_str(&l);
                    if partial.ends_with('\n') {
                        if !print(partial.trim_end(), out, err)? {
                            return Ok(());
                        }
                        partial.clear();
                    }
                }
            }
        }
        if !live && !got {
            return Ok(());
        }
        if !got {
            if util::stdout_closed() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Host pids of the container's processes (its pid namespace), init first.
pub fn pids(r: &Record) -> Vec<i32> {
    container::pidns_members(r.pid)
}

/// `top`: (PID, USER, STAT, CMD) per process.
pub fn top(dirs: &Dirs, name: &str) -> Result<Vec<[String; 4]>> {
    let (_, r) = live(dirs, name)?;
    let mut rows = Vec::new();
    for pid in pids(&r) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let state = hako_runtime::state::proc_stat(pid).map_or('?', |s| s.state);
        rows.push([pid.to_string(), uid, state.to_string(), cmd]);
    }
    Ok(rows)
}

/// `stats` (one sample) from the runtime's view of the container's cgroup.
pub fn stats(dirs: &Dirs, name: &str) -> Result<Value> {
    let id = record::resolve(dirs, name)?;
    let r = record::load(dirs, &id)?;
    let live = status(dirs, &r).is_live();
    let s = if live {
        container::stats(&dirs.runtime_root(), &id).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(json!({
        "ID": r.short_id(),
        "Name": r.name,
        "State": status(dirs, &r).word(),
        "PIDs": if live { pids(&r).len() } else { 0 },
        "Stats": s,
    }))
}

/// `network connect NET CONTAINER`: a new NIC in the running container.
pub fn network_connect(dirs: &Dirs, network: &str, name: &str) -> Result<()> {
    let (id, r) = live(dirs, name)?;
    let mgr = dirs.net_manager();
    let netns = hako_net::Netns::from_pid(r.pid as u32);
    mgr.connect(
        network,
        &hako_net::Attach {
            container_id: &r.id,
            container_name: &r.name,
            netns: &netns,
            ports: &[],
        },
    )?;
    mgr.write_name_files(&r.id, &r.hostname, &dirs.container(&r.id))?;
    refresh_peers(dirs, &r.id);
    let addrs = crate::monitor::net_addrs(&mgr.leases_of(&r.id)?);
    record::update(dirs, &id, |r| r.networks = addrs)?;
    Ok(())
}

pub fn network_disconnect(dirs: &Dirs, network: &str, name: &str) -> Result<()> {
    let id = record::resolve(dirs, name)?;
    let mgr = dirs.net_manager();
    mgr.disconnect(network, &id)?;
    let addrs = crate::monitor::net_addrs(&mgr.leases_of(&id)?);
    record::update(dirs, &id, |r| r.networks = addrs)?;
    Ok(())
}

/// Is an image used by a container (for `rmi`)?
pub fn image_in_use(dirs: &Dirs, image_id: &str) -> bool {
    record::all(dirs).iter().any(|r| r.image_id == image_id)
}
