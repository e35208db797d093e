//! The engine's record of a container (`<data>/containers/<id>/record.json`),
//! names, id prefixes, and the lock that serialises changes.
//!
//! Every change to records happens under one flock
//! (`<data>/containers/.lock`), held for the few milliseconds of a
//! read-modify-write: that is what makes names unique and concurrent CLI
//! calls safe. The record is written before anything else exists for a
//! container, so a crashed CLI leaves a record that `ps -a` shows and
//! `rm -f` cleans.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dirs::Dirs;
use crate::util::{self, Lock};
use crate::{io_err, Error, Result};

pub const RECORD: &str = "record.json";
/// The container's name alone, written once next to the record: a record
/// that cannot be read (truncated by a crash, a full disk, a hand edit)
/// still reserves its name through this file, so the name can never be
/// handed to a second container while the first may be running.
pub const NAME: &str = "name";
pub const LOG: &str = "container.log";
/// The container's OCI bundle config, next to the record.
pub const CONFIG: &str = "config.json";

/// The resource flags of `run`, `create` and `update`, with Docker's names
/// and units (unset: the kernel's default, or unchanged by `update`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct Limits {
    /// Memory limit (e.g. 512m, 1g; at least 6MB).
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub memory: Option<String>,
    /// Memory plus swap (e.g. 1g; -1: unlimited swap); needs --memory.
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub memory_swap: Option<String>,
    /// Soft memory limit, below --memory.
    #[cfg_attr(feature = "cli", arg(long))]
    pub memory_reservation: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cpus: Option<f64>,
    /// CPU time per period, in microseconds (at least 1000; -1:
    /// unlimited); with --cpu-period, instead of --cpus.
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub cpu_quota: Option<i64>,
    /// The CPU quota's period, in microseconds (1000 to 1000000; the
    /// kernel's default 100000).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (default 1024; 0: unset).
    #[cfg_attr(feature = "cli", arg(short = 'c', long))]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (e.g. 0-2,4).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (e.g. 0).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cpuset_mems: Option<String>,
    /// Block IO weight, 10 to 1000 (0: unset).
    #[cfg_attr(feature = "cli", arg(long))]
    pub blkio_weight: Option<u16>,
    /// Most processes the container may have (-1: unlimited).
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub pids_limit: Option<i64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// `other`'s set values over these (what `update` keeps).
    pub fn overlay(&mut self, other: &Limits) {
        macro_rules! take {
            ($($f:ident),*) => {$(
                if other.$f.is_some() {
                    self.$f = other.$f.clone();
                }
            )*};
        }
        take!(
            memory,
            memory_swap,
            memory_reservation,
            cpus,
            cpu_quota,
            cpu_period,
            cpu_shares,
            cpuset_cpus,
            cpuset_mems,
            blkio_weight,
            pids_limit
        );
    }
}

/// The flags of `run`/`create`, kept in the record so `start`/`restart`
/// can run the container again. This is the one definition: the `hako`
/// CLI flattens it into its `run`/`create` commands (with the `cli`
/// feature, which derives the clap parser and its help from these docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct RunOptions {
    /// Another name of the container on its user networks (resolved by the
    /// network's name server).
    #[cfg_attr(feature = "cli", arg(long))]
    pub network_alias: Vec<String>,
    /// Where the container's output is kept: json-file (the default;
    /// podman's k8s-file is taken as it) or none (no log: `logs` has
    /// nothing to show).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DRIVER"))]
    pub log_driver: Option<String>,
    /// max-size=SIZE (rotate the log at that size, e.g. 10m) or
    /// max-file=N (keep N files in all, with max-size; default 1).
    #[cfg_attr(feature = "cli", arg(long, value_name = "OPT"))]
    pub log_opt: Vec<String>,
    /// No progress while pulling the image (as Docker's run -q).
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub quiet: bool,
    /// The container's NIS domain name (its own UTS namespace).
    #[cfg_attr(feature = "cli", arg(long))]
    pub domainname: Option<String>,
    /// OS/ARCH of the image (Docker's form): this host's platform only,
    /// as hako runs no emulator.
    #[cfg_attr(feature = "cli", arg(long, value_name = "OS/ARCH"))]
    pub platform: Option<String>,
    /// A port the container listens on (PORT[/PROTO] or a range), as the
    /// image's EXPOSE: what -P publishes.
    #[cfg_attr(feature = "cli", arg(long, value_name = "PORT"))]
    pub expose: Vec<String>,
    /// The container's IPv4 address on its first user network (Docker's
    /// --ip; the default network takes none, as Docker's).
    #[cfg_attr(feature = "cli", arg(long, value_name = "IPV4"))]
    pub ip: Option<String>,
    /// The MAC address of the container's interface on its first network
    /// (default: 02:42 and its IPv4 address).
    #[cfg_attr(feature = "cli", arg(long, value_name = "MAC"))]
    pub mac_address: Option<String>,
    /// A nameserver for the container (over the network's and the host's).
    #[cfg_attr(feature = "cli", arg(long))]
    pub dns: Vec<String>,
    /// A DNS search domain (`.` for none).
    #[cfg_attr(feature = "cli", arg(long))]
    pub dns_search: Vec<String>,
    /// A resolver option (resolv.conf `options`, e.g. ndots:2).
    #[cfg_attr(feature = "cli", arg(long))]
    pub dns_option: Vec<String>,
    /// NAME:IP in /etc/hosts (IP `host-gateway`: the host's address on the
    /// container's network).
    #[cfg_attr(feature = "cli", arg(long))]
    pub add_host: Vec<String>,
    /// A command whose success means healthy (run with /bin/sh -c in the
    /// container); over the image's HEALTHCHECK.
    #[cfg_attr(feature = "cli", arg(long))]
    pub health_cmd: Option<String>,
    /// Time between health checks (default 30s).
    #[cfg_attr(feature = "cli", arg(long))]
    pub health_interval: Option<String>,
    /// Longest a health check may run (default 30s).
    #[cfg_attr(feature = "cli", arg(long))]
    pub health_timeout: Option<String>,
    /// Failures in a row that make it unhealthy (default 3).
    #[cfg_attr(feature = "cli", arg(long))]
    pub health_retries: Option<u32>,
    /// Time after the start when failures do not count yet (default 0s).
    #[cfg_attr(feature = "cli", arg(long))]
    pub health_start_period: Option<String>,
    /// No health check, not even the image's.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_healthcheck: bool,
    /// Restart policy of a detached container: no, on-failure[:MAX],
    /// always or unless-stopped (the monitor restarts it with Docker's
    /// backoff; `start --all` starts always/unless-stopped ones at boot).
    #[cfg_attr(feature = "cli", arg(long))]
    pub restart: Option<String>,
    /// Attach only these streams (STDIN, STDOUT, STDERR; repeat the flag;
    /// default: all three) to a container in the foreground; the others
    /// still go to its logs.
    #[cfg_attr(feature = "cli", arg(short = 'a', long, value_name = "STREAM"))]
    pub attach: Vec<String>,
    /// Run in the background and print the container id.
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub detach: bool,
    /// The keys that detach a foreground container from the terminal and
    /// leave it running: ctrl-<c> or single characters, comma-separated
    /// (default ctrl-p,ctrl-q).
    #[cfg_attr(feature = "cli", arg(long, value_name = "KEYS"))]
    #[serde(skip)]
    pub detach_keys: Option<String>,
    /// Pass the signals `run` gets on to the container (default true;
    /// without a terminal, as Docker). With false, a signal ends `run`
    /// alone and the container runs on.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
            default_missing_value = "true")
    )]
    #[serde(skip)]
    pub sig_proxy: Option<bool>,
    /// Keep stdin open.
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub tty: bool,
    /// Remove the container when it exits.
    #[cfg_attr(feature = "cli", arg(long))]
    pub rm: bool,
    /// The container's name (default: a generated one).
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// The container's hostname (-h, as in Docker).
    #[cfg_attr(feature = "cli", arg(short = 'h', long))]
    pub hostname: Option<String>,
    /// KEY=VALUE (or KEY to take it from the environment).
    #[cfg_attr(feature = "cli", arg(short, long = "env"))]
    pub env: Vec<String>,
    /// A file of KEY=VALUE lines.
    #[cfg_attr(feature = "cli", arg(long = "env-file"))]
    pub env_files: Vec<PathBuf>,
    /// The working directory inside the container.
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub workdir: Option<String>,
    /// USER[:GROUP] or UID[:GID]; a UID not in the image's passwd gets GID 0.
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub user: Option<String>,
    /// HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro].
    #[cfg_attr(feature = "cli", arg(short, long = "volume"))]
    pub volumes: Vec<String>,
    /// PATH[:OPTIONS].
    #[cfg_attr(feature = "cli", arg(long))]
    pub tmpfs: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy]
    /// [,tmpfs-size=…][,tmpfs-mode=…] (Docker's --mount).
    #[cfg_attr(feature = "cli", arg(long = "mount"))]
    pub mount: Vec<String>,
    /// CONTAINER[:ro|:rw]: that container's volumes, at the same paths.
    #[cfg_attr(feature = "cli", arg(long))]
    pub volumes_from: Vec<String>,
    /// Mount the root filesystem read-only.
    #[cfg_attr(feature = "cli", arg(long))]
    pub read_only: bool,
    /// [IP:][HOSTPORT:]CONTAINERPORT[/PROTO] (no host port: a free one).
    #[cfg_attr(feature = "cli", arg(short, long = "publish"))]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs, each on a free host port.
    #[cfg_attr(feature = "cli", arg(short = 'P', long))]
    pub publish_all: bool,
    /// bridge, none, host, container:NAME or network names.
    #[cfg_attr(feature = "cli", arg(long, alias = "net"))]
    pub network: Option<String>,
    /// NAME=SOFT[:HARD] resource limit (e.g. nofile=1024:2048; -1: unlimited).
    #[cfg_attr(feature = "cli", arg(long))]
    pub ulimit: Vec<String>,
    /// KEY=VALUE parameter of the container's own namespaces (e.g.
    /// net.ipv4.ip_forward=1).
    #[cfg_attr(feature = "cli", arg(long))]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm (default 64m).
    #[cfg_attr(feature = "cli", arg(long))]
    pub shm_size: Option<String>,
    /// The OOM killer's preference for the container, -1000 to 1000.
    #[cfg_attr(feature = "cli", arg(long, allow_hyphen_values = true))]
    pub oom_score_adj: Option<i32>,
    /// An additional group (a name in the image's /etc/group, or a number).
    #[cfg_attr(feature = "cli", arg(long))]
    pub group_add: Vec<String>,
    /// The signal `stop` sends (default: the image's STOPSIGNAL, else SIGTERM).
    #[cfg_attr(feature = "cli", arg(long))]
    pub stop_signal: Option<String>,
    /// When to pull the image: missing (default), always, never.
    #[cfg_attr(feature = "cli", arg(long))]
    pub pull: Option<String>,
    /// HOST[:CONTAINER][:PERMS]: a host device in the container (PERMS of
    /// rwm, default all).
    #[cfg_attr(feature = "cli", arg(long))]
    pub device: Vec<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[cfg_attr(feature = "cli", arg(long))]
    pub stop_timeout: Option<u64>,
    /// KEY=VALUE metadata (shown by inspect).
    #[cfg_attr(feature = "cli", arg(short, long))]
    pub label: Vec<String>,
    /// Files of KEY=VALUE label lines.
    #[cfg_attr(feature = "cli", arg(long))]
    pub label_file: Vec<PathBuf>,
    /// Write the container's id to this file, which must not exist yet.
    #[cfg_attr(feature = "cli", arg(long))]
    pub cidfile: Option<PathBuf>,
    /// The cgroup limits (kept flat in the record, as they always were).
    #[serde(flatten)]
    #[cfg_attr(feature = "cli", command(flatten))]
    pub limits: Limits,
    /// Add a capability (e.g. NET_ADMIN, or ALL).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cap_drop: Vec<String>,
    /// Every capability, the host's devices, no seccomp or masked paths.
    #[cfg_attr(feature = "cli", arg(long))]
    pub privileged: bool,
    /// seccomp=unconfined|FILE, no-new-privileges[=true|false],
    /// label=disable, apparmor=unconfined. Unlike Docker, no-new-privileges
    /// is on by default (off with =false or --privileged).
    #[cfg_attr(feature = "cli", arg(long))]
    pub security_opt: Vec<String>,
    /// Run hako's init as PID 1 (reaps zombies, forwards signals).
    #[cfg_attr(feature = "cli", arg(long))]
    pub init: bool,
    /// host, auto, or HOSTID[:SIZE].
    #[cfg_attr(feature = "cli", arg(long))]
    pub userns: Option<String>,
    /// host or container:NAME.
    #[cfg_attr(feature = "cli", arg(long))]
    pub pid: Option<String>,
    /// host or container:NAME.
    #[cfg_attr(feature = "cli", arg(long))]
    pub ipc: Option<String>,
    /// host (the container then has the host's hostname).
    #[cfg_attr(feature = "cli", arg(long))]
    pub uts: Option<String>,
    /// private (the default: the container sees its own cgroup as the
    /// root) or host (the host's cgroup tree).
    #[cfg_attr(feature = "cli", arg(long))]
    pub cgroupns: Option<String>,
    /// Limit reads from a block device, DEVICE:RATE in bytes per second
    /// (e.g. /dev/sda:1mb).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DEVICE:RATE"))]
    pub device_read_bps: Vec<String>,
    /// Limit writes to a block device, DEVICE:RATE in bytes per second.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DEVICE:RATE"))]
    pub device_write_bps: Vec<String>,
    /// Limit reads from a block device, DEVICE:N operations per second.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DEVICE:N"))]
    pub device_read_iops: Vec<String>,
    /// Limit writes to a block device, DEVICE:N operations per second.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DEVICE:N"))]
    pub device_write_iops: Vec<String>,
    /// Block IO weight on one device, DEVICE:WEIGHT (10 to 1000).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DEVICE:WEIGHT"))]
    pub blkio_weight_device: Vec<String>,
    /// Let the container use devices of a kind (it still needs their
    /// nodes): TYPE MAJOR:MINOR ACCESS, e.g. 'c 189:* rwm' (type a, b or
    /// c; * for any number; access letters of rwm).
    #[cfg_attr(feature = "cli", arg(long, value_name = "RULE"))]
    pub device_cgroup_rule: Vec<String>,
    /// How readily the kernel swaps the container's memory out, 0 to 100
    /// (-1: the host's vm.swappiness); cgroup v1 only (v2 has none per
    /// cgroup: discarded with a warning, as Docker does).
    #[cfg_attr(
        feature = "cli",
        arg(long, allow_hyphen_values = true, value_name = "0-100")
    )]
    pub memory_swappiness: Option<i64>,
    /// At its memory limit the container's processes wait for memory
    /// instead of being OOM-killed; cgroup v1 only (discarded on v2 with a
    /// warning, as Docker does).
    #[cfg_attr(feature = "cli", arg(long))]
    pub oom_kill_disable: bool,
    /// The cgroup to make the container's cgroup in: a path (the cgroupfs
    /// manager; default /hako) or a slice (systemd; default machine.slice,
    /// user.slice rootless), made if missing and left in place afterwards.
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH|SLICE"))]
    pub cgroup_parent: Option<String>,
    /// Seconds (both clocks) or monotonic=S,boottime=S: a new time namespace.
    #[cfg_attr(feature = "cli", arg(long))]
    pub time_offset: Option<String>,
    /// Override the image's entrypoint.
    #[cfg_attr(feature = "cli", arg(long))]
    pub entrypoint: Option<String>,
    /// The image (name[:tag], or an id). (On the command line: the first
    /// of the CLI's IMAGE [COMMAND]… words.)
    #[cfg_attr(feature = "cli", arg(skip))]
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[cfg_attr(feature = "cli", arg(skip))]
    pub cmd: Vec<String>,
}

/// What the engine knows happened; the live status is derived (see
/// [`crate::status::status`]) from this plus the runtime and the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Record written; rootfs/spec may still be in the making.
    Created,
    /// A monitor started the container.
    Running,
    /// The monitor recorded the exit (or a later CLI found it gone).
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub image_id: String,
    pub created: String,
    pub opts: RunOptions,
    pub phase: Phase,
    /// Host pid of the container's PID 1 and its start time (pid reuse).
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub pid_start: u64,
    #[serde(default)]
    pub monitor_pid: i32,
    #[serde(default)]
    pub monitor_start: u64,
    /// The monitor's keeper (its parent, a child subreaper), which
    /// records the exit code should the monitor die first.
    #[serde(default)]
    pub keeper_pid: i32,
    #[serde(default)]
    pub keeper_start: u64,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub rootfs: PathBuf,
    #[serde(default)]
    pub hostname: String,
    /// (network, ipv4, mac, gateway-less) of the last start.
    #[serde(default)]
    pub networks: Vec<NetAddr>,
    #[serde(default)]
    pub restart_count: u32,
    /// The user command (entrypoint + cmd), for `ps`.
    #[serde(default)]
    pub command: String,
    /// The image's StopSignal (`stop` sends it; default SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Who makes the container's cgroup (chosen at create).
    #[serde(default)]
    pub cgroup_manager: crate::config::CgroupManager,
    /// A checkpoint is being taken: the init's end is the checkpoint's
    /// (exit code 0, no `--rm`), not the container's.
    #[serde(default)]
    pub checkpointing: bool,
    /// When the checkpoint in the container's directory was taken.
    #[serde(default)]
    pub checkpointed_at: Option<String>,
    /// The next monitor restores the checkpoint instead of creating.
    #[serde(default)]
    pub restoring: bool,
    /// Stopped (or killed, removed) by the user: the restart policy does
    /// not bring it back (Docker's HasBeenManuallyStopped); `start` clears it.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Its monitor waits to restart it (the restart policy's backoff).
    #[serde(default)]
    pub restarting: bool,
    /// Its health check (its flags over its image's), fixed at create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::Config>,
    /// Its health check's state, since its last start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
    /// Its own user namespace's ids (`--userns auto` or HOSTID:SIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idmap: Option<hako_image::idmap::IdMap>,
    /// How its root filesystem is made (overlay, idmapped layers, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetAddr {
    pub network: String,
    pub ifname: String,
    pub ip: String,
    pub mac: String,
}

impl Record {
    /// Its published ports (`-p`, made explicit at create).
    pub fn ports(&self) -> crate::Result<Vec<hako_net::PortMapping>> {
        self.opts
            .publish
            .iter()
            .map(|p| {
                p.parse::<hako_net::PortMapping>()
                    .map_err(|e| crate::Error::Usage(format!("-p {p}: {e}")))
            })
            .collect()
    }

    /// The record of a container just created: nothing has run yet.
    pub fn new(
        id: String,
        name: String,
        image: String,
        image_id: String,
        opts: RunOptions,
    ) -> Record {
        Record {
            id,
            name,
            image,
            image_id,
            created: crate::util::now_rfc3339_nanos(),
            opts,
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
            cgroup_manager: Default::default(),
            checkpointing: false,
            checkpointed_at: None,
            restoring: false,
            stopped_by_user: false,
            restarting: false,
            healthcheck: None,
            health: None,
            idmap: None,
            rootfs_kind: None,
        }
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

pub fn load(dirs: &Dirs, id: &str) -> Result<Record> {
    let p = dirs.container(id).join(RECORD);
    let b = std::fs::read(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchContainer(id.to_string())
        } else {
            io_err("read", &p)(e)
        }
    })?;
    serde_json::from_slice(&b).map_err(|e| Error::Other(format!("{}: {e}", p.display())))
}

pub fn save(dirs: &Dirs, r: &Record) -> Result<()> {
    save_as(dirs, r, durability(&r.opts))
}

/// [`save`] with the given durability (create's first save: [`commit`]).
pub fn save_as(dirs: &Dirs, r: &Record, how: hako_runtime::os::Durability) -> Result<()> {
    let n = dirs.container(&r.id).join(NAME);
    if !n.exists() {
        util::atomic_write_as(&n, r.name.as_bytes(), how)?;
    }
    let p = dirs.container(&r.id).join(RECORD);
    let b = serde_json::to_vec_pretty(r).expect("record serialises");
    util::atomic_write_as(&p, &b, how)
}

/// How a container's files (name, record, config.json) are written.
/// Readers always see a whole file. Every container's files are synced
/// before the command that wrote them reports it done, so that after a
/// crash or a power loss its record is there, whole, for `ps -a`, `start`
/// and restart policies (`create` writes them unsynced while it makes the
/// container and syncs them all at its end: [`commit`]; the monitor's
/// records of which processes run may lose their last change:
/// [`update_processes`]); except a `--rm` container's: nothing of it is
/// to outlive its process, which a crash ends, so nothing waits for its
/// files to reach the disk. After a crash its record may be missing, old,
/// or unreadable (then listed as corrupt and removed with `rm -f`, as
/// `scan` has it), where a synced one would have been an exited container
/// to remove just the same. The syncs were a third of a `run --rm` on a disk-backed
/// store: 14 of them, 5 ms of 16 (docs/benchmarks.md).
pub fn durability(opts: &RunOptions) -> hako_runtime::os::Durability {
    if opts.rm {
        hako_runtime::os::Durability::Atomic
    } else {
        hako_runtime::os::Durability::Durable
    }
}

/// `rename`: the index, the record and its name file change together,
/// under the lock, and only to a valid name no other container has.
pub fn rename(dirs: &Dirs, name: &str, new: &str) -> Result<Record> {
    check_name(new)?;
    let id = resolve(dirs, name)?;
    let _l = lock(dirs)?;
    let mut r = load(dirs, &id)?;
    if r.name == new {
        return Ok(r);
    }
    claim_name(dirs, new, &id)?;
    let old = std::mem::replace(&mut r.name, new.to_string());
    let how = durability(&r.opts);
    let written = util::atomic_write_as(&dirs.container(&id).join(NAME), new.as_bytes(), how)
        .and_then(|()| {
            util::atomic_write_as(
                &dirs.container(&id).join(RECORD),
                &serde_json::to_vec_pretty(&r).expect("record serialises"),
                how,
            )
        });
    match written {
        Ok(()) => {
            release_name(dirs, &old, &id);
            Ok(r)
        }
        Err(e) => {
            let _ = util::atomic_write_as(&dirs.container(&id).join(NAME), old.as_bytes(), how);
            release_name(dirs, new, &id);
            Err(e)
        }
    }
}

// The name index: `<containers>/.names/NAME` is a symlink to the id of
// the container that holds NAME. symlink(2) fails with EEXIST when the
// name is taken, so giving a name is one system call instead of reading
// every record (which made each `run` cost O(containers)). An entry whose
// container directory is gone (a crash between `rm`'s two steps, or
// inside a create) is stale and taken over. `.complete` says every
// container of the store is in the index: a store made before the index
// is indexed once, under the lock, by the first command that gives a
// name. Entries change only under the lock; `resolve` reads them without.

fn names_dir(dirs: &Dirs) -> PathBuf {
    dirs.containers().join(".names")
}

fn index_complete(dirs: &Dirs) -> PathBuf {
    names_dir(dirs).join(".complete")
}

/// Container ids are hex (util::random_id): anything else read from the
/// index (or typed by a user) never names a directory.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Under the lock: index a store made before the index. False while a
/// corrupt record's name is unknown (no name file): such a store stays
/// unindexed, and names are checked by scanning, as before.
fn build_index(dirs: &Dirs) -> Result<bool> {
    if index_complete(dirs).exists() {
        return Ok(true);
    }
    crate::dirs::mkdir_p(&names_dir(dirs))?;
    let (good, bad) = scan(dirs);
    let named = good.iter().map(|r| (r.id.as_str(), r.name.as_str())).chain(
        bad.iter()
            .filter_map(|c| c.name.as_deref().map(|n| (c.id.as_str(), n))),
    );
    for (id, name) in named {
        link_name(dirs, name, id)?;
    }
    if bad.iter().any(|c| c.name.is_none()) {
        return Ok(false);
    }
    util::atomic_write(&index_complete(dirs), b"")?;
    Ok(true)
}

/// The id an index entry points to, if its container still exists.
fn indexed(dirs: &Dirs, name: &str) -> Option<String> {
    if check_name(name).is_err() {
        return None;
    }
    let t = std::fs::read_link(names_dir(dirs).join(name)).ok()?;
    let id = t.to_str()?;
    (is_id(id) && dirs.container(id).is_dir()).then(|| id.to_string())
}

/// Under the lock: point NAME at `id`, or say which live container holds it.
fn link_name(dirs: &Dirs, name: &str, id: &str) -> Result<Option<String>> {
    check_name(name)?;
    let p = names_dir(dirs).join(name);
    loop {
        match std::os::unix::fs::symlink(id, &p) {
            Ok(()) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match indexed(dirs, name) {
                Some(owner) if owner == id => return Ok(None),
                Some(owner) => return Ok(Some(owner)),
                None => match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove stale name", &p)(e)),
                },
            },
            Err(e) => return Err(io_err("index name", &p)(e)),
        }
    }
}

/// Under the lock: give NAME to container `id` (its directory may not
/// exist yet), or fail naming the container that has it.
pub fn claim_name(dirs: &Dirs, name: &str, id: &str) -> Result<()> {
    let owner = if build_index(dirs)? {
        link_name(dirs, name, id)?
    } else {
        match name_owner(dirs, name)? {
            Some(owner) => Some(owner),
            None => link_name(dirs, name, id)?,
        }
    };
    match owner {
        None => Ok(()),
        Some(owner) => Err(Error::NameInUse {
            name: name.to_string(),
            id: owner,
        }),
    }
}

/// Under the lock: NAME is no longer `id`'s (left alone if another
/// container holds it).
pub fn release_name(dirs: &Dirs, name: &str, id: &str) {
    let p = names_dir(dirs).join(name);
    if check_name(name).is_ok()
        && std::fs::read_link(&p).is_ok_and(|t| t.as_os_str() == std::ffi::OsStr::new(id))
    {
        let _ = std::fs::remove_file(&p);
    }
}

/// Take the engine lock (creating the directories on first use).
pub fn lock(dirs: &Dirs) -> Result<Lock> {
    dirs.ensure()?;
    Lock::exclusive(&dirs.lock_file())
}

/// Read-modify-write a record under the lock.
pub fn update(dirs: &Dirs, id: &str, f: impl FnOnce(&mut Record)) -> Result<Record> {
    change(dirs, id, f, |r| save(dirs, r))
}

/// Under the lock: load, change with `f`, write with `write`.
fn change(
    dirs: &Dirs,
    id: &str,
    f: impl FnOnce(&mut Record),
    write: impl FnOnce(&Record) -> Result<()>,
) -> Result<Record> {
    let _l = lock(dirs)?;
    let mut r = load(dirs, id)?;
    f(&mut r);
    write(&r)?;
    Ok(r)
}

/// `create`'s last write. The name, the first record and config.json were
/// written unsynced as the container was made (a crash meanwhile leaves a
/// half-made container that was never reported: listed as created or
/// corrupt, removed with `rm -f`); now the name file and config.json are
/// synced, the record is written synced, and one sync of the directory
/// makes the three names durable: four disk flushes where each file's own
/// sync and directory sync made eight.
pub fn commit(dirs: &Dirs, id: &str, f: impl FnOnce(&mut Record)) -> Result<Record> {
    change(dirs, id, f, |r| {
        let how = durability(&r.opts);
        if how == hako_runtime::os::Durability::Durable {
            let dir = dirs.container(id);
            for name in [NAME, CONFIG] {
                let p = dir.join(name);
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("sync", &p))?;
            }
        }
        save_as(dirs, r, how)
    })
}

/// [`update`] for what says only which processes run (the monitor's pid,
/// the container's as it starts): a crash ends them all, so after one the
/// previous, durable record may stand. The file is synced before it
/// replaces the old one (never a truncated record), the directory is not:
/// one disk flush where [`update`] makes two.
pub fn update_processes(dirs: &Dirs, id: &str, f: impl FnOnce(&mut Record)) -> Result<Record> {
    use hako_runtime::os::Durability;
    change(dirs, id, f, |r| {
        let how = match durability(&r.opts) {
            Durability::Durable => Durability::Whole,
            other => other,
        };
        save_as(dirs, r, how)
    })
}

/// Ids of every container directory (records or not, e.g. half-made ones).
pub fn ids(dirs: &Dirs) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dirs.containers()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && e.path().is_dir() {
                out.push(name);
            }
        }
    }
    out
}

/// A container directory whose record exists but cannot be read.
#[derive(Debug, Clone)]
pub struct Corrupt {
    pub id: String,
    /// From the name file; None for a container made before name files.
    pub name: Option<String>,
    pub error: String,
}

/// Every container directory with a record file: readable records
/// (oldest first) and corrupt ones. Directories without any record file
/// (a create in progress, which holds the lock) are left out.
pub fn scan(dirs: &Dirs) -> (Vec<Record>, Vec<Corrupt>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for id in ids(dirs) {
        match load(dirs, &id) {
            Ok(r) => good.push(r),
            Err(Error::NoSuchContainer(_)) => {}
            Err(e) => {
                let name = std::fs::read_to_string(dirs.container(&id).join(NAME))
                    .ok()
                    .filter(|n| !n.is_empty());
                bad.push(Corrupt {
                    id,
                    name,
                    error: e.to_string(),
                });
            }
        }
    }
    good.sort_by(|a, b| a.created.cmp(&b.created));
    (good, bad)
}

/// Who holds `name`: Some(id) of a readable or a corrupt record. A corrupt
/// record whose name is unknown (no name file) could hold any name, so
/// every name is refused until it is removed (`rm -f ID`).
pub fn name_owner(dirs: &Dirs, name: &str) -> Result<Option<String>> {
    let (good, bad) = scan(dirs);
    if let Some(r) = good.iter().find(|r| r.name == name) {
        return Ok(Some(r.id.clone()));
    }
    if let Some(c) = bad.iter().find(|c| c.name.as_deref() == Some(name)) {
        return Ok(Some(c.id.clone()));
    }
    if let Some(c) = bad.iter().find(|c| c.name.is_none()) {
        return Err(Error::State {
            id: c.id.clone(),
            msg: "has a corrupt record and no name file: its name is unknown, so no \
                  new name can be checked; remove it with rm -f"
                .into(),
        });
    }
    Ok(None)
}

/// Every container whose record can be read, oldest first.
pub fn all(dirs: &Dirs) -> Vec<Record> {
    let mut v: Vec<Record> = ids(dirs)
        .iter()
        .filter_map(|id| load(dirs, id).ok())
        .collect();
    v.sort_by(|a, b| a.created.cmp(&b.created));
    v
}

/// A full id, a name, or a unique id prefix → the id (Docker's order).
/// With the name index, no record is read.
pub fn resolve(dirs: &Dirs, name: &str) -> Result<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    if name.is_empty() {
        return Err(Error::NoSuchContainer(name.into()));
    }
    if index_complete(dirs).exists() {
        if name.len() == 64 && is_id(name) && dirs.container(name).is_dir() {
            return Ok(name.to_string());
        }
        if let Some(id) = indexed(dirs, name) {
            return Ok(id);
        }
    } else {
        let (recs, bad) = scan(dirs);
        if let Some(r) = recs.iter().find(|r| r.name == name || r.id == name) {
            return Ok(r.id.clone());
        }
        if let Some(c) = bad.iter().find(|c| c.name.as_deref() == Some(name)) {
            return Ok(c.id.clone());
        }
    }
    // Directories without a readable record still resolve by id prefix so
    // `rm -f` can clean them.
    let hits: Vec<String> = ids(dirs)
        .into_iter()
        .filter(|i| i.starts_with(name))
        .collect();
    match hits.len() {
        0 => Err(Error::NoSuchContainer(name.into())),
        1 => Ok(hits.into_iter().next().expect("one")),
        _ => Err(Error::Ambiguous {
            name: name.into(),
            ids: hits
                .iter()
                .map(|i| i[..12.min(i.len())].to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Under the lock: a Docker-like random name (adjective_noun), given to
/// container `id` in the index.
pub fn generate_name(dirs: &Dirs, id: &str) -> Result<String> {
    const ADJ: [&str; 12] = [
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "quiet",
    ];
    const NOUN: [&str; 12] = [
        "hopper", "turing", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra",
        "hamilton", "liskov", "perlman", "wirth",
    ];
    let indexed = build_index(dirs)?;
    let seed = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(7);
    for i in 0u64.. {
        let n = seed.wrapping_add(i.wrapping_mul(7919));
        let mut name = format!(
            "{}_{}",
            ADJ[(n % 12) as usize],
            NOUN[((n / 12) % 12) as usize]
        );
        if i >= 144 {
            name.push_str(&format!("{i}"));
        }
        // An unindexed store (a corrupt record without a name file)
        // checks by scanning; an unknown name is not refused here.
        if !indexed && name_owner(dirs, &name).ok().flatten().is_some() {
            continue;
        }
        if link_name(dirs, &name, id)?.is_none() {
            return Ok(name);
        }
    }
    unreachable!()
}

pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

pub fn log_path(dirs: &Dirs, id: &str) -> PathBuf {
    dirs.container(id).join(LOG)
}

pub fn bundle(dirs: &Dirs, id: &str) -> PathBuf {
    dirs.container(id)
}

pub fn exists(dir: &Path) -> bool {
    dir.join(RECORD).exists()
}

/// Is an image used by a container (for `rmi`)?
pub fn image_in_use(dirs: &Dirs, image_id: &str) -> bool {
    all(dirs).iter().any(|r| r.image_id == image_id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_rm_containers_files_go_unsynced() {
        use hako_runtime::os::Durability;
        let mut o = RunOptions::default();
        assert_eq!(super::durability(&o), Durability::Durable);
        o.rm = true;
        assert_eq!(super::durability(&o), Durability::Atomic);
        // Restart policies and detached runs keep theirs.
        o.rm = false;
        o.detach = true;
        assert_eq!(super::durability(&o), Durability::Durable);
    }

    #[test]
    fn limits_stay_flat_in_the_record() {
        let mut o = RunOptions::default();
        o.limits.memory = Some("64m".into());
        o.limits.cpu_shares = Some(512);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["memory"], "64m");
        assert_eq!(v["cpu_shares"], 512);
        // A record written before the limits had their own struct.
        let old: RunOptions =
            serde_json::from_str(r#"{"image":"busybox","memory":"32m","pids_limit":5}"#).unwrap();
        assert_eq!(old.limits.memory.as_deref(), Some("32m"));
        assert_eq!(old.limits.pids_limit, Some(5));
        assert_eq!(old.image, "busybox");
    }

    use super::*;

    fn rec(id: &str, name: &str) -> Record {
        Record::new(
            id.into(),
            name.into(),
            "busybox".into(),
            String::new(),
            RunOptions::default(),
        )
    }

    #[test]
    fn names_ids_and_prefixes_resolve() {
        let t = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: Default::default(),
            cgroup_manager_flag: None,
            data: t.path().join("data"),
            run: t.path().join("run"),
        };
        for (id, name) in [("abc123", "web"), ("abd456", "db")] {
            crate::dirs::mkdir_p(&dirs.container(id)).unwrap();
            save(&dirs, &rec(id, name)).unwrap();
        }
        // A half-made container (no record) still resolves by id for rm -f.
        crate::dirs::mkdir_p(&dirs.container("fff999")).unwrap();
        assert_eq!(resolve(&dirs, "web").unwrap(), "abc123");
        assert_eq!(resolve(&dirs, "/db").unwrap(), "abd456");
        assert_eq!(resolve(&dirs, "abc").unwrap(), "abc123");
        assert_eq!(resolve(&dirs, "fff").unwrap(), "fff999");
        assert!(matches!(resolve(&dirs, "ab"), Err(Error::Ambiguous { .. })));
        assert!(matches!(
            resolve(&dirs, "zzz"),
            Err(Error::NoSuchContainer(_))
        ));
        assert_eq!(all(&dirs).len(), 2);
        let n = generate_name(&dirs, "abc123").unwrap();
        assert!(n.contains('_') && n != "web");
        assert!(check_name("ok-name_1.x").is_ok() && check_name("-bad").is_err());
    }

    #[test]
    fn corrupt_records_keep_their_names() {
        let t = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: Default::default(),
            cgroup_manager_flag: None,
            data: t.path().join("data"),
            run: t.path().join("run"),
        };
        crate::dirs::mkdir_p(&dirs.container("abc123")).unwrap();
        save(&dirs, &rec("abc123", "web")).unwrap();
        std::fs::write(dirs.container("abc123").join(RECORD), b"{\"id\": \"ab").unwrap();
        let (good, bad) = scan(&dirs);
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name.as_deref(), Some("web"));
        assert_eq!(name_owner(&dirs, "web").unwrap().as_deref(), Some("abc123"));
        assert_eq!(name_owner(&dirs, "db").unwrap(), None);
        assert_eq!(resolve(&dirs, "web").unwrap(), "abc123");
        assert_ne!(generate_name(&dirs, "abc999").unwrap(), "web");
        // Without a name file (made before them) the name is unknown: no
        // new name can be checked, so every one is refused.
        std::fs::remove_file(dirs.container("abc123").join(NAME)).unwrap();
        assert!(name_owner(&dirs, "db").is_err());
    }

    fn dirs_in(t: &tempfile::TempDir) -> Dirs {
        Dirs {
            config: Default::default(),
            cgroup_manager_flag: None,
            data: t.path().join("data"),
            run: t.path().join("run"),
        }
    }

    /// What create does under the lock: the name first, then the record.
    fn create(dirs: &Dirs, id: &str, name: &str) -> Result<()> {
        claim_name(dirs, name, id)?;
        crate::dirs::mkdir_p(&dirs.container(id)).unwrap();
        save(dirs, &rec(id, name))
    }

    #[test]
    fn the_name_index_gives_each_name_once() {
        let t = tempfile::tempdir().unwrap();
        let dirs = dirs_in(&t);
        create(&dirs, "aaa111", "web").unwrap();
        assert!(index_complete(&dirs).exists());
        match create(&dirs, "bbb222", "web") {
            Err(Error::NameInUse { id, .. }) => assert_eq!(id, "aaa111"),
            other => panic!("second web: {other:?}"),
        }
        assert!(!dirs.container("bbb222").exists());
        // Resolving reads no record: a corrupt one still resolves by name
        // and still holds it.
        std::fs::write(dirs.container("aaa111").join(RECORD), b"{").unwrap();
        assert_eq!(resolve(&dirs, "web").unwrap(), "aaa111");
        assert!(claim_name(&dirs, "web", "ccc333").is_err());
        // Removed (directory first, then the entry): the name is free.
        crate::teardown::remove_all(&dirs, "aaa111").unwrap();
        assert!(matches!(
            resolve(&dirs, "web"),
            Err(Error::NoSuchContainer(_))
        ));
        create(&dirs, "bbb222", "web").unwrap();
        // An entry left by a crash after the directory went is taken over.
        std::fs::remove_dir_all(dirs.container("bbb222")).unwrap();
        create(&dirs, "ccc333", "web").unwrap();
        assert_eq!(resolve(&dirs, "web").unwrap(), "ccc333");
        // Generated names avoid taken ones and are indexed too.
        let g = generate_name(&dirs, "ddd444").unwrap();
        assert_ne!(g, "web");
        crate::dirs::mkdir_p(&dirs.container("ddd444")).unwrap();
        assert!(claim_name(&dirs, &g, "eee555").is_err());
        // Names that are not names never reach the file system.
        assert!(claim_name(&dirs, "../x", "fff666").is_err());
        assert!(matches!(
            resolve(&dirs, ".complete"),
            Err(Error::NoSuchContainer(_))
        ));
    }

    #[test]
    fn rename_moves_the_index_entry() {
        let t = tempfile::tempdir().unwrap();
        let dirs = dirs_in(&t);
        create(&dirs, "aaa111", "web").unwrap();
        create(&dirs, "bbb222", "db").unwrap();
        assert!(matches!(
            rename(&dirs, "web", "db"),
            Err(Error::NameInUse { .. })
        ));
        let r = rename(&dirs, "web", "site").unwrap();
        assert_eq!(r.name, "site");
        assert_eq!(load(&dirs, "aaa111").unwrap().name, "site");
        assert_eq!(resolve(&dirs, "site").unwrap(), "aaa111");
        assert!(resolve(&dirs, "web").is_err());
        create(&dirs, "ccc333", "web").unwrap();
    }

    #[test]
    fn a_store_from_before_the_index_is_indexed_once() {
        let t = tempfile::tempdir().unwrap();
        let dirs = dirs_in(&t);
        for (id, name) in [("aaa111", "web"), ("bbb222", "db")] {
            crate::dirs::mkdir_p(&dirs.container(id)).unwrap();
            save(&dirs, &rec(id, name)).unwrap();
        }
        // Old stores resolve by scanning.
        assert_eq!(resolve(&dirs, "db").unwrap(), "bbb222");
        assert!(claim_name(&dirs, "web", "ccc333").is_err());
        assert!(index_complete(&dirs).exists());
        assert_eq!(resolve(&dirs, "db").unwrap(), "bbb222");
        assert_eq!(indexed(&dirs, "web").as_deref(), Some("aaa111"));
    }

    #[test]
    fn an_unknown_name_keeps_the_store_unindexed() {
        let t = tempfile::tempdir().unwrap();
        let dirs = dirs_in(&t);
        crate::dirs::mkdir_p(&dirs.container("aaa111")).unwrap();
        save(&dirs, &rec("aaa111", "web")).unwrap();
        std::fs::write(dirs.container("aaa111").join(RECORD), b"{").unwrap();
        std::fs::remove_file(dirs.container("aaa111").join(NAME)).unwrap();
        // Its name could be any: every name is refused, and no index is
        // trusted until it is removed.
        assert!(claim_name(&dirs, "db", "bbb222").is_err());
        assert!(!index_complete(&dirs).exists());
        crate::teardown::remove_all(&dirs, "aaa111").unwrap();
        create(&dirs, "bbb222", "db").unwrap();
        assert!(index_complete(&dirs).exists());
    }
}
