//! config.json → [`Plan`]: plain data, validated before any side effect.
//!
//! Everything the executor needs is decided here: which namespaces to create
//! or join, the ordered mount operations with their flags, id maps,
//! capability sets, rlimits. A spec that cannot work fails here with an
//! error naming the field, so nothing has to be undone.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Hook, LinuxDeviceType, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Spec,
};

use crate::error::{spec_err, Error, Result};
use crate::mounts::{parse_options, MountOptions};

/// One namespace kind, with its clone flag and /proc/PID/ns name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsKind {
    User,
    Pid,
    Mount,
    Network,
    Ipc,
    Uts,
    Cgroup,
    Time,
}

impl NsKind {
    pub const ALL: [NsKind; 8] = [
        NsKind::User,
        NsKind::Pid,
        NsKind::Mount,
        NsKind::Network,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Cgroup,
        NsKind::Time,
    ];

    /// The same kinds in the order of their /proc/PID/ns names (listings).
    pub const BY_NAME: [NsKind; 8] = [
        NsKind::Cgroup,
        NsKind::Ipc,
        NsKind::Mount,
        NsKind::Network,
        NsKind::Pid,
        NsKind::Time,
        NsKind::User,
        NsKind::Uts,
    ];

    /// A kind from its /proc name ("mnt", "net") or its runtime-spec name
    /// ("mount", "network").
    pub fn from_name(name: &str) -> Option<NsKind> {
        NsKind::ALL
            .into_iter()
            .find(|k| k.proc_name() == name || k.spec_name() == name)
    }

    pub const fn flag(self) -> i32 {
        match self {
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Mount => libc::CLONE_NEWNS,
            NsKind::Network => libc::CLONE_NEWNET,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => libc::CLONE_NEWTIME,
        }
    }

    /// The name under /proc/PID/ns/.
    pub const fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Pid => "pid",
            NsKind::Mount => "mnt",
            NsKind::Network => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    /// The name runtime-spec uses in `linux.namespaces[].type`.
    pub const fn spec_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mount",
            NsKind::Network => "network",
            k => k.proc_name(),
        }
    }

    fn from_spec(t: LinuxNamespaceType) -> NsKind {
        match t {
            LinuxNamespaceType::User => NsKind::User,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Network => NsKind::Network,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Time => NsKind::Time,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespaces {
    /// Namespaces to create.
    pub new: Vec<NsKind>,
    /// Namespaces to join, with the spec's path.
    pub join: Vec<(NsKind, PathBuf)>,
}

impl Namespaces {
    pub fn is_new(&self, k: NsKind) -> bool {
        self.new.contains(&k)
    }
    pub fn joined(&self, k: NsKind) -> Option<&Path> {
        self.join
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, p)| p.as_path())
    }
    /// Present either way (new or joined): not the runtime's own.
    pub fn has(&self, k: NsKind) -> bool {
        self.is_new(k) || self.joined(k).is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// What a mount attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount of a host path (absolute, resolved against the bundle).
    Bind { source: PathBuf },
    /// A new filesystem instance (proc, tmpfs, sysfs, devpts, mqueue, …).
    Fs { fstype: String, source: String },
    /// `cgroup`/`cgroup2` at a destination: the executor picks what the
    /// host's layout allows.
    Cgroup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Index in config.json `mounts`, for error messages.
    pub idx: usize,
    /// Destination inside the container: absolute and normalised.
    pub dest: PathBuf,
    pub kind: MountKind,
    pub opts: MountOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapSets {
    pub bounding: Vec<caps::Capability>,
    pub effective: Vec<caps::Capability>,
    pub inheritable: Vec<caps::Capability>,
    pub permitted: Vec<caps::Capability>,
    pub ambient: Vec<caps::Capability>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    pub oom_score_adj: Option<i32>,
    pub no_new_privs: bool,
    /// None: the spec has no `capabilities`; leave them as the user gets them.
    pub caps: Option<CapSets>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HooksPlan {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeOffsets {
    pub monotonic: (i64, u32),
    pub boottime: (i64, u32),
}

/// The whole container setup, as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub oci_version: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub root_readonly: bool,
    pub ns: Namespaces,
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
    pub time_offsets: Option<TimeOffsets>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountPlan>,
    /// Propagation flags for "/" (MS_PRIVATE|MS_REC by default, as runc).
    pub rootfs_propagation: Option<libc::c_ulong>,
    pub devices: Vec<DevicePlan>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub sysctl: Vec<(String, String)>,
    pub process: Option<ProcessPlan>,
    pub hooks: HooksPlan,
    pub annotations: BTreeMap<String, String>,
    pub cgroups_path: Option<PathBuf>,
    pub resources: Option<LinuxResources>,
    pub seccomp: Option<LinuxSeccomp>,
}

/// Load config.json from a bundle directory (no side effects).
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let meta = std::fs::metadata(bundle).map_err(|source| Error::Bundle {
        path: bundle.to_path_buf(),
        cause: source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Bundle {
            path: bundle.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::Config {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    crate::json::from_slice(&data).map_err(|msg| Error::Config { path, msg })
}

/// Normalise an absolute container path: no `.`/`..` escapes, no trailing slash.
pub fn clean_abs(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn caps_of(
    set: &Option<oci_spec::runtime::Capabilities>,
    field: &str,
) -> Result<Vec<caps::Capability>> {
    let mut v = Vec::new();
    if let Some(set) = set {
        for c in set {
            let name = format!("CAP_{c}");
            let cap: caps::Capability = name
                .parse()
                .map_err(|_| spec_err(field, format!("unknown capability {name:?}")))?;
            v.push(cap);
        }
    }
    v.sort_by_key(|c| c.index());
    Ok(v)
}

fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> u32 {
    use oci_spec::runtime::PosixRlimitType as R;
    match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn id_maps(
    maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
    field: &str,
) -> Result<Vec<IdMap>> {
    let mut out = Vec::new();
    for (i, m) in maps.iter().flatten().enumerate() {
        if m.size() == 0 {
            return Err(spec_err(format!("{field}[{i}].size"), "must be > 0"));
        }
        out.push(IdMap {
            container: m.container_id(),
            host: m.host_id(),
            size: m.size(),
        });
    }
    Ok(out)
}

/// CVE-2019-16884: a volume on /proc would give the container a fake procfs
/// that the runtime then writes through (and apparmor/LSM labels with).
/// Only a real proc mount goes on /proc; below it only the files lxcfs-style
/// tools bind-mount are allowed.
fn check_proc_mount(m: &MountPlan) -> Result<()> {
    const BINDABLE: [&str; 10] = [
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    ];
    let field = format!("mounts[{}]", m.idx);
    let is_proc = matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype == "proc");
    if m.dest == Path::new("/proc") {
        if !is_proc {
            return Err(spec_err(
                field,
                "only a proc filesystem may be mounted on /proc (a fake /proc is refused)",
            ));
        }
    } else if m.dest.starts_with("/proc") && !BINDABLE.iter().any(|b| m.dest == Path::new(b)) {
        return Err(spec_err(
            field,
            format!("mounting over {} is not allowed", m.dest.display()),
        ));
    }
    Ok(())
}

/// The namespace a sysctl belongs to (its value is that namespace's), or
/// None when it is the host's alone: the IPC ones (System V IPC and
/// mqueue), `net.*`, and the UTS names.
pub fn sysctl_namespace(key: &str) -> Option<NsKind> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(NsKind::Ipc)
    } else if key.starts_with("net.") {
        Some(NsKind::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(NsKind::Uts)
    } else {
        None
    }
}

fn check_sysctl(key: &str, ns: &Namespaces) -> Result<()> {
    let field = format!("linux.sysctl[{key:?}]");
    if key.contains("..") || key.contains('/') && key.split('/').any(|s| s == "..") {
        return Err(spec_err(field, "invalid sysctl name"));
    }
    let Some(need) = sysctl_namespace(key) else {
        return Err(spec_err(
            field,
            "not a namespaced sysctl: setting it would change the host",
        ));
    };
    if !ns.has(need) {
        return Err(spec_err(
            field,
            format!(
                "needs a {} namespace of the container's own",
                need.spec_name()
            ),
        ));
    }
    Ok(())
}

fn parse_time_offsets(
    spec: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<TimeOffsets> {
    let mut t = TimeOffsets::default();
    for (clock, off) in spec {
        let v = (off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0));
        if v.1 >= 1_000_000_000 {
            return Err(spec_err(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                "must be below 1000000000",
            ));
        }
        match clock.as_str() {
            "monotonic" => t.monotonic = v,
            "boottime" => t.boottime = v,
            _ => {
                return Err(spec_err(
                    format!("linux.timeOffsets.{clock}"),
                    "unknown clock (use monotonic or boottime)",
                ))
            }
        }
    }
    Ok(t)
}

impl Plan {
    /// Build the plan for a bundle. `bundle` must be absolute.
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<Plan> {
        let ver = spec.version();
        if !ver.starts_with("1.") {
            return Err(spec_err(
                "ociVersion",
                format!("{ver:?} is not supported (need 1.x)"),
            ));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| spec_err("root", "missing"))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(spec_err(
                    "root.path",
                    format!("{} is not a directory", rootfs.display()),
                ))
            }
            Err(e) => return Err(spec_err("root.path", format!("{}: {e}", rootfs.display()))),
        }

        let linux = spec.linux().clone().unwrap_or_default();

        // Namespaces: no duplicates; a path means join.
        let mut ns = Namespaces::default();
        let mut seen = HashSet::new();
        for (i, n) in linux.namespaces().iter().flatten().enumerate() {
            let kind = NsKind::from_spec(n.typ());
            if !seen.insert(kind) {
                return Err(spec_err(
                    format!("linux.namespaces[{i}]"),
                    format!("duplicate {} namespace", kind.spec_name()),
                ));
            }
            match n.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    if !p.is_absolute() {
                        return Err(spec_err(
                            format!("linux.namespaces[{i}].path"),
                            format!("{} is not absolute", p.display()),
                        ));
                    }
                    ns.join.push((kind, p.clone()));
                }
                _ => ns.new.push(kind),
            }
        }

        let uid_maps = id_maps(linux.uid_mappings(), "linux.uidMappings")?;
        let gid_maps = id_maps(linux.gid_mappings(), "linux.gidMappings")?;
        if ns.is_new(NsKind::User) {
            if uid_maps.is_empty() || gid_maps.is_empty() {
                return Err(spec_err(
                    "linux.uidMappings",
                    "a new user namespace needs uidMappings and gidMappings",
                ));
            }
        } else if !uid_maps.is_empty() || !gid_maps.is_empty() {
            return Err(spec_err(
                "linux.uidMappings",
                "id mappings given but no new user namespace is requested",
            ));
        }

        let time_offsets = match linux.time_offsets() {
            Some(t) if !t.is_empty() => {
                if !ns.is_new(NsKind::Time) {
                    return Err(spec_err(
                        "linux.timeOffsets",
                        "offsets need a new time namespace",
                    ));
                }
                Some(parse_time_offsets(t)?)
            }
            _ => None,
        };

        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        if hostname.is_some() && !ns.has(NsKind::Uts) {
            return Err(spec_err(
                "hostname",
                "setting a hostname needs a uts namespace of the container's own",
            ));
        }
        let domainname = spec.domainname().clone().filter(|h| !h.is_empty());
        if domainname.is_some() && !ns.has(NsKind::Uts) {
            return Err(spec_err(
                "domainname",
                "setting a domainname needs a uts namespace of the container's own",
            ));
        }

        // Mounts.
        let mut mounts = Vec::new();
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let field = format!("mounts[{i}]");
            if m.destination().as_os_str().is_empty() {
                return Err(spec_err(format!("{field}.destination"), "empty"));
            }
            let dest = clean_abs(m.destination());
            let opts = parse_options(m.options().as_deref().unwrap_or(&[]))
                .map_err(|msg| spec_err(format!("{field}.options"), msg))?;
            let typ = m.typ().clone().unwrap_or_default();
            let kind = if opts.bind || typ == "bind" {
                let src = m.source().clone().ok_or_else(|| {
                    spec_err(format!("{field}.source"), "a bind mount needs a source")
                })?;
                let source = if src.is_absolute() {
                    src
                } else {
                    bundle.join(src)
                };
                MountKind::Bind { source }
            } else if typ == "cgroup" || typ == "cgroup2" {
                MountKind::Cgroup
            } else if typ.is_empty() {
                return Err(spec_err(
                    format!("{field}.type"),
                    "missing (and the mount is not a bind mount)",
                ));
            } else {
                MountKind::Fs {
                    fstype: typ.clone(),
                    source: m
                        .source()
                        .as_ref()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| typ.clone()),
                }
            };
            if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
                return Err(spec_err(
                    format!("{field}.uidMappings"),
                    "id-mapped mounts are not supported yet",
                ));
            }
            mounts.push(MountPlan {
                idx: i,
                dest,
                kind,
                opts,
            });
        }
        for m in &mounts {
            check_proc_mount(m)?;
        }
        if !ns.has(NsKind::Mount) && !mounts.is_empty() {
            // Without a mount namespace of its own the container shares the
            // host's mount table. runc then mounts into the host's table and
            // leaves the mounts behind; hako does not touch it: the mounts
            // are skipped, with one line saying so, and the process is
            // chrooted into the rootfs.
            crate::log::warn(
                "no mount namespace in linux.namespaces: the spec's mounts are skipped so the host's mount table is not changed",
            );
            mounts.clear();
        }

        let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => None,
            Some(p) => {
                let o = parse_options(&[p.to_string()])
                    .map_err(|m| spec_err("linux.rootfsPropagation", m))?;
                match o.propagation.as_slice() {
                    [f] => Some(*f),
                    _ => {
                        return Err(spec_err(
                            "linux.rootfsPropagation",
                            format!("{p:?} is not a propagation mode"),
                        ))
                    }
                }
            }
        };

        let mut devices = Vec::new();
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            let field = format!("linux.devices[{i}]");
            if !d.path().is_absolute() {
                return Err(spec_err(format!("{field}.path"), "must be absolute"));
            }
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(spec_err(
                        format!("{field}.type"),
                        "\"a\" is only valid in cgroup device rules",
                    ))
                }
            };
            devices.push(DevicePlan {
                path: clean_abs(d.path()),
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }

        let paths = |v: &Option<Vec<String>>, field: &str| -> Result<Vec<PathBuf>> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(i, p)| {
                    let pb = Path::new(p);
                    if !pb.is_absolute() {
                        Err(spec_err(format!("{field}[{i}]"), "must be absolute"))
                    } else {
                        Ok(clean_abs(pb))
                    }
                })
                .collect()
        };
        let masked_paths = paths(linux.masked_paths(), "linux.maskedPaths")?;
        let readonly_paths = paths(linux.readonly_paths(), "linux.readonlyPaths")?;

        let mut sysctl: Vec<(String, String)> = linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sysctl.sort();
        for (k, _) in &sysctl {
            check_sysctl(k, &ns)?;
        }

        let process = match spec.process() {
            None => None,
            Some(p) => Some(plan_process(p)?),
        };
        // A profile asked for and not applied would leave the process less
        // confined than its owner believes: refuse an AppArmor profile. For
        // SELinux labels the same holds only where SELinux enforces
        // anything; on a host without SELinux they mean nothing, and runc
        // and crun ignore them there too.
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        if let Some(pr) = spec.process() {
            if pr
                .apparmor_profile()
                .as_deref()
                .is_some_and(|x| !x.is_empty())
            {
                return Err(spec_err(
                    "process.apparmorProfile",
                    "AppArmor profiles are not supported by hako-runc",
                ));
            }
            if selinux && pr.selinux_label().as_deref().is_some_and(|x| !x.is_empty()) {
                return Err(spec_err(
                    "process.selinuxLabel",
                    "SELinux labels are not supported by hako-runc",
                ));
            }
        }
        if selinux
            && linux
                .mount_label()
                .as_deref()
                .is_some_and(|x| !x.is_empty())
        {
            return Err(spec_err(
                "linux.mountLabel",
                "SELinux mount labels are not supported by hako-runc",
            ));
        }

        let hooks = match spec.hooks() {
            None => HooksPlan::default(),
            Some(h) => {
                let v = |x: &Option<Vec<Hook>>| x.clone().unwrap_or_default();
                let hp = HooksPlan {
                    prestart: v(h.prestart()),
                    create_runtime: v(h.create_runtime()),
                    create_container: v(h.create_container()),
                    start_container: v(h.start_container()),
                    poststart: v(h.poststart()),
                    poststop: v(h.poststop()),
                };
                for (name, list) in [
                    ("prestart", &hp.prestart),
                    ("createRuntime", &hp.create_runtime),
                    ("createContainer", &hp.create_container),
                    ("startContainer", &hp.start_container),
                    ("poststart", &hp.poststart),
                    ("poststop", &hp.poststop),
                ] {
                    for (i, hk) in list.iter().enumerate() {
                        if !hk.path().is_absolute() {
                            return Err(spec_err(
                                format!("hooks.{name}[{i}].path"),
                                "must be absolute",
                            ));
                        }
                        if let Some(t) = hk.timeout() {
                            if t <= 0 {
                                return Err(spec_err(
                                    format!("hooks.{name}[{i}].timeout"),
                                    "must be greater than zero",
                                ));
                            }
                        }
                    }
                }
                hp
            }
        };

        // Resource values that no kernel accepts are refused here, before
        // anything exists, rather than half-way through create.
        if let Some(r) = linux.resources() {
            hako_cgroups::validate(r).map_err(|e| Error::Cgroup {
                step: "linux.resources".into(),
                source: Box::new(e),
            })?;
        }

        Ok(Plan {
            oci_version: ver.clone(),
            bundle: bundle.to_path_buf(),
            rootfs,
            root_readonly: root.readonly().unwrap_or(false),
            ns,
            uid_maps,
            gid_maps,
            time_offsets,
            hostname,
            domainname,
            mounts,
            rootfs_propagation,
            devices,
            masked_paths,
            readonly_paths,
            sysctl,
            process,
            hooks,
            annotations: spec
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cgroups_path: linux.cgroups_path().clone(),
            resources: linux.resources().clone(),
            seccomp: linux.seccomp().clone(),
        })
    }

    /// Map a container uid to the host (identity without a user namespace).
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        map_id(&self.uid_maps, uid, self.ns.is_new(NsKind::User))
    }
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        map_id(&self.gid_maps, gid, self.ns.is_new(NsKind::User))
    }
}

fn map_id(maps: &[IdMap], id: u32, userns: bool) -> Option<u32> {
    if !userns {
        return Some(id);
    }
    maps.iter()
        .find(|m| id >= m.container && id - m.container < m.size)
        .map(|m| m.host + (id - m.container))
}

pub fn plan_process(p: &oci_spec::runtime::Process) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(spec_err("process.args", "args[0] (the program) is missing"));
    }
    if !p.cwd().is_absolute() {
        return Err(spec_err(
            "process.cwd",
            format!("{:?} is not an absolute path", p.cwd()),
        ));
    }
    let mut rlimits = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let res = rlimit_resource(r.typ());
        if !seen.insert(res) {
            return Err(spec_err(
                format!("process.rlimits[{i}]"),
                format!("duplicate {:?}", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(spec_err(
                format!("process.rlimits[{i}]"),
                "soft limit is above the hard limit",
            ));
        }
        rlimits.push(Rlimit {
            resource: res,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    if let Some(o) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&o) {
            return Err(spec_err(
                "process.oomScoreAdj",
                format!("{o} is outside -1000..1000"),
            ));
        }
    }
    let caps = match p.capabilities() {
        None => None,
        Some(c) => {
            let sets = CapSets {
                bounding: caps_of(c.bounding(), "process.capabilities.bounding")?,
                effective: caps_of(c.effective(), "process.capabilities.effective")?,
                inheritable: caps_of(c.inheritable(), "process.capabilities.inheritable")?,
                permitted: caps_of(c.permitted(), "process.capabilities.permitted")?,
                ambient: caps_of(c.ambient(), "process.capabilities.ambient")?,
            };
            // The kernel only raises an ambient capability that is also
            // permitted and inheritable. runc's own example spec lists
            // ambient without inheritable, so, like runc, skip those (with a
            // warning) rather than refuse the spec.
            let mut sets = sets;
            let (keep, skip): (Vec<_>, Vec<_>) = sets
                .ambient
                .iter()
                .partition(|a| sets.permitted.contains(a) && sets.inheritable.contains(a));
            for a in skip {
                crate::log::debug(&format!(
                    "process.capabilities.ambient: {a} is not both permitted and inheritable; not raised"
                ));
            }
            sets.ambient = keep;
            for e in &sets.effective {
                if !sets.permitted.contains(e) {
                    return Err(spec_err(
                        "process.capabilities.effective",
                        format!("{e} must also be permitted"),
                    ));
                }
            }
            Some(sets)
        }
    };
    Ok(ProcessPlan {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().clone(),
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        umask: p.user().umask(),
        rlimits,
        oom_score_adj: p.oom_score_adj(),
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        caps,
        terminal: p.terminal().unwrap_or(false),
        console_size: p.console_size().map(|b| {
            (
                b.height().min(u16::MAX as u64) as u16,
                b.width().min(u16::MAX as u64) as u16,
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn base(extra_linux: &str, extra: &str) -> String {
        let ns = if extra_linux.contains("\"namespaces\"") {
            ""
        } else {
            r#","namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"}]"#
        };
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"/"}},
               "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
               "linux":{{"devices":[]{ns}{extra_linux}}}{extra}}}"#
        )
    }

    fn plan(json: &str) -> Result<Plan> {
        Plan::from_spec(&spec(json), Path::new("/bundle"))
    }

    #[test]
    fn namespaces_new_and_joined() {
        let p = plan(&base(
            r#","namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"mount"}]"#,
            "",
        ));
        let p = p.unwrap();
        assert!(p.ns.is_new(NsKind::Pid));
        assert_eq!(
            p.ns.joined(NsKind::Network),
            Some(Path::new("/proc/1/ns/net"))
        );
    }

    #[test]
    fn duplicate_namespace_is_refused() {
        let p = plan(&base(
            r#","namespaces":[{"type":"pid"}]"#,
            r#","mounts":[{"destination":"/proc","type":"proc","source":"proc"}]"#,
        ))
        .unwrap();
        assert!(
            p.mounts.is_empty(),
            "no mount namespace: host mounts untouched"
        );
        let e = plan(&base(
            r#","namespaces":[{"type":"pid"},{"type":"pid"}]"#,
            "",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: linux.namespaces[1]: duplicate pid namespace"
        );
    }

    #[test]
    fn hostname_needs_uts() {
        let e = plan(&base(
            r#","namespaces":[{"type":"mount"}]"#,
            r#","hostname":"x""#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("hostname"), "{e}");
        let p = plan(&base("", r#","hostname":"box""#)).unwrap();
        assert_eq!(p.hostname.as_deref(), Some("box"));
    }

    #[test]
    fn missing_args_is_refused() {
        let j = r#"{"ociVersion":"1.0.2","root":{"path":"/"},
            "process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
        let e = plan(j).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: process.args: args[0] (the program) is missing"
        );
    }

    #[test]
    fn userns_needs_maps() {
        let e = plan(&base(r#","namespaces":[{"type":"user"}]"#, "")).unwrap_err();
        assert!(e.to_string().contains("uidMappings"), "{e}");
        let p = plan(&base(
            r#","namespaces":[{"type":"user"},{"type":"mount"}],
               "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
               "gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]"#,
            "",
        ))
        .unwrap();
        assert_eq!(p.host_uid(0), Some(100000));
        assert_eq!(p.host_uid(70000), None);
    }

    #[test]
    fn sysctl_must_be_namespaced() {
        let e = plan(&base(r#","sysctl":{"kernel.panic":"1"}"#, "")).unwrap_err();
        assert!(e.to_string().contains("not a namespaced sysctl"), "{e}");
        let e = plan(&base(r#","sysctl":{"net.ipv4.ip_forward":"1"}"#, "")).unwrap_err();
        assert!(e.to_string().contains("network namespace"), "{e}");
        let p = plan(&base(
            r#","namespaces":[{"type":"network"},{"type":"ipc"},{"type":"mount"}],"sysctl":{"net.ipv4.ip_forward":"1","kernel.shmmax":"1000"}"#,
            "",
        ))
        .unwrap();
        assert_eq!(p.sysctl.len(), 2);
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let j = r#"{"ociVersion":"1.0.2","root":{"path":"/"},
            "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_NOPE"]}}}"#;
        let r: std::result::Result<Spec, _> = serde_json::from_str(j);
        assert!(r.is_err());
    }

    #[test]
    fn caps_are_planned() {
        let j = r#"{"ociVersion":"1.0.2","root":{"path":"/"},
            "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],
            "permitted":["CAP_KILL"],"ambient":["CAP_KILL"]}}}"#;
        let p = plan(j).unwrap();
        let c = p.process.unwrap().caps.unwrap();
        assert!(
            c.ambient.is_empty(),
            "ambient without inheritable is not raised"
        );
        assert_eq!(c.bounding.len(), 2);
    }

    #[test]
    fn time_offsets_need_time_ns() {
        let e = plan(&base(r#","timeOffsets":{"monotonic":{"secs":10}}"#, "")).unwrap_err();
        assert!(e.to_string().contains("time namespace"), "{e}");
        let p = plan(&base(
            r#","namespaces":[{"type":"time"}],"timeOffsets":{"boottime":{"secs":86400,"nanosecs":5}}"#,
            "",
        ))
        .unwrap();
        assert_eq!(p.time_offsets.unwrap().boottime, (86400, 5));
    }

    #[test]
    fn mounts_are_planned_in_order() {
        let p = plan(&base(
            "",
            r#","mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                {"destination":"/data/../x","type":"bind","source":"vol","options":["rbind","ro"]},
                {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}]"#,
        ))
        .unwrap();
        assert_eq!(p.mounts.len(), 3);
        assert_eq!(p.mounts[1].dest, PathBuf::from("/x"));
        assert_eq!(
            p.mounts[1].kind,
            MountKind::Bind {
                source: PathBuf::from("/bundle/vol")
            }
        );
        assert!(p.mounts[1].opts.recursive && p.mounts[1].opts.bind);
        assert_eq!(p.mounts[2].kind, MountKind::Cgroup);
    }

    #[test]
    fn bind_without_source_is_refused() {
        let e = plan(&base(
            "",
            r#","mounts":[{"destination":"/x","type":"bind"}]"#,
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: mounts[0].source: a bind mount needs a source"
        );
    }

    #[test]
    fn fake_proc_is_refused() {
        let e = plan(&base(
            "",
            r#","mounts":[{"destination":"/proc","type":"bind","source":"/tmp/fake","options":["rbind"]}]"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("fake /proc"), "{e}");
        let e = plan(&base(
            "",
            r#","mounts":[{"destination":"/proc/self/attr","type":"tmpfs","source":"x"}]"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        plan(&base(
            "",
            r#","mounts":[{"destination":"/proc/meminfo","type":"bind","source":"/tmp/m"}]"#,
        ))
        .unwrap();
    }

    #[test]
    fn namespace_names_both_ways() {
        for k in NsKind::ALL {
            assert_eq!(NsKind::from_name(k.proc_name()), Some(k));
            assert_eq!(NsKind::from_name(k.spec_name()), Some(k));
            assert!(NsKind::BY_NAME.contains(&k));
        }
        assert_eq!(NsKind::from_name("mount"), Some(NsKind::Mount));
        assert_eq!(NsKind::from_name("mnt"), Some(NsKind::Mount));
        assert_eq!(NsKind::from_name("bogus"), None);
        let names: Vec<_> = NsKind::BY_NAME.iter().map(|k| k.proc_name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn clean_abs_never_escapes() {
        assert_eq!(clean_abs(Path::new("../../etc")), PathBuf::from("/etc"));
        assert_eq!(clean_abs(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
    }
    #[test]
    fn impossible_resources_are_refused_before_anything_exists() {
        let e = plan(&base(r#","resources":{"memory":{"limit":-5}}"#, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.limit") && e.contains("-5"), "{e}");
        let e = plan(&base(r#","resources":{"cpu":{"cpus":"0-x"}}"#, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpu.cpus"), "{e}");
        // Docker's zeros mean "unset" and plan fine.
        plan(&base(
            r#","resources":{"blockIO":{"weight":0},"cpu":{"shares":0,"quota":0,"period":0}}"#,
            "",
        ))
        .unwrap();
    }
}
