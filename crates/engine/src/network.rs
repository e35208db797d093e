//! A container's networks: attach at start, connect/disconnect while it
//! runs, stale leases freed, peers' name files refreshed.

use crate::dirs::{self, Dirs};
use crate::record::{self, NetAddr, Record};
use crate::status::{init_alive, keeper_alive, live, monitor_alive};
use crate::{Error, Result};

/// Attach the created container's netns (called by the monitor).
pub fn attach(dirs: &Dirs, rec: &Record, pid: i32) -> Result<Vec<NetAddr>> {
    RELEASING.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mode_s = rec.opts.network.as_deref().unwrap_or("bridge");
    let mode: hako_net::NetworkMode = mode_s.parse()?;
    if dirs::rootless() {
        // User networks live in the user's rootless network namespace.
        if let hako_net::NetworkMode::Bridge(nets) = &mode {
            if !nets.is_empty() {
                return in_rootless_netns(dirs, || attach_bridges(dirs, rec, pid, &mode));
            }
        }
        attach_rootless(dirs, rec, pid, &mode)?;
        return Ok(vec![]);
    }
    attach_bridges(dirs, rec, pid, &mode)
}

/// The address a container asks for on `network`, the `index`-th of its
/// networks: its `--ip` on the first one (checked at create), else on a
/// restore its address before the checkpoint if that is free still.
fn ipv4_choice(rec: &Record, network: &str, index: usize) -> hako_net::Ipv4Choice {
    use hako_net::Ipv4Choice as C;
    if let (0, Some(ip)) = (index, &rec.opts.ip) {
        if let Ok(ip) = ip.parse() {
            return C::Exactly(ip);
        }
    }
    if rec.restoring {
        if let Some(ip) = rec
            .networks
            .iter()
            .find(|a| a.network == network)
            .and_then(|a| a.ip.parse().ok())
        {
            return C::Preferably(ip);
        }
    }
    C::Any
}

/// Attach to bridge networks (or `none`): root in the host's network
/// namespace, rootless in the user's (see [`in_rootless_netns`]).
fn attach_bridges(
    dirs: &Dirs,
    rec: &Record,
    pid: i32,
    mode: &hako_net::NetworkMode,
) -> Result<Vec<NetAddr>> {
    let mgr = dirs.net_manager();
    // Leases of a container being started are from an earlier start whose
    // end was never recorded (a crash, a reboot): free them, and every
    // other lease whose container is gone, so addresses are reusable.
    let _ = mgr.release(&rec.id);
    free_stale_leases(dirs);
    let netns = hako_net::Netns::from_pid(pid as u32);
    let ports = rec.ports()?;
    match mode {
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
                    aliases: &rec.opts.network_alias,
                    ipv4: ipv4_choice(rec, n, i),
                    mac: rec
                        .opts
                        .mac_address
                        .as_deref()
                        .filter(|_| i == 0)
                        .and_then(|m| hako_net::link::parse_mac(m).ok()),
                };
                mgr.connect(n, &at)?;
                ensure_dns(dirs, n)?;
            }
            mgr.write_name_files(
                &rec.id,
                &rec.hostname,
                &dirs.container(&rec.id),
                &name_options(&rec.opts)?,
            )?;
            refresh_peers(dirs, &rec.id);
        }
        hako_net::NetworkMode::None => hako_net::Manager::setup_loopback(&netns)?,
        _ => {}
    }
    Ok(net_addrs(&mgr.leases_of(&rec.id)?))
}

/// Rootless: no bridge, veth or nft rule on the host. `none` is a
/// namespace with `lo` up; the default network is pasta (a user-space
/// stack turning the container's traffic into the user's sockets, with
/// `-p` ports listened on by pasta on the host), which ends by itself
/// with the namespace.
fn attach_rootless(
    dirs: &Dirs,
    rec: &Record,
    pid: i32,
    mode: &hako_net::NetworkMode,
) -> Result<()> {
    use hako_net::NetworkMode as Nm;
    let netns = hako_net::Netns::from_pid(pid as u32);
    match mode {
        Nm::None => hako_net::Manager::setup_loopback(&netns)?,
        Nm::Bridge(nets) if nets.is_empty() => {
            let cmd = rootless_network_cmd(dirs)?;
            let run = dirs.run_container(&rec.id);
            // pasta, root of our user namespace, becomes nobody before it
            // opens the namespace, and nobody may not open another
            // process's /proc/PID/ns files: hand it (and slirp4netns) a
            // bind mount of the namespace instead (as podman does). pasta
            // watches the file and quits once it is gone: see [`release`].
            let ns_file = run.join("netns");
            std::fs::write(&ns_file, b"").map_err(crate::io_err("create", &ns_file))?;
            let src = std::ffi::OsString::from(format!("/proc/{pid}/ns/net"));
            let bound = hako_runtime::os::mount(Some(&src), &ns_file, None, libc::MS_BIND, None)
                .map_err(crate::sys_err("bind the container's network namespace"));
            let ports = rec.ports()?;
            let started = bound.and_then(|()| match &cmd {
                RootlessNet::Pasta(p) => hako_net::rootless::start_pasta(
                    p,
                    &hako_net::rootless::Target::Paths {
                        netns: ns_file.clone(),
                        userns: None,
                    },
                    &ports,
                    &run.join("pasta.pid"),
                )
                .map(drop)
                .map_err(|e| crate::Error::Other(e.to_string())),
                RootlessNet::Slirp(p) => {
                    let mut keep = None;
                    let r = hako_net::rootless::start_slirp(
                        p,
                        &ns_file,
                        // Short: a socket path must fit in 108 bytes.
                        &dirs.run.join(format!("slirp-{}.sock", &rec.id[..12])),
                        &ports,
                        &mut keep,
                    )
                    .map_err(|e| crate::Error::Other(e.to_string()))
                    .and_then(|pid| {
                        let f = run.join("slirp.pid");
                        crate::util::atomic_write(&f, pid.to_string().as_bytes())
                    });
                    *SLIRP_EXIT.lock().unwrap_or_else(|e| e.into_inner()) = keep;
                    r
                }
            });
            if started.is_err() {
                unbind_netns(dirs, &rec.id);
            }
            started?;
        }
        _ => {}
    }
    Ok(())
}

/// The write end of this monitor's slirp4netns's exit pipe: slirp4netns
/// ends when it closes (at the container's end, or with the monitor).
static SLIRP_EXIT: std::sync::Mutex<Option<std::os::fd::OwnedFd>> = std::sync::Mutex::new(None);

/// What gives a rootless container's default network the way out.
enum RootlessNet {
    Pasta(std::path::PathBuf),
    Slirp(std::path::PathBuf),
}

/// `rootless_network_cmd` under `[engine]` (podman's setting of that
/// name): pasta or slirp4netns; by default pasta, else slirp4netns.
fn rootless_network_cmd(dirs: &Dirs) -> Result<RootlessNet> {
    let want = dirs.config.engine.rootless_network_cmd.as_deref();
    let pasta = || which("pasta").map(RootlessNet::Pasta);
    let slirp = || which("slirp4netns").map(RootlessNet::Slirp);
    let found = match want {
        None => pasta().or_else(slirp),
        Some("pasta") => pasta(),
        Some("slirp4netns") => slirp(),
        Some(other) => {
            return Err(crate::Error::Usage(format!(
                "rootless_network_cmd {other:?} in hako.toml: pasta or slirp4netns"
            )))
        }
    };
    found.ok_or_else(|| {
        crate::Error::Other(format!(
            "rootless networking needs {} (Debian: passt or slirp4netns), or use --network none \
             or host",
            want.unwrap_or("pasta or slirp4netns")
        ))
    })
}

/// Give back a container's addresses: its leases, or (rootless) the
/// namespace file whose removal ends its pasta, and its slirp4netns.
pub fn release(dirs: &Dirs, id: &str) {
    let mgr = dirs.net_manager();
    if dirs::rootless() && !crate::rootless::inside_netns() {
        if mgr.leases_of(id).is_ok_and(|l| !l.is_empty()) {
            let _ = in_rootless_netns(dirs, || Ok(mgr.release(id)?));
        }
    } else if RELEASING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_deref()
        != Some(id)
    {
        let _ = mgr.release(id);
    }
    unbind_netns(dirs, id);
}

/// The container whose leases a child of this process is releasing, or
/// that had none (see [`release_in_background`]): [`release`] leaves them
/// alone until the next [`attach`] makes new ones.
static RELEASING: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The start of [`release`] for a monitor whose container ended: its
/// published ports are free when this returns, and its veths and leases
/// go in a child process that holds the network store's lock until the
/// veths are off their bridges and the leases gone, and then deletes the
/// veths (see [`hako_net::Manager::begin_release`]): every hako command
/// that looks at leases waits for the first part, but neither `hako run
/// --rm` nor the next start waits ~15 ms per veth for the kernel to
/// unregister it. Falls back to
/// releasing here if the child cannot be made; rootless leases are
/// released by [`release`] (in the user's network namespace).
pub fn release_in_background(dirs: &Dirs, id: &str) {
    if dirs::rootless() {
        return;
    }
    let mgr = dirs.net_manager();
    let Ok(rel) = mgr.begin_release(id) else {
        return;
    };
    let handed = || *RELEASING.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.to_owned());
    if rel.is_empty() {
        // Nothing to release: [`release`] need not look again.
        drop(rel);
        handed();
        return;
    }
    match hako_runtime::os::fork() {
        Ok(None) => {
            // Nothing of the user's stays open here: a terminal or a pipe
            // reader (`$(hako run …)`) sees its end when the monitor exits.
            crate::util::stdio_to_null();
            let _ = rel.finish();
            // SAFETY: _exit ends the forked child without the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(Some(_)) => {
            // Reaped by the next supervise (a restart reaps any child), or
            // by whoever inherits it once the monitor exits.
            drop(rel);
            handed();
        }
        Err(_) => {
            let _ = rel.finish();
        }
    }
}

/// Run `f` in a child process inside the user's rootless network
/// namespace, where its user networks' bridges, rules and name servers
/// live (held by the pause process, reaching out through pasta: see
/// [`crate::rootless`]). A child, because a process in a user namespace
/// cannot return to the host's network namespace; `f`'s result comes back
/// as JSON. For a single-threaded caller.
pub fn in_rootless_netns<T: serde::Serialize + serde::de::DeserializeOwned>(
    dirs: &Dirs,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    use std::io::{Read, Write};
    let ns = crate::rootless::netns(&dirs.run)?;
    let (r, w) = crate::util::pipe()?;
    match hako_runtime::os::fork().map_err(crate::sys_err("fork"))? {
        None => {
            drop(r);
            crate::rootless::INSIDE_NETNS.store(true, std::sync::atomic::Ordering::Relaxed);
            let out: std::result::Result<T, String> =
                hako_runtime::os::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNET)
                    .map_err(|e| format!("join the rootless network namespace: {e}"))
                    .and_then(|()| f().map_err(|e| e.to_string()));
            let mut w = std::fs::File::from(w);
            let _ = w.write_all(&serde_json::to_vec(&out).unwrap_or_default());
            drop(w);
            // SAFETY: _exit ends the forked child without the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        Some(child) => {
            drop(w);
            let mut buf = Vec::new();
            let _ = std::fs::File::from(r).read_to_end(&mut buf);
            let _ = hako_runtime::os::waitpid(child, 0);
            let out: std::result::Result<T, String> = serde_json::from_slice(&buf)
                .map_err(|_| crate::Error::Other("the rootless network helper died".into()))?;
            out.map_err(crate::Error::Other)
        }
    }
}

fn unbind_netns(dirs: &Dirs, id: &str) {
    SLIRP_EXIT.lock().unwrap_or_else(|e| e.into_inner()).take();
    crate::portfwd::stop();
    // Now, not at its next look at the exit pipe: its ports are free once
    // the container is gone.
    let pid_file = dirs.run_container(id).join("slirp.pid");
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.windows(11).any(|w| w == b"slirp4netns") {
            let _ = hako_runtime::os::kill(pid, libc::SIGTERM);
        }
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(
            dirs.run
                .join(format!("slirp-{}.sock", &id[..12.min(id.len())])),
        );
    }
    let ns_file = dirs.run_container(id).join("netns");
    if ns_file.exists() {
        let _ = hako_runtime::os::umount2(&ns_file, libc::MNT_DETACH);
        let _ = std::fs::remove_file(&ns_file);
    }
}

/// A program on PATH (or the usual sbin directories).
pub(crate) fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| p.is_file());
    found
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
    for n in nets {
        let Ok(info) = mgr.inspect(&n.name) else {
            continue;
        };
        for l in info.leases {
            // One record per lease, not every record of the store: a
            // bridged start costs O(leases), not O(containers).
            let id = &l.container_id;
            let stale = match record::load(dirs, id) {
                Ok(r) => !init_alive(&r) && !monitor_alive(&r) && !keeper_alive(&r),
                Err(Error::NoSuchContainer(_)) => true,
                Err(_) => false,
            };
            if stale {
                release(dirs, id);
            }
        }
    }
}

fn dns_dir(dirs: &Dirs) -> std::path::PathBuf {
    dirs.run.join("dns")
}

/// Start the name server of `network` (see [`hako_net::dns`]) unless it
/// runs or the network has none: `hako __dns NETWORK`, which reports once
/// it is bound (or that one already runs) and then serves in the
/// background until the network is removed.
pub fn ensure_dns(dirs: &Dirs, network: &str) -> Result<()> {
    let mgr = dirs.net_manager();
    if !mgr.inspect(network)?.network.dns_enabled {
        return Ok(());
    }
    let (mut child, msg) = crate::util::spawn_reporting(
        dirs,
        &["__dns", network],
        std::process::Stdio::null(),
        &format!("the name server of {network}"),
    )?;
    // It reported: it ended, its server forked into the background.
    let _ = child.wait();
    if msg == "ok" {
        return Ok(());
    }
    Err(crate::Error::Other(format!(
        "the name server of network {network}: {msg}"
    )))
}

/// `hako __dns NETWORK`: the network's name server. One per network (a
/// lock in the run directory); it binds the gateway's port 53, says "ok"
/// on `ready`, forks into the background and serves.
pub fn dns_main(dirs: &Dirs, network: &str, ready: std::fs::File) -> Result<i32> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut ready = Some(ready);
    let say = |ready: &mut Option<std::fs::File>, m: &str| {
        if let Some(mut r) = ready.take() {
            let _ = writeln!(r, "{m}");
        }
    };
    let dir = dns_dir(dirs);
    crate::dirs::mkdir_p(&dir)?;
    let lock_path = dir.join(format!("{network}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(crate::io_err("open", &lock_path))?;
    // SAFETY: flock on a valid fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        say(&mut ready, "ok");
        return Ok(0);
    }
    let mgr = dirs.net_manager();
    let net = mgr.inspect(network)?.network;
    let mut bound = std::net::UdpSocket::bind((net.gateway, 53));
    if bound
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    {
        // A server of ours whose lock went with its run directory (wiped
        // without a reboot): it holds the port; it goes.
        for pid in servers(dirs, network) {
            let _ = hako_runtime::os::kill(pid, libc::SIGKILL);
            let _ = wait_gone(pid);
        }
        bound = std::net::UdpSocket::bind((net.gateway, 53));
    }
    let sock = match bound {
        Ok(s) => s,
        Err(e) => {
            let m = format!("bind {}:53: {e}", net.gateway);
            say(&mut ready, &m);
            return Err(crate::Error::Other(m));
        }
    };
    // TCP too, for clients that retry there after a truncated answer.
    // The UDP port is ours (above), and a stale server of ours held both;
    // should TCP still be refused, UDP serves alone rather than no names
    // at all.
    let tcp = std::net::TcpListener::bind((net.gateway, 53)).ok();
    let upstream = if net.dns.is_empty() {
        hako_net::dns::upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
    } else {
        net.dns
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, 53))
            .collect()
    };
    // Into the background: the parent reports and ends; the child, which
    // keeps the lock and the socket, serves.
    match hako_runtime::os::fork().map_err(crate::sys_err("fork the name server"))? {
        Some(_) => {
            say(&mut ready, "ok");
            Ok(0)
        }
        None => {
            drop(ready);
            let _ = std::fs::write(
                dir.join(format!("{network}.pid")),
                hako_runtime::os::getpid().to_string(),
            );
            let name = network.to_string();
            let _keep = lock;
            let r = hako_net::dns::serve(
                sock,
                tcp,
                std::sync::Arc::new(move || {
                    mgr.inspect(&name).map(|i| i.leases).unwrap_or_default()
                }),
                upstream,
            );
            Ok(i32::from(r.is_err()))
        }
    }
}

/// This engine's name servers of `network`: processes `hako __dns
/// NETWORK` whose HAKO_RUN_DIR is ours (found in /proc, so also when their
/// pid file is gone).
fn servers(dirs: &Dirs, network: &str) -> Vec<i32> {
    let run = format!("HAKO_RUN_DIR={}", dirs.run.display());
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() < 3 || args[1] != b"__dns" || args[2] != network.as_bytes() {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == run.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Until `pid` is gone (bounded).
fn wait_gone(pid: i32) -> bool {
    for _ in 0..500 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Stop the name server of `network` (when the network goes).
pub fn stop_dns(dirs: &Dirs, network: &str) {
    let pidf = dns_dir(dirs).join(format!("{network}.pid"));
    for pid in servers(dirs, network) {
        let _ = hako_runtime::os::kill(pid, libc::SIGKILL);
        let _ = wait_gone(pid);
    }
    let _ = std::fs::remove_file(&pidf);
    let _ = std::fs::remove_file(dns_dir(dirs).join(format!("{network}.lock")));
}

/// `network inspect`'s object, in Docker's shape (`.Name`, `.IPAM.Config`,
/// `.Containers` by id with each one's `IPv4Address`, the bridge's name
/// in `.Options`), with podman's `DNSEnabled` and the network's own
/// nameservers (`network create --dns`) as `DNS`.
pub fn view(network: &hako_net::Network, leases: &[hako_net::Lease]) -> serde_json::Value {
    use serde_json::json;
    let n = network;
    let mut config =
        vec![json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()})];
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        config.push(json!({"Subnet": s6.to_string(), "Gateway": g6.to_string()}));
    }
    let containers: serde_json::Map<String, serde_json::Value> = leases
        .iter()
        .map(|l| {
            let v6 = l
                .ipv6
                .zip(n.subnet6)
                .map(|(a, s)| format!("{a}/{}", s.prefix()))
                .unwrap_or_default();
            let entry = json!({
                "Name": l.container_name,
                "MacAddress": l.mac,
                "IPv4Address": format!("{}/{}", l.ipv4, n.subnet.prefix()),
                "IPv6Address": v6,
                "Aliases": l.aliases,
            });
            (l.container_id.clone(), entry)
        })
        .collect();
    json!({
        "Name": n.name,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": n.subnet6.is_some(),
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "Containers": containers,
        "Options": {
            "com.docker.network.bridge.name": n.bridge,
            "com.docker.network.driver.mtu": n.mtu.to_string(),
        },
        "Labels": {},
        "DNSEnabled": n.dns_enabled,
        "DNS": n.dns,
    })
}

/// `network prune` (and `system prune`'s networks): every user network no
/// container is on, after freeing the leases of containers that are gone;
/// never the default one. The names removed.
pub fn prune(dirs: &Dirs) -> Result<Vec<String>> {
    let mgr = dirs.net_manager();
    free_stale_leases(dirs);
    let default = mgr.default_name().to_string();
    let mut gone = Vec::new();
    for n in mgr.list()? {
        if n.name != default
            && mgr.inspect(&n.name).is_ok_and(|i| i.leases.is_empty())
            && remove(dirs, &n.name).is_ok()
        {
            gone.push(n.name);
        }
    }
    Ok(gone)
}

/// `network rm`: its name server, then the network.
pub fn remove(dirs: &Dirs, network: &str) -> Result<()> {
    let mgr = dirs.net_manager();
    // Refused while containers use it (the manager says so); the name
    // server stays with them.
    if !mgr.inspect(network)?.leases.is_empty() {
        return Ok(mgr.remove(network)?);
    }
    stop_dns(dirs, network);
    if dirs::rootless() {
        return in_rootless_netns(dirs, || Ok(mgr.remove(network)?));
    }
    mgr.remove(network)?;
    Ok(())
}

/// A container's `--dns`, `--dns-search`, `--dns-option` and `--add-host`
/// (checked at create: a bad one is an error naming the flag).
pub fn name_options(o: &crate::record::RunOptions) -> Result<hako_net::names::NameOptions> {
    let mut n = hako_net::names::NameOptions {
        search: o.dns_search.clone(),
        options: o.dns_option.clone(),
        ..Default::default()
    };
    for d in &o.dns {
        n.dns.push(
            d.parse()
                .map_err(|_| crate::Error::Usage(format!("--dns {d:?}: not an IP address")))?,
        );
    }
    for h in &o.add_host {
        // NAME:IP (Docker), NAME=IP (podman too); IPv6 addresses keep their colons.
        let (name, ip) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| {
                crate::Error::Usage(format!(
                    "--add-host {h:?}: use NAME:IP or NAME:host-gateway"
                ))
            })?;
        if ip == "host-gateway" {
            n.gateway_names.push(name.to_string());
            continue;
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        n.extra_hosts.push(hako_net::names::HostEntry {
            ip: ip.parse().map_err(|_| {
                crate::Error::Usage(format!("--add-host {h:?}: {ip:?} is not an IP address"))
            })?,
            names: vec![name.to_string()],
        });
    }
    Ok(n)
}

/// Rewrite the /etc/hosts of containers sharing a network with `id`.
/// A renamed container: its leases and its peers' /etc/hosts follow.
pub fn renamed(dirs: &Dirs, id: &str, name: &str) -> Result<()> {
    dirs.net_manager().rename(id, name)?;
    refresh_peers(dirs, id);
    Ok(())
}

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
                if let Ok(o) = name_options(&r.opts) {
                    let _ = mgr.write_name_files(&r.id, &r.hostname, &dirs.container(&r.id), &o);
                }
            }
        }
    }
}

/// `network connect [--ip IP] NET CONTAINER`: a new NIC in the running
/// container, at `ip` if given.
pub fn connect(
    dirs: &Dirs,
    network: &str,
    name: &str,
    ip: Option<std::net::Ipv4Addr>,
) -> Result<()> {
    if dirs::rootless() && !crate::rootless::inside_netns() {
        return in_rootless_netns(dirs, || connect(dirs, network, name, ip));
    }
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
            aliases: &r.opts.network_alias,
            ipv4: ip.map_or(hako_net::Ipv4Choice::Any, hako_net::Ipv4Choice::Exactly),
            mac: None,
        },
    )?;
    ensure_dns(dirs, network)?;
    mgr.write_name_files(
        &r.id,
        &r.hostname,
        &dirs.container(&r.id),
        &name_options(&r.opts)?,
    )?;
    refresh_peers(dirs, &r.id);
    let addrs = net_addrs(&mgr.leases_of(&r.id)?);
    record::update(dirs, &id, |r| r.networks = addrs)?;
    Ok(())
}

pub fn disconnect(dirs: &Dirs, network: &str, name: &str) -> Result<()> {
    if dirs::rootless() && !crate::rootless::inside_netns() {
        return in_rootless_netns(dirs, || disconnect(dirs, network, name));
    }
    let id = record::resolve(dirs, name)?;
    let mgr = dirs.net_manager();
    mgr.disconnect(network, &id)?;
    let addrs = net_addrs(&mgr.leases_of(&id)?);
    record::update(dirs, &id, |r| r.networks = addrs)?;
    Ok(())
}

/// The record's view of a container's leases.
pub fn net_addrs(leases: &[hako_net::Lease]) -> Vec<NetAddr> {
    leases
        .iter()
        .map(|l| NetAddr {
            network: l.network.clone(),
            ifname: l.ifname.clone(),
            ip: l.ipv4.to_string(),
            mac: l.mac.clone(),
        })
        .collect()
}
