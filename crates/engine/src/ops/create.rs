//! `create`: record, rootfs, name files, config.json.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::CgroupManager;
use crate::dirs::{self, Dirs};
use crate::record::{self, Record, RunOptions};
use crate::spec::{self, InitHelper, Inputs};
use crate::status::init_alive;
use crate::teardown::remove_all_and_volumes;
use crate::util;
use crate::volume;
use crate::{io_err, Error, Result};

/// Whether the runtime can apply `linux.seccomp` (its features say so).
fn seccomp_supported() -> bool {
    if std::env::var("HAKO_SECCOMP").is_ok_and(|v| v == "0") {
        return false;
    }
    hako_runtime::seccomp_enabled()
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

/// The image's id and config, pulled as `--pull` says: `missing` (the
/// default) when it is not here, `always` every time, `never` not at all.
fn image_config(
    store: &hako_image::Store,
    image: &str,
    pull: Option<&str>,
    quiet: bool,
) -> Result<(String, Value)> {
    let opts = hako_image::PullOptions {
        progress: if quiet {
            hako_image::Progress::Quiet
        } else {
            hako_image::PullOptions::default().progress
        },
        ..Default::default()
    };
    match pull {
        None | Some("missing") => {}
        Some("always") => {
            store.pull(image, &opts)?;
        }
        Some("never") => {
            return store
                .inspect(image)
                .map(|i| (i.id, i.config))
                .map_err(|e| match e {
                    hako_image::StoreError::NoSuchImage(_) => {
                        Error::Usage(format!("no such image {image} here, and --pull never"))
                    }
                    e => e.into(),
                })
        }
        Some(p) => {
            return Err(Error::Usage(format!(
                "--pull {p:?}: always, missing or never"
            )))
        }
    }
    match store.inspect(image) {
        Ok(i) => Ok((i.id, i.config)),
        Err(hako_image::StoreError::NoSuchImage(_)) => {
            if !quiet {
                eprintln!("Unable to find image '{image}' locally; pulling");
            }
            store.pull(image, &opts)?;
            let i = store.inspect(image)?;
            Ok((i.id, i.config))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `expand_mounts` learned that the record's `-v` form cannot say.
#[derive(Debug, Default, PartialEq)]
struct Fresh {
    /// Names given to anonymous volumes (`-v /data`).
    anonymous: Vec<String>,
    /// Destinations whose volume must not get the image's content.
    nocopy: Vec<String>,
    /// Named volumes this create made (in `prepare`): removed again if
    /// it fails.
    made: Vec<String>,
}

/// `--mount` and `--volumes-from` as `-v`/`--tmpfs` entries, and anonymous
/// volumes named, so the record holds one form; duplicate destinations
/// refused. Nothing is made here.
fn expand_mounts(dirs: &Dirs, opts: &RunOptions) -> Result<(RunOptions, Fresh)> {
    let mut o = opts.clone();
    let mut fresh = Fresh::default();
    o.mount.clear();
    o.volumes_from.clear();
    // Label files are read now: the record keeps the labels themselves.
    o.label = crate::tuning::labels(&opts.label, &opts.label_file)?
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    o.label_file.clear();
    if let Some(s) = &opts.stop_signal {
        util::parse_signal(s).map_err(|e| Error::Usage(format!("--stop-signal {s}: {e}")))?;
    }
    if let Some(f) = opts.cidfile.as_ref().filter(|f| f.exists()) {
        return Err(Error::Usage(format!(
            "--cidfile {}: the file exists; another container may be using it: remove it first",
            f.display()
        )));
    }
    for m in &opts.mount {
        match spec::parse_mount(m)? {
            spec::MountArg::Volume {
                entry,
                nocopy,
                dest,
            } => {
                if nocopy {
                    fresh.nocopy.push(dest);
                }
                o.volumes.push(entry);
            }
            spec::MountArg::Tmpfs(t) => o.tmpfs.push(t),
        }
    }
    for from in &opts.volumes_from {
        let (name, mode) = match from.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
            Some(_) => {
                return Err(Error::Usage(format!(
                    "--volumes-from {from:?}: the mode must be ro or rw"
                )))
            }
            None => (from.as_str(), None),
        };
        let other = record::load(dirs, &record::resolve(dirs, name)?)?;
        for v in &other.opts.volumes {
            let (src, dst, ro, named) = spec::parse_volume(v)?;
            let ro = mode.map_or(ro, |m| m == "ro");
            if named || Path::new(&src).is_absolute() {
                o.volumes
                    .push(format!("{src}:{dst}{}", if ro { ":ro" } else { "" }));
            }
        }
    }
    for v in o.volumes.iter_mut() {
        let (src, dst, ro, _) = spec::parse_volume(v)?;
        if src.is_empty() {
            let name = util::random_id()?;
            *v = format!("{name}:{dst}{}", if ro { ":ro" } else { "" });
            fresh.anonymous.push(name);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let dests = o
        .volumes
        .iter()
        .filter_map(|v| spec::parse_volume(v).ok().map(|p| p.1))
        .chain(
            o.tmpfs
                .iter()
                .map(|t| t.split(':').next().unwrap_or("").to_string()),
        );
    for d in dests {
        let d = d.trim_end_matches('/').to_string();
        if !seen.insert(d.clone()) {
            return Err(Error::Usage(format!("duplicate mount point: {d}")));
        }
    }
    Ok((o, fresh))
}

/// `-p` entries without a host port (`-p 80`, `-p 127.0.0.1::80`) and, with
/// `-P`, the ports the image EXPOSEs get a free host port now, so the
/// record holds explicit mappings (what `port` and `inspect` show). The
/// network layer reserves them when the container starts.
fn publish_ports(o: &RunOptions, ic: &Value) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut random: Vec<(String, u16, String)> = Vec::new();
    for p in &o.publish {
        let (spec, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, cp) = match parts.as_slice() {
            [cp] => ("", *cp),
            [ip, "", cp] => (*ip, *cp),
            _ => {
                out.push(p.clone());
                continue;
            }
        };
        let cp = cp
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Usage(format!("-p {p}: {cp:?} is not a port")))?;
        random.push((ip.to_string(), cp, proto.to_string()));
    }
    let exposed = expose_keys(&o.expose)?;
    if o.publish_all {
        for key in ic["ExposedPorts"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(exposed.iter())
        {
            let (cp, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let Ok(cp) = cp.parse::<u16>() else { continue };
            let taken = out.iter().chain(o.publish.iter()).any(|p| {
                p.parse::<hako_net::PortMapping>().is_ok_and(|m| {
                    m.container_port == cp && m.to_string().ends_with(&format!("/{proto}"))
                })
            });
            if !taken && !random.iter().any(|r| r.1 == cp && r.2 == proto) {
                random.push((String::new(), cp, proto.to_string()));
            }
        }
    }
    for (ip, cp, proto) in random {
        let hp = free_port(&ip, &proto)?;
        out.push(if ip.is_empty() {
            format!("{hp}:{cp}/{proto}")
        } else {
            format!("{ip}:{hp}:{cp}/{proto}")
        });
    }
    Ok(out)
}

/// `--expose PORT[/PROTO]` or a range `FIRST-LAST[/PROTO]`, as the
/// image's ExposedPorts keys (`80/tcp`).
fn expose_keys(expose: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in expose {
        let (ports, proto) = e.rsplit_once('/').unwrap_or((e, "tcp"));
        let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
        let range = match ports.split_once('-') {
            Some((a, b)) => port(a).zip(port(b)).filter(|(a, b)| a <= b),
            None => port(ports).map(|p| (p, p)),
        };
        let Some((first, last)) = range.filter(|_| matches!(proto, "tcp" | "udp")) else {
            return Err(Error::Usage(format!(
                "--expose {e}: not PORT[/tcp|udp] or FIRST-LAST[/tcp|udp]"
            )));
        };
        out.extend((first..=last).map(|p| format!("{p}/{proto}")));
    }
    Ok(out)
}

/// A host port nothing uses now (the kernel's pick for port 0).
fn free_port(ip: &str, proto: &str) -> Result<u16> {
    let addr = format!("{}:0", if ip.is_empty() { "0.0.0.0" } else { ip });
    let port = match proto {
        "udp" => std::net::UdpSocket::bind(&addr).and_then(|s| s.local_addr()),
        "tcp" => std::net::TcpListener::bind(&addr).and_then(|s| s.local_addr()),
        _ => {
            return Err(Error::Usage(format!(
                "-p: unknown protocol {proto:?} (tcp, udp)"
            )))
        }
    };
    port.map(|a| a.port())
        .map_err(|e| Error::Usage(format!("-p: no free {proto} port on {addr}: {e}")))
}

/// `create`: record, rootfs, name files, config.json. Returns the id.
pub fn create(dirs: &Dirs, opts: &RunOptions) -> Result<String> {
    if let Some(p) = &opts.platform {
        hako_image::manifest::Platform::check_runnable(p).map_err(Error::Usage)?;
    }
    if let Some(n) = &opts.name {
        record::check_name(n)?;
    }
    crate::monitor::Shown::of(opts)?;
    if opts.detach && !opts.attach.is_empty() {
        return Err(Error::Usage(
            "conflicting options: -a and -d (a detached container has no terminal to attach)"
                .into(),
        ));
    }
    if let Some(p) = &opts.restart {
        let policy: crate::restart::Policy = p.parse()?;
        if opts.rm && policy != crate::restart::Policy::No {
            return Err(Error::Usage(
                "--restart and --rm conflict: a removed container cannot be restarted".into(),
            ));
        }
    }
    let (mut expanded, mut fresh) = expand_mounts(dirs, opts)?;
    let rootless = dirs::rootless();
    let cgroup_manager = crate::config::cgroup_manager(
        dirs.cgroup_manager_flag,
        &dirs.config,
        &crate::config::SystemdHost::detect(),
        rootless,
    )?;
    if rootless && cgroup_manager == CgroupManager::Cgroupfs && !opts.limits.is_empty() {
        eprintln!(
            "hako: warning: --memory, --cpus and --pids-limit are not applied: a rootless \
             container gets limits only through systemd's delegation (--cgroup-manager \
             systemd, on a cgroup2 host with a user session)"
        );
    }
    let store = dirs.image_store()?;
    let (image_id, ic) = image_config(&store, &opts.image, opts.pull.as_deref(), opts.quiet)?;
    // A bad --health-*, --dns* or --add-host flag fails here, before
    // anything exists.
    let healthcheck = crate::health::config(&expanded, &ic)?;
    crate::network::name_options(&expanded)?;
    expanded.publish = publish_ports(&expanded, &ic)?;
    expanded.publish_all = false;
    let opts = &expanded;
    let id = util::random_id()?;
    let name;
    {
        let _l = record::lock(dirs)?;
        name = match &opts.name {
            Some(n) => {
                record::claim_name(dirs, n, &id)?;
                n.clone()
            }
            None => record::generate_name(dirs, &id)?,
        };
        let mut rec = Record::new(
            id.clone(),
            name.clone(),
            opts.image.clone(),
            image_id,
            opts.clone(),
        );
        rec.cgroup_manager = cgroup_manager;
        rec.healthcheck = healthcheck;
        let dir = dirs.container(&id);
        // Unsynced until create's end (record::commit).
        let saved = dirs::mkdir_p(&dir)
            .and_then(|()| record::save_as(dirs, &rec, hako_runtime::os::Durability::Atomic));
        if let Err(e) = saved {
            let _ = std::fs::remove_dir_all(&dir);
            record::release_name(dirs, &name, &id);
            return Err(e);
        }
    }
    let made = prepare(dirs, &store, &id, opts, ic, cgroup_manager, &mut fresh)
        .and_then(|()| write_cidfile(opts, &id));
    match made {
        Ok(()) => {
            if let Ok(r) = record::load(dirs, &id) {
                crate::events::container(dirs, "create", &r, &[]);
            }
            Ok(id)
        }
        Err(e) => {
            let _ = remove_all_and_volumes(dirs, &id);
            for v in &fresh.made {
                // Unless another container took it up meanwhile.
                let _ = volume::remove(dirs, v, true);
            }
            Err(e)
        }
    }
}

/// `--ip`: an IPv4 address for the container on its first user network
/// (Docker takes none on its default network), inside that network's
/// subnet; whether another container holds it is seen at start.
fn check_ip(dirs: &Dirs, ip: &str, mode: &hako_net::NetworkMode) -> Result<()> {
    let usage = |m: String| Error::Usage(format!("--ip {ip}: {m}"));
    let a: std::net::Ipv4Addr = ip
        .parse()
        .map_err(|_| usage("not an IPv4 address".into()))?;
    let network = match mode {
        hako_net::NetworkMode::Bridge(nets) if !nets.is_empty() => &nets[0],
        _ => {
            return Err(usage(
                "an address is given on a user-defined network only (--network NAME), as \
                 Docker does"
                    .into(),
            ))
        }
    };
    let net = dirs.net_manager().inspect(network)?.network;
    net.check_address(a.into())
        .map(drop)
        .map_err(|e| Error::Usage(format!("--ip: {e}")))
}

/// `--cidfile`: the new container's id, in a file that must not exist.
fn write_cidfile(opts: &RunOptions, id: &str) -> Result<()> {
    let Some(f) = &opts.cidfile else {
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(f)
        .and_then(|mut file| std::io::Write::write_all(&mut file, id.as_bytes()))
        .map_err(|e| Error::Usage(format!("--cidfile {}: {e}", f.display())))
}

fn prepare(
    dirs: &Dirs,
    store: &hako_image::Store,
    id: &str,
    opts: &RunOptions,
    ic: Value,
    cgroup_manager: CgroupManager,
    fresh: &mut Fresh,
) -> Result<()> {
    let dir = dirs.container(id);
    let rootless = dirs::rootless();
    let idmap = match crate::userns::parse(opts.userns.as_deref())? {
        crate::userns::Mode::Auto { .. } if rootless => {
            return Err(Error::Usage(
                "--userns auto needs root; rootless containers use the user's own range (or \
                 --userns keep-id)"
                    .into(),
            ))
        }
        crate::userns::Mode::Auto { size } => {
            let size = match size {
                Some(s) => s,
                None => crate::userns::auto_size(store.max_ids(&opts.image)?),
            };
            Some(crate::userns::allocate(dirs, id, size)?)
        }
        crate::userns::Mode::Fixed(_) if rootless => {
            return Err(Error::Usage(
                "--userns HOSTID:SIZE needs root; rootless containers use the user's own range"
                    .into(),
            ))
        }
        crate::userns::Mode::Fixed(m) => Some(m),
        _ => None,
    };
    let (rootfs, rootfs_kind) = {
        let keep_id = (rootless && opts.userns.as_deref() == Some("keep-id")).then(|| {
            let (u, _) = crate::userns::own_namespace("/proc/self/uid_map");
            let (g, _) = crate::userns::own_namespace("/proc/self/gid_map");
            (u, g)
        });
        let ro = hako_image::rootfs::RootfsOptions {
            idmap,
            keep_id,
            mount_program: dirs.config.engine.mount_program.clone(),
            ..Default::default()
        };
        let m = store.prepare_rootfs_with(&opts.image, id, &ro)?;
        (m.path().to_path_buf(), m.kind())
    };
    // A container root in a user namespace never needs to search the
    // (owner-only) directories above its rootfs and volumes: the runtime
    // hands them over as mounts (the runtime's mount handoff).
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
    if rootless && matches!(&net_mode, Nm::Bridge(n) if !n.is_empty()) {
        // A rootless user network's ports go through hako's forwarder,
        // which relays TCP (see crate::portfwd).
        if let Some(p) = opts.publish.iter().find(|p| p.ends_with("/udp")) {
            return Err(Error::Usage(format!(
                "-p {p}: a rootless container on a user network (--network {net_name}) \
                 publishes TCP ports only"
            )));
        }
    }
    if let Some(ip) = &opts.ip {
        check_ip(dirs, ip, &net_mode)?;
    }
    if rootless {
        if let Some(r) = opts.device_cgroup_rule.first() {
            return Err(Error::Usage(format!(
                "--device-cgroup-rule {r:?}: a rootless container has no device cgroup (its \
                 processes open what the user may)"
            )));
        }
    }
    if let Some(mac) = &opts.mac_address {
        let usage = |m: String| Error::Usage(format!("--mac-address {mac}: {m}"));
        hako_net::link::parse_mac(mac).map_err(usage)?;
        if !matches!(net_mode, Nm::Bridge(_)) {
            return Err(usage(format!(
                "--network {net_name} gives the container no interface of its own"
            )));
        }
    }
    crate::monitor::LogConfig::of(opts)?;
    for w in crate::limits::warnings(opts, hako_cgroups::unified_only()) {
        eprintln!("hako: warning: {w}");
    }
    // host-gateway names the network's gateway: there is none without a
    // network of the container's own (it was silently left out).
    if matches!(net_mode, Nm::None | Nm::Container(_)) {
        if let Some(h) = opts
            .add_host
            .iter()
            .find(|h| h.ends_with(":host-gateway") || h.ends_with("=host-gateway"))
        {
            return Err(Error::Usage(format!(
                "--add-host {h}: --network {net_name} has no gateway to name"
            )));
        }
    }
    let host_network = net_mode == Nm::Host;
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
    let names = crate::network::name_options(opts)?;
    hako_net::names::write_files(
        &dir,
        &hostname,
        &names.resolv(&resolv, &[]),
        &hako_net::names::hosts(&names.extra_hosts, &[]),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    let mut volume_dirs = Vec::new();
    for v in &opts.volumes {
        let (src, dst, _, named) = spec::parse_volume(v)?;
        if named && !src.is_empty() {
            let anonymous = fresh.anonymous.contains(&src);
            let (vol, made) = volume::ensure(dirs, &src, &Default::default(), anonymous)?;
            if made && !anonymous {
                fresh.made.push(src.clone());
            }
            let d = vol.data(dirs);
            // A new volume of a container with its own ids is its root's.
            if let (true, Some(m)) = (made, idmap) {
                std::os::unix::fs::lchown(&d, Some(m.uid), Some(m.gid))
                    .map_err(io_err("chown", &d))?;
            }
            // Docker's copy-up: an empty volume gets the image's content.
            if !fresh.nocopy.contains(&dst) {
                volume::copy_up(&rootfs, &dst, &d)?;
            }
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
    // The working directory (-w, else the image's), made if missing, as
    // Docker and podman do.
    if let Some(w) = spec::workdir(opts, &ic).filter(|w| w.starts_with('/')) {
        mount_point_in_rootfs(&rootfs, &w, false)?;
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
    let mut run_as =
        spec::user_in_rootfs(&rootfs, user_str.as_deref().unwrap_or(spec::RunAs::ROOT))?;
    for g in spec::groups_in_rootfs(&rootfs, &opts.group_add)? {
        if g != run_as.gid && !run_as.additional_gids.contains(&g) {
            run_as.additional_gids.push(g);
        }
    }
    // SAFETY: getuid/getgid have no failure mode.
    let (mut uid, mut gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut ns_extents = Default::default();
    if rootless {
        // We are 0 of the user's namespace: the user's own ids are outside.
        let (u, us) = crate::userns::own_namespace("/proc/self/uid_map");
        let (g, gs) = crate::userns::own_namespace("/proc/self/gid_map");
        (uid, gid, ns_extents) = (u, g, (us, gs));
        // keep-id: the user's own ids inside, unless -u says otherwise.
        if opts.userns.as_deref() == Some("keep-id") && user_str.is_none() {
            run_as.uid = uid;
            run_as.gid = gid;
            run_as.additional_gids.clear();
        }
    }
    let user = Some(run_as);
    let flagged = opts
        .device
        .iter()
        .map(|d| device_flag(d))
        .collect::<Result<Vec<_>>>()?;
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
        idmap,
        cgroup_manager,
        uid,
        gid,
        ns_extents,
        volume_dirs,
        env_file_lines,
        user,
        devices: {
            let mut d = if opts.privileged && !rootless {
                host_devices(Path::new("/dev"))
            } else {
                Vec::new()
            };
            d.retain(|x| !flagged.iter().any(|(n, _)| n.path() == x.path()));
            d.extend(flagged.iter().map(|(n, _)| n.clone()));
            d
        },
        device_rules: flagged
            .into_iter()
            .map(|(_, r)| Ok(r))
            .chain(
                opts.device_cgroup_rule
                    .iter()
                    .map(|r| device_cgroup_rule(r)),
            )
            .collect::<Result<_>>()?,
    };
    let s = spec::build(opts, &inputs)?;
    // Synced with the record by record::commit below.
    util::atomic_write_as(
        &dir.join(record::CONFIG),
        serde_json::to_string_pretty(&s).expect("json").as_bytes(),
        hako_runtime::os::Durability::Atomic,
    )?;
    let command = spec::argv(opts, &inputs.image_config).join(" ");
    let stop_signal = opts.stop_signal.clone().or_else(|| {
        inputs.image_config["StopSignal"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    record::commit(dirs, id, |r| {
        r.rootfs = rootfs;
        r.idmap = idmap;
        r.rootfs_kind = Some(rootfs_kind.describe().to_string());
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
    use hako_runtime::os as paths;
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

/// The host's device nodes under `dir` (for `--privileged`), as Docker
/// lists them: character and block devices, not those of the per-container
/// filesystems (pts, shm, mqueue) nor the console.
fn host_devices(dir: &Path) -> Vec<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if md.file_type().is_dir() {
            let name = e.file_name();
            if !matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                out.extend(host_devices(&path));
            }
            continue;
        }
        if path == Path::new("/dev/console")
            || !(md.file_type().is_char_device() || md.file_type().is_block_device())
        {
            continue;
        }
        if let Some(d) = device_node(&md, &path) {
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The device node `md` (a character or block device) at `at` inside the
/// container, with the host node's numbers, mode and owner.
fn device_node(md: &std::fs::Metadata, at: &Path) -> Option<oci_spec::runtime::LinuxDevice> {
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let typ = if md.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if md.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = md.rdev();
    LinuxDeviceBuilder::default()
        .path(at)
        .typ(typ)
        .major(libc::major(rdev) as i64)
        .minor(libc::minor(rdev) as i64)
        .file_mode(md.mode() & 0o7777)
        .uid(md.uid())
        .gid(md.gid())
        .build()
        .ok()
}

/// `--device HOST[:CONTAINER][:PERMS]`: the node, and the cgroup rule that
/// lets the container use it (PERMS of `rwm`, default all three).
fn device_flag(
    v: &str,
) -> Result<(
    oci_spec::runtime::LinuxDevice,
    oci_spec::runtime::LinuxDeviceCgroup,
)> {
    let bad = |why: String| Error::Usage(format!("--device {v:?}: {why}"));
    let parts: Vec<&str> = v.split(':').collect();
    let perms_ok = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms_ok(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(bad("HOST[:CONTAINER][:PERMS]".into())),
    };
    if !perms_ok(perms) {
        return Err(bad(format!(
            "{perms:?}: the permissions are letters of rwm"
        )));
    }
    if !host.starts_with('/') || !ctr.starts_with('/') {
        return Err(bad("the paths must be absolute".into()));
    }
    // The host path may be a symlink (/dev/disk/by-id/…): its target.
    let md = std::fs::metadata(host).map_err(|e| bad(format!("{host}: {e}")))?;
    let node = device_node(&md, Path::new(ctr))
        .ok_or_else(|| bad(format!("{host} is not a character or block device")))?;
    let rule = allow_rule(node.typ(), Some(node.major()), Some(node.minor()), perms);
    Ok((node, rule))
}

/// A device cgroup rule that allows `access` (letters of rwm) to devices
/// of `typ` with these numbers (None: any).
fn allow_rule(
    typ: oci_spec::runtime::LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> oci_spec::runtime::LinuxDeviceCgroup {
    let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
    rule.set_allow(true)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    rule
}

/// `--device-cgroup-rule 'c 189:* rwm'`: a device cgroup allow rule in
/// Docker's form (the kernel's devices.allow syntax).
fn device_cgroup_rule(v: &str) -> Result<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::LinuxDeviceType as T;
    let bad = |why: &str| Error::Usage(format!("--device-cgroup-rule {v:?}: {why}"));
    let words: Vec<&str> = v.split_whitespace().collect();
    let [typ, numbers, access] = words.as_slice() else {
        return Err(bad("TYPE MAJOR:MINOR ACCESS, e.g. 'c 189:* rwm'"));
    };
    let typ = match *typ {
        "a" => T::A,
        "b" => T::B,
        "c" => T::C,
        _ => return Err(bad("the type is a, b or c")),
    };
    let number = |n: &str| match n {
        "*" => Ok(None),
        n => n
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad("MAJOR and MINOR are numbers or *")),
    };
    let (major, minor) = numbers
        .split_once(':')
        .ok_or_else(|| bad("TYPE MAJOR:MINOR ACCESS, e.g. 'c 189:* rwm'"))?;
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad("the access is letters of rwm"));
    }
    Ok(allow_rule(typ, number(major)?, number(minor)?, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cgroup_rules_as_docker_writes_them() {
        let r = device_cgroup_rule("c 189:* rwm").unwrap();
        assert!(r.allow());
        assert_eq!(r.typ(), Some(oci_spec::runtime::LinuxDeviceType::C));
        assert_eq!((r.major(), r.minor()), (Some(189), None));
        assert_eq!(r.access().as_deref(), Some("rwm"));
        let r = device_cgroup_rule("a *:* m").unwrap();
        assert_eq!((r.major(), r.minor()), (None, None));
        for (bad, why) in [
            ("c 189:*", "TYPE MAJOR:MINOR ACCESS"),
            ("x 1:3 r", "the type is a, b or c"),
            ("c 1-3 r", "TYPE MAJOR:MINOR ACCESS"),
            ("c one:3 r", "numbers or *"),
            ("c 1:3 rx", "letters of rwm"),
        ] {
            let e = device_cgroup_rule(bad).unwrap_err().to_string();
            assert!(
                e.contains("--device-cgroup-rule") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn device_flags_become_a_node_and_an_allow_rule() {
        let (node, rule) = device_flag("/dev/zero:/dev/z:r").unwrap();
        assert_eq!(node.path(), Path::new("/dev/z"));
        assert_eq!((node.major(), node.minor()), (1, 5));
        assert!(rule.allow());
        assert_eq!((rule.major(), rule.minor()), (Some(1), Some(5)));
        assert_eq!(rule.access().as_deref(), Some("r"));
        let (node, rule) = device_flag("/dev/null").unwrap();
        assert_eq!(node.path(), Path::new("/dev/null"));
        assert_eq!(rule.access().as_deref(), Some("rwm"));
        assert_eq!(
            device_flag("/dev/null:rw").unwrap().1.access().as_deref(),
            Some("rw")
        );
    }
}
