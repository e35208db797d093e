//! Image config + `run` flags → the container's OCI spec, typed
//! (`oci_spec::runtime::Spec`, written as config.json). Pure: every input is
//! a parameter, so the mapping is unit-tested without root, and a test
//! plans every kind of spec through the runtime's planner.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup,
    LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset, Mount, Process,
    Root, Spec, User,
};
use serde_json::Value;

use crate::record::RunOptions;
use crate::{Error, Result};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/interrupts",
];

pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `--init`'s helper comes from on the host. The hako binary is
/// dynamically linked, so it runs in the container through the host's
/// dynamic loader with the host's library directory bound read-only: that
/// works on any rootfs (busybox, musl or glibc).
#[derive(Debug, Clone, PartialEq)]
pub struct InitHelper {
    pub exe: PathBuf,
    pub loader: PathBuf,
    pub libdir: PathBuf,
}

pub const INIT_DIR: &str = "/.hako";

/// The container's working directory: `-w`, else the image's WorkingDir.
pub fn workdir(o: &RunOptions, ic: &serde_json::Value) -> Option<String> {
    o.workdir.clone().or_else(|| {
        ic["WorkingDir"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

impl InitHelper {
    /// Find our own loader and libc directory in /proc/self/maps.
    pub fn discover() -> Result<InitHelper> {
        let exe = hako_runtime::self_exe()
            .map_err(|e| Error::Other(format!("find the hako binary: {e}")))?;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut loader = None;
        let mut libdir = None;
        for line in maps.lines() {
            let Some(p) = line.split_whitespace().nth(5) else {
                continue;
            };
            let file = Path::new(p)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("");
            if file.starts_with("ld-linux") || file.starts_with("ld-musl") {
                loader = Some(PathBuf::from(p));
            }
            if file.starts_with("libc.so") || file.starts_with("libc-") {
                libdir = Path::new(p).parent().map(Path::to_path_buf);
            }
        }
        Ok(InitHelper {
            exe,
            loader: loader.unwrap_or_default(),
            libdir: libdir.unwrap_or_default(),
        })
    }

    /// process.args prefix that runs `hako __init --` inside the container.
    pub fn argv(&self) -> Vec<String> {
        if self.loader.as_os_str().is_empty() {
            // A static binary: run it directly.
            return vec![format!("{INIT_DIR}/init"), "__init".into(), "--".into()];
        }
        vec![
            format!("{INIT_DIR}/ld.so"),
            "--library-path".into(),
            format!("{INIT_DIR}/lib"),
            format!("{INIT_DIR}/init"),
            "__init".into(),
            "--".into(),
        ]
    }

    fn mounts(&self) -> Vec<Mount> {
        let ro = ["bind", "ro", "nosuid", "nodev"];
        let mut v = vec![mount(&format!("{INIT_DIR}/init"), "bind", &self.exe, &ro)];
        if !self.loader.as_os_str().is_empty() {
            v.push(mount(
                &format!("{INIT_DIR}/ld.so"),
                "bind",
                &self.loader,
                &ro,
            ));
            v.push(mount(
                &format!("{INIT_DIR}/lib"),
                "bind",
                &self.libdir,
                &["rbind", "ro", "nosuid", "nodev"],
            ));
        }
        v
    }
}

/// What the engine resolved before building the spec.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub id: String,
    pub rootfs: PathBuf,
    /// The container's directory (name files live here).
    pub ctr_dir: PathBuf,
    pub hostname: String,
    /// The image's config object (`Env`, `Cmd`, `Entrypoint`, …), or null.
    pub image_config: Value,
    /// Namespace paths to join: (spec type, path).
    pub joins: Vec<(String, PathBuf)>,
    /// No network namespace (`--network host`).
    pub host_network: bool,
    pub init: Option<InitHelper>,
    /// Put the default seccomp profile in (the runtime supports it).
    pub seccomp_supported: bool,
    pub rootless: bool,
    /// The container's own user namespace (`--userns auto`, HOSTID:SIZE).
    pub idmap: Option<hako_image::idmap::IdMap>,
    /// Who makes the cgroup: the systemd driver (a scope; rootless through
    /// the user's systemd) or the runtime in cgroupfs (root only).
    pub cgroup_manager: crate::config::CgroupManager,
    /// The user's uid/gid on the host (rootless: outside the user's
    /// namespace, whose 0 they are).
    pub uid: u32,
    pub gid: u32,
    /// Rootless: the user's namespace's uid and gid extents (first id
    /// inside, count).
    pub ns_extents: (crate::userns::Extents, crate::userns::Extents),
    /// Named volumes resolved to host dirs: (name, dir).
    pub volume_dirs: Vec<(String, PathBuf)>,
    /// Device nodes: the host's for `--privileged`, and `--device`s.
    pub devices: Vec<LinuxDevice>,
    /// The cgroup rules that let the container use its `--device`s.
    pub device_rules: Vec<LinuxDeviceCgroup>,
    /// Contents of the env files.
    pub env_file_lines: Vec<String>,
    /// `-u` (or the image's User, or root) resolved in the image's
    /// /etc/passwd and /etc/group.
    pub user: Option<RunAs>,
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Every capability we can give (our bounding set), for --privileged and
/// --cap-add ALL.
pub fn all_caps() -> Vec<String> {
    caps::read(None, caps::CapSet::Bounding)
        .unwrap_or_else(|_| caps::all())
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

pub fn capabilities(o: &RunOptions) -> Vec<String> {
    if o.privileged {
        return all_caps();
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for a in &o.cap_add {
        if a.eq_ignore_ascii_case("all") {
            caps = all_caps();
        } else {
            let n = cap_name(a);
            if !caps.contains(&n) {
                caps.push(n);
            }
        }
    }
    for d in &o.cap_drop {
        if d.eq_ignore_ascii_case("all") {
            caps.clear();
        } else {
            let n = cap_name(d);
            caps.retain(|c| *c != n);
        }
    }
    caps
}

/// `seccomp=unconfined`, `seccomp=FILE`, or the default.
pub enum Seccomp {
    Default,
    Unconfined,
    File(PathBuf),
}

/// What `--security-opt` (and `--privileged`) ask for.
pub struct SecurityOpts {
    pub seccomp: Seccomp,
    /// hako sets no_new_privs unless asked not to (or --privileged); Docker
    /// leaves it off unless asked (`--help` says so).
    pub no_new_privileges: bool,
}

/// Parse `--security-opt` as Docker does (`KEY=VALUE` or `KEY:VALUE`):
/// `seccomp=unconfined|FILE`, `no-new-privileges[=true|false]`, and the
/// LSM options that are true without an LSM (`label=disable`,
/// `apparmor=unconfined`). Anything else is refused, naming it.
pub fn security_opts(o: &RunOptions) -> Result<SecurityOpts> {
    let mut s = SecurityOpts {
        seccomp: if o.privileged {
            Seccomp::Unconfined
        } else {
            Seccomp::Default
        },
        no_new_privileges: !o.privileged,
    };
    for opt in &o.security_opt {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match (k, v) {
            ("seccomp", "unconfined") => s.seccomp = Seccomp::Unconfined,
            ("seccomp", "") => {}
            ("seccomp", f) => s.seccomp = Seccomp::File(PathBuf::from(f)),
            ("no-new-privileges", "" | "true") => s.no_new_privileges = true,
            ("no-new-privileges", "false") => s.no_new_privileges = false,
            ("label", "disable") | ("apparmor", "unconfined") => {}
            ("label" | "apparmor", _) => {
                return Err(Error::Usage(format!(
                    "--security-opt {opt:?}: hako applies no SELinux or AppArmor profile \
                     (only label=disable and apparmor=unconfined)"
                )))
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--security-opt {opt:?}: unknown option (seccomp=, no-new-privileges, label=disable, apparmor=unconfined)"
                )))
            }
        }
    }
    Ok(s)
}

/// One `--mount`, as the `-v` or `--tmpfs` entry it amounts to.
#[derive(Debug, PartialEq)]
pub enum MountArg {
    /// A bind or volume: its `-v` entry (no source: anonymous), its
    /// destination, and whether the volume must stay without the image's
    /// content (`volume-nocopy`).
    Volume {
        entry: String,
        dest: String,
        nocopy: bool,
    },
    /// A `--tmpfs` entry.
    Tmpfs(String),
}

/// Docker's `--mount type=bind|volume|tmpfs,source=…,target=…,…`.
pub fn parse_mount(m: &str) -> Result<MountArg> {
    let bad = |why: String| Error::Usage(format!("--mount {m:?}: {why}"));
    let (mut kind, mut src, mut dst) = ("volume", None::<&str>, None::<&str>);
    let (mut ro, mut nocopy) = (false, false);
    let mut tmpfs_opts = Vec::new();
    let flag = |k: &str, v: Option<&str>| match v {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(bad(format!("{k}={v}: true or false"))),
    };
    for field in m.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        match (k, v) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => kind = t,
            ("type", _) => return Err(bad("type must be bind, volume or tmpfs".into())),
            ("source" | "src", Some(s)) => src = Some(s),
            ("target" | "destination" | "dst", Some(d)) => dst = Some(d),
            ("readonly" | "ro", v) => ro = flag(k, v)?,
            ("volume-nocopy", v) => nocopy = flag(k, v)?,
            ("bind-propagation", Some("private" | "rprivate")) => {}
            ("bind-propagation", _) => {
                return Err(bad(
                    "hako's binds are private: bind-propagation=private or rprivate".into(),
                ))
            }
            ("tmpfs-size", Some(s)) => tmpfs_opts.push(format!("size={s}")),
            ("tmpfs-mode", Some(s)) => tmpfs_opts.push(format!("mode={s}")),
            _ => return Err(bad(format!("unknown or incomplete field {field:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| bad("target= is required".into()))?;
    if !dst.starts_with('/') {
        return Err(bad("the target must be an absolute path".into()));
    }
    match kind {
        "tmpfs" => {
            if src.is_some() {
                return Err(bad("a tmpfs has no source".into()));
            }
            if ro {
                tmpfs_opts.push("ro".into());
            }
            Ok(MountArg::Tmpfs(if tmpfs_opts.is_empty() {
                dst.to_string()
            } else {
                format!("{dst}:{}", tmpfs_opts.join(","))
            }))
        }
        _ => {
            let src = src.unwrap_or("");
            if kind == "bind" {
                if !src.starts_with('/') {
                    return Err(bad("a bind needs an absolute source= path".into()));
                }
                // Unlike -v, --mount never creates the host path (Docker).
                if !Path::new(src).exists() {
                    return Err(bad(format!("bind source path does not exist: {src}")));
                }
            } else if src.starts_with('/') {
                return Err(bad(
                    "a volume's source is a volume name; use type=bind for a path".into(),
                ));
            }
            // No source (an anonymous volume) is ":dst", which -v's parser
            // reads as such.
            let entry = format!("{src}:{dst}{}", if ro { ":ro" } else { "" });
            // The entry is checked as -v would check it (volume names).
            parse_volume(&entry).map_err(|e| bad(e.to_string()))?;
            Ok(MountArg::Volume {
                entry,
                dest: dst.to_string(),
                nocopy,
            })
        }
    }
}

/// `host:ctr[:ro]` or `name:ctr[:ro]` → (source, dest, ro, named).
pub fn parse_volume(v: &str) -> Result<(String, String, bool, bool)> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(Error::Usage(format!("invalid volume {v:?}"))),
    };
    if !dst.starts_with('/') {
        return Err(Error::Usage(format!(
            "invalid volume {v:?}: the container path must be absolute"
        )));
    }
    let mut ro = false;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => ro = true,
            "rw" => ro = false,
            // SELinux relabelling and propagation: nothing to relabel here,
            // and hako's binds are private (as Docker's default).
            "z" | "Z" | "rprivate" | "private" => {}
            _ => {
                return Err(Error::Usage(format!(
                    "invalid volume {v:?}: unknown option {opt:?} (ro, rw, z, Z)"
                )))
            }
        }
    }
    let named = !src.starts_with('/');
    // A volume name becomes a directory under the volumes dir: only
    // Docker's local-driver names, so "..", "a/b" and friends cannot
    // reach outside it.
    if named && !src.is_empty() && !crate::volume::is_name(src) {
        return Err(Error::Usage(format!(
            "invalid volume {v:?}: {src:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*); \
             a host directory must be an absolute path"
        )));
    }
    Ok((src.to_string(), dst.to_string(), ro, named))
}

fn ns_mode(flag: &Option<String>) -> Option<&str> {
    flag.as_deref().filter(|s| !s.is_empty())
}

/// `--time-offset SECS` (both clocks) or `monotonic=S,boottime=S`.
pub fn parse_time_offset(s: &str) -> Result<(i64, i64)> {
    let bad = || {
        Error::Usage(format!(
            "invalid --time-offset {s:?}: SECONDS or monotonic=S,boottime=S"
        ))
    };
    if let Ok(n) = s.trim_end_matches('s').parse::<i64>() {
        return Ok((n, n));
    }
    let (mut m, mut b) = (0, 0);
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        let n: i64 = v.trim_end_matches('s').parse().map_err(|_| bad())?;
        match k {
            "monotonic" => m = n,
            "boottime" => b = n,
            _ => return Err(bad()),
        }
    }
    Ok((m, b))
}

/// The user process's argv: entrypoint + cmd as Docker combines them
/// (empty when the image and the flags give none: an error for `run`).
pub fn argv(o: &RunOptions, image_config: &Value) -> Vec<String> {
    let ep = match &o.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => strs(&image_config["Entrypoint"]),
    };
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        vec![]
    } else {
        strs(&image_config["Cmd"])
    };
    ep.into_iter().chain(cmd).collect()
}

/// The most the engine reads of an image's /etc/passwd or /etc/group.
pub const MAX_ID_FILE: u64 = 4 << 20;

/// An image's passwd/group file, read inside the rootfs (its symlinks
/// resolve in the image, never on the host), only if it is a regular file
/// and at most MAX_ID_FILE bytes. A missing file reads as empty, as before.
fn read_image_file(rootfs: &Path, name: &str) -> Result<String> {
    match hako_runtime::os::read_file_in_root(rootfs, Path::new(name), MAX_ID_FILE) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::Usage(format!("image file {name}: {e}"))),
    }
}

/// Who the container's process runs as, resolved as Docker resolves
/// `-u` / the image's `User`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// The groups of /etc/group that list the user (other than `gid`).
    pub additional_gids: Vec<u32>,
    /// The user's home from /etc/passwd, else `/`: the default `HOME`.
    pub home: String,
}

impl RunAs {
    pub const ROOT: &str = "0";
}

/// Resolve `USER[:GROUP]` (names or numbers) against the image's
/// passwd and group files' contents, as Docker does: a name must exist; a
/// number need not (its group is then 0, not the number); the group
/// defaults to the user's primary one; the groups that list the user by
/// name are added.
pub fn resolve_user(passwd: &str, group: &str, spec: &str) -> Result<RunAs> {
    let (user, grp) = spec
        .split_once(':')
        .map_or((spec, None), |(a, b)| (a, Some(b)));
    if user.is_empty() {
        return Err(Error::Usage(format!("invalid user {spec:?}")));
    }
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (name, uid, mut gid, home) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            Some(f[0]),
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
        ),
        (None, Ok(n)) => (None, n, 0, String::new()),
        (None, Err(_)) => {
            return Err(Error::Usage(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in &groups {
            let listed = f.get(3).is_some_and(|m| m.split(',').any(|m| m == name));
            if let (true, Ok(id)) = (listed, f[2].parse::<u32>()) {
                if id != gid && !additional_gids.contains(&id) {
                    additional_gids.push(id);
                }
            }
        }
    }
    Ok(RunAs {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// `--group-add` against the image's /etc/group (read inside its root).
pub fn groups_in_rootfs(rootfs: &Path, names: &[String]) -> Result<Vec<u32>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    crate::tuning::group_ids(&read_image_file(rootfs, "/etc/group")?, names)
}

/// [`resolve_user`] against the files of an image's root (read inside it).
pub fn user_in_rootfs(rootfs: &Path, spec: &str) -> Result<RunAs> {
    let passwd = read_image_file(rootfs, "/etc/passwd")?;
    let group = read_image_file(rootfs, "/etc/group")?;
    resolve_user(&passwd, &group, spec)
}

/// The caller's RLIMIT_NOFILE (the container cannot be given more).
fn own_nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out pointer for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return (1024, 1024);
    }
    (r.rlim_max.min(1_048_576), r.rlim_max.min(1_048_576))
}

/// A mount of the spec: `options` as the runtime takes them.
fn mount(dst: &str, typ: &str, src: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dst.into())
        .set_typ(Some(typ.into()))
        .set_source(Some(src.into()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ).set_path(path);
    n
}

/// A capability name as the spec has it ("CAP_CHOWN"): unknown names are
/// refused here, naming the flag, rather than by the runtime's parser.
fn capability(name: &str) -> Result<Capability> {
    serde_json::from_value(Value::String(name.into()))
        .map_err(|_| Error::Usage(format!("--cap-add/--cap-drop: unknown capability {name:?}")))
}

/// Build config.json, as oci_spec's typed Spec.
pub fn build(o: &RunOptions, inp: &Inputs) -> Result<Spec> {
    let shm = crate::tuning::shm_size(o.shm_size.as_deref())?;
    let ic = &inp.image_config;
    let caps = capabilities(o);
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={}", inp.hostname),
    ];
    let set_env = |kv: &str, env: &mut Vec<String>| {
        let key = kv.split('=').next().unwrap_or(kv);
        let kv = if kv.contains('=') {
            kv.to_string()
        } else {
            // `-e NAME` takes the value from the caller's environment.
            match std::env::var(key) {
                Ok(v) => format!("{key}={v}"),
                Err(_) => return,
            }
        };
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv);
    };
    for e in strs(&ic["Env"]) {
        set_env(&e, &mut env);
    }
    if o.tty {
        set_env("TERM=xterm", &mut env);
    }
    for e in inp.env_file_lines.iter().chain(o.env.iter()) {
        set_env(e, &mut env);
    }

    let mut args = argv(o, ic);
    if args.is_empty() {
        return Err(Error::Usage(
            "no command specified: the image has no CMD or ENTRYPOINT; give one after the image"
                .into(),
        ));
    }
    if let Some(h) = &inp.init {
        let mut a = h.argv();
        a.append(&mut args);
        args = a;
    }
    let cwd = workdir(o, ic).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Usage(format!(
            "the working directory {cwd:?} is not absolute"
        )));
    }
    let run_as = match &inp.user {
        Some(u) => u.clone(),
        None => resolve_user("", "", RunAs::ROOT)?,
    };
    // Docker's default HOME: the user's home, unless the image or -e set it.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", run_as.home));
    }
    let nofile = own_nofile();

    let sys_mode = if o.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ];
    // A user namespace (rootless, or --userns) cannot mount sysfs without
    // its own netns, nor give devpts a gid it may not map.
    let userns = inp.rootless
        || o.userns
            .as_deref()
            .is_some_and(|u| u != "host" && !u.is_empty());
    if userns {
        mounts.retain(|m| {
            let d = m.destination();
            d != Path::new("/sys/fs/cgroup") && d != Path::new("/dev/mqueue")
        });
        for m in &mut mounts {
            if m.destination() == Path::new("/sys") {
                *m = mount(
                    "/sys",
                    "none",
                    "/sys",
                    &["rbind", "nosuid", "noexec", "nodev", "ro"],
                );
            }
            if let Some(opts) = m.options_mut() {
                opts.retain(|x| !x.starts_with("gid="));
            }
        }
    }
    let system_mounts = mounts.len();
    // Name files: our own, or the host's for --network host.
    let name_files: [(&str, PathBuf); 3] = if inp.host_network {
        [
            ("/etc/resolv.conf", PathBuf::from("/etc/resolv.conf")),
            ("/etc/hosts", PathBuf::from("/etc/hosts")),
            ("/etc/hostname", inp.ctr_dir.join("hostname")),
        ]
    } else {
        [
            ("/etc/resolv.conf", inp.ctr_dir.join("resolv.conf")),
            ("/etc/hosts", inp.ctr_dir.join("hosts")),
            ("/etc/hostname", inp.ctr_dir.join("hostname")),
        ]
    };
    for (dst, src) in name_files {
        if src.exists() {
            mounts.push(mount(
                dst,
                "bind",
                src,
                &["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
            ));
        }
    }
    for t in &o.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        let mut options = vec!["nosuid", "nodev", "noexec"];
        options.extend(opts.split(',').filter(|s| !s.is_empty()));
        mounts.push(mount(dst, "tmpfs", "tmpfs", &options));
    }
    for v in &o.volumes {
        let (src, dst, ro, named) = parse_volume(v)?;
        let source = if named {
            inp.volume_dirs
                .iter()
                .find(|(n, _)| *n == src)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| Error::Other(format!("volume {src} was not prepared")))?
        } else {
            PathBuf::from(&src)
        };
        let mut options = vec!["rbind", "rprivate"];
        if ro {
            options.push("ro");
        }
        mounts.push(mount(&dst, "bind", source, &options));
    }
    if let Some(h) = &inp.init {
        mounts.extend(h.mounts());
    }
    // Parents before children, as Docker orders them: a volume on /etc is
    // mounted before the name files inside it, not over them.
    mounts[system_mounts..].sort_by_key(|m| m.destination().components().count());

    let mut namespaces = Vec::new();
    let join = |t: &str| {
        inp.joins
            .iter()
            .find(|(k, _)| k == t)
            .map(|(_, p)| p.clone())
    };
    use LinuxNamespaceType as Ns;
    for (t, typ) in [
        ("pid", Ns::Pid),
        ("network", Ns::Network),
        ("ipc", Ns::Ipc),
        ("uts", Ns::Uts),
        ("mount", Ns::Mount),
        ("cgroup", Ns::Cgroup),
    ] {
        let flag = match t {
            "pid" => ns_mode(&o.pid),
            "ipc" => ns_mode(&o.ipc),
            "uts" => ns_mode(&o.uts),
            "cgroup" => match o.cgroupns.as_deref() {
                None | Some("private") => None,
                Some("host") => Some("host"),
                Some(v) => return Err(Error::Usage(format!("--cgroupns {v:?}: host or private"))),
            },
            _ => None,
        };
        if flag == Some("host") || (t == "network" && inp.host_network && join(t).is_none()) {
            continue;
        }
        namespaces.push(namespace(typ, join(t)));
    }
    let mut linux = Linux::default();
    let paths = |p: &[&str]| -> Option<Vec<String>> {
        Some(if o.privileged {
            vec![]
        } else {
            p.iter().map(|s| s.to_string()).collect()
        })
    };
    linux
        .set_masked_paths(paths(&MASKED_PATHS))
        .set_readonly_paths(paths(&READONLY_PATHS))
        .set_resources(None)
        .set_cgroups_path(None);
    // A user namespace of its own: --userns auto or HOSTID:SIZE (its ids
    // chosen at create: inp.idmap), or keep-id. Rootless containers
    // otherwise share the user's namespace (see crate::rootless).
    // Mappings as (container id, host id, size) for uids and gids.
    type Maps = Vec<(u32, u32, u32)>;
    let userns_map: Option<(Maps, Maps)> = match crate::userns::parse(o.userns.as_deref())? {
        crate::userns::Mode::KeepId if !inp.rootless => {
            Some((vec![(0, inp.uid, 1)], vec![(0, inp.gid, 1)]))
        }
        // Rootless keep-id: a namespace inside the user's in which the
        // user's own id (the user's namespace's 0) is itself again.
        crate::userns::Mode::KeepId => Some((
            crate::userns::keep_id(inp.uid, &inp.ns_extents.0)?,
            crate::userns::keep_id(inp.gid, &inp.ns_extents.1)?,
        )),
        _ => inp
            .idmap
            .map(|m| (vec![(0, m.uid, m.size)], vec![(0, m.gid, m.size)])),
    };
    if let Some((uids, gids)) = userns_map {
        namespaces.push(namespace(Ns::User, None));
        let map = |v: &Maps| {
            v.iter()
                .map(|&(c, h, size)| {
                    LinuxIdMappingBuilder::default()
                        .container_id(c)
                        .host_id(h)
                        .size(size)
                        .build()
                        .map_err(|e| Error::Other(format!("--userns: {e}")))
                })
                .collect::<Result<Vec<_>>>()
        };
        linux
            .set_uid_mappings(Some(map(&uids)?))
            .set_gid_mappings(Some(map(&gids)?));
    }
    if let Some(t) = &o.time_offset {
        let (m, b) = parse_time_offset(t)?;
        namespaces.push(namespace(Ns::Time, None));
        let off = |secs: i64| {
            let mut t = LinuxTimeOffset::default();
            t.set_secs(Some(secs)).set_nanosecs(Some(0));
            t
        };
        linux.set_time_offsets(Some(
            [
                ("monotonic".to_string(), off(m)),
                ("boottime".to_string(), off(b)),
            ]
            .into(),
        ));
    }
    let own = crate::tuning::OwnNamespaces {
        net: !inp.host_network && !inp.joins.iter().any(|(t, _)| t == "network"),
        ipc: ns_mode(&o.ipc) != Some("host") && !inp.joins.iter().any(|(t, _)| t == "ipc"),
        uts: ns_mode(&o.uts) != Some("host") && !inp.joins.iter().any(|(t, _)| t == "uts"),
    };
    let sysctl = crate::tuning::sysctls(&o.sysctl, own)?;
    if !sysctl.is_empty() {
        linux.set_sysctl(Some(sysctl));
    }
    linux.set_namespaces(Some(namespaces));
    if !inp.devices.is_empty() {
        linux.set_devices(Some(inp.devices.clone()));
    }

    let systemd = inp.cgroup_manager == crate::config::CgroupManager::Systemd;
    // Checked even where they cannot apply (rootless without systemd).
    let mut res = crate::limits::to_resources(&o.limits)?;
    crate::limits::memory_behaviour(o, &mut res)?;
    crate::limits::device_io(o, &mut res)?;
    // Rootless, only systemd's delegation gives a cgroup to set limits in.
    if !inp.rootless || systemd {
        // Device rules need root (a BPF program on cgroup2).
        if !inp.rootless {
            let mut devices = LinuxDeviceCgroup::default();
            devices
                .set_allow(o.privileged)
                .set_access(Some("rwm".into()));
            let mut rules = vec![devices];
            rules.extend(inp.device_rules.iter().cloned());
            res.set_devices(Some(rules));
        }
        linux.set_resources(Some(res)).set_cgroups_path(Some(
            cgroups_path(o, systemd, inp.rootless, &inp.id)?.into(),
        ));
    } else if o.cgroup_parent.is_some() {
        return Err(Error::Usage(
            "--cgroup-parent: a rootless container has a cgroup only through systemd (cgroup_manager = \"systemd\" in hako.toml)".into(),
        ));
    }
    let security = security_opts(o)?;
    if inp.seccomp_supported {
        match &security.seccomp {
            Seccomp::Unconfined => {}
            Seccomp::Default => {
                // hako_seccomp's profile is the OCI linux.seccomp object.
                let prof = serde_json::to_value(hako_seccomp::default_profile(&caps))
                    .and_then(serde_json::from_value)
                    .map_err(|e| Error::Other(format!("seccomp profile: {e}")))?;
                linux.set_seccomp(Some(prof));
            }
            Seccomp::File(p) => {
                let b = std::fs::read(p).map_err(crate::io_err("read seccomp profile", p))?;
                let prof = hako_runtime::json_from_slice(&b)
                    .map_err(|e| Error::Usage(format!("seccomp profile {}: {e}", p.display())))?;
                linux.set_seccomp(Some(prof));
            }
        }
    }

    let cap_set = caps
        .iter()
        .map(|c| capability(c))
        .collect::<Result<Capabilities>>()?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(cap_set.clone()))
        .set_effective(Some(cap_set.clone()))
        .set_permitted(Some(cap_set))
        .set_inheritable(None)
        .set_ambient(None);
    let mut user = User::default();
    user.set_uid(run_as.uid)
        .set_gid(run_as.gid)
        .set_additional_gids(Some(run_as.additional_gids).filter(|g| !g.is_empty()));
    let rlimits = crate::tuning::rlimits(&o.ulimit, nofile)?;
    let mut process = Process::default();
    process
        .set_terminal(Some(o.tty))
        .set_user(user)
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(cwd.into())
        .set_capabilities(Some(capabilities))
        .set_rlimits(Some(rlimits))
        .set_oom_score_adj(crate::tuning::oom_score_adj(o.oom_score_adj)?)
        .set_no_new_privileges(Some(security.no_new_privileges));
    let mut root = Root::default();
    root.set_path(inp.rootfs.clone())
        .set_readonly(Some(o.read_only));

    let mut spec = Spec::default();
    spec.set_version("1.2.0".into())
        .set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(None)
        .set_mounts(Some(mounts))
        // The store mounts rootfs nosuid,nodev on the host, where other
        // users must not run its setuid files; inside, they work as usual.
        .set_annotations(Some(
            [(
                hako_runtime::ROOTFS_SUID_ANNOTATION.to_string(),
                "true".to_string(),
            )]
            .into(),
        ))
        .set_linux(Some(linux));
    // A hostname needs a UTS namespace of the container's own: with
    // --uts host the container sees the host's (as Docker does).
    if ns_mode(&o.uts) != Some("host") {
        spec.set_hostname(Some(inp.hostname.clone()));
        spec.set_domainname(o.domainname.clone());
    } else if let Some(flag) = [("--hostname", &o.hostname), ("--domainname", &o.domainname)]
        .iter()
        .find_map(|(f, v)| v.is_some().then_some(*f))
    {
        return Err(Error::Usage(format!(
            "conflicting options: {flag} and --uts host"
        )));
    }
    Ok(spec)
}

/// The container's `cgroupsPath`. systemd: `hako-<id>.scope` in
/// machine.slice (as podman's libpod-<id>.scope), in the user manager's
/// user.slice rootless, or in the `--cgroup-parent` slice; cgroupfs:
/// `<parent>/<id>`, the parent /hako unless given (as Docker's /docker).
fn cgroups_path(o: &RunOptions, systemd: bool, rootless: bool, id: &str) -> Result<String> {
    let parent = o.cgroup_parent.as_deref().filter(|p| !p.is_empty());
    let bad =
        |why: String| Error::Usage(format!("--cgroup-parent {:?}: {why}", parent.unwrap_or("")));
    if systemd {
        let slice = match parent {
            Some(p) => {
                hako_cgroups::systemd::unit::expand_slice(p)
                    .map_err(|e| bad(format!("{e}; the systemd cgroup manager takes a slice")))?;
                p
            }
            None if rootless => "user.slice",
            None => "machine.slice",
        };
        return Ok(format!("{slice}:hako:{id}"));
    }
    let Some(p) = parent else {
        return Ok(format!("/hako/{id}"));
    };
    // Relative or absolute, it is a path from the hierarchy's root (as
    // Docker's and podman's), and may not climb out of it.
    let mut path = String::new();
    for part in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if part == ".." {
            return Err(bad("a cgroup path may not contain \"..\"".into()));
        }
        path.push('/');
        path.push_str(part);
    }
    Ok(format!("{path}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spec as JSON, as config.json will have it.
    fn built(o: &RunOptions, i: &Inputs) -> Value {
        serde_json::to_value(build(o, i).unwrap()).unwrap()
    }

    fn inputs() -> Inputs {
        Inputs {
            id: "abc".into(),
            rootfs: "/r".into(),
            ctr_dir: "/nonexistent-ctr".into(),
            hostname: "h".into(),
            image_config: json!({"Env": ["A=1", "PATH=/x"], "Cmd": ["echo", "hi"], "WorkingDir": "/w"}),
            ..Default::default()
        }
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:www:/var/www:/bin/sh\nnohome:x:7:7:x::/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nweb:x:33:\nadm:x:4:web,other\nstaff:x:50:web\nnobody:x:65534:\n";

    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let r = |u: &str| resolve_user(PASSWD, GROUP, u);
        // A number without a passwd entry: group 0 (Docker), not the number.
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert!(u.additional_gids.is_empty());
        // A name: its primary group, home, and the groups listing it.
        let u = r("web").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (33, 33, "/var/www"));
        assert_eq!(u.additional_gids, [4, 50]);
        // A number with a passwd entry is that user.
        assert_eq!(r("33").unwrap(), u);
        assert_eq!(r("web:staff").unwrap().gid, 50);
        assert_eq!(r("web:staff").unwrap().additional_gids, [4]);
        assert_eq!(r("4242:77").unwrap().gid, 77);
        assert_eq!(r("0").unwrap().home, "/root");
        assert_eq!(r("nohome").unwrap().home, "/");
        let e = r("ghost").unwrap_err().to_string();
        assert!(e.contains("unable to find user ghost"), "{e}");
        let e = r("web:ghosts").unwrap_err().to_string();
        assert!(e.contains("unable to find group ghosts"), "{e}");
        assert!(r("").is_err());
    }

    #[test]
    fn home_is_the_users_unless_set() {
        let mut i = inputs();
        i.user = Some(resolve_user(PASSWD, GROUP, "web").unwrap());
        let s = built(&RunOptions::default(), &i);
        let env = strs(&s["process"]["env"]);
        assert!(env.contains(&"HOME=/var/www".to_string()), "{env:?}");
        assert_eq!(s["process"]["user"]["additionalGids"], json!([4, 50]));
        let o = RunOptions {
            env: vec!["HOME=/x".into()],
            ..Default::default()
        };
        let env = strs(&built(&o, &i)["process"]["env"]);
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
        assert!(env.contains(&"HOME=/x".to_string()));
    }

    #[test]
    fn security_opts_are_honoured_or_refused() {
        let with = |opts: &[&str]| RunOptions {
            security_opt: opts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let nnp = |o: &RunOptions| built(o, &inputs())["process"]["noNewPrivileges"].clone();
        assert_eq!(nnp(&with(&[])), json!(true));
        assert_eq!(nnp(&with(&["no-new-privileges=false"])), json!(false));
        assert_eq!(nnp(&with(&["no-new-privileges:true"])), json!(true));
        assert_eq!(
            nnp(&with(&["label=disable", "apparmor=unconfined"])),
            json!(true)
        );
        for bad in [
            "bogus",
            "label=type:spc_t",
            "apparmor=docker-default",
            "no-new-privileges=maybe",
        ] {
            let e = build(&with(&[bad]), &inputs()).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn mounts_parse_as_docker_reads_them() {
        let v = |entry: &str, dest: &str, nocopy| MountArg::Volume {
            entry: entry.into(),
            dest: dest.into(),
            nocopy,
        };
        assert_eq!(
            parse_mount("type=volume,source=data,target=/d").unwrap(),
            v("data:/d", "/d", false)
        );
        assert_eq!(
            parse_mount("type=bind,src=/tmp,dst=/h,readonly").unwrap(),
            v("/tmp:/h:ro", "/h", false)
        );
        // No type is a volume; no source an anonymous one.
        assert_eq!(
            parse_mount("target=/d,ro=true,volume-nocopy").unwrap(),
            v(":/d:ro", "/d", true)
        );
        assert_eq!(
            parse_volume(":/d:ro").unwrap(),
            (String::new(), "/d".into(), true, true)
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap(),
            MountArg::Tmpfs("/t:size=64m,mode=1770".into())
        );
        for (bad, says) in [
            (
                "type=bind,source=/nonexistent-hako,target=/x",
                "does not exist",
            ),
            ("type=bind,source=rel,target=/x", "absolute source"),
            ("type=volume,source=../x,target=/x", "not a volume name"),
            ("type=volume,source=/abs,target=/x", "type=bind"),
            ("type=nfs,target=/x", "bind, volume or tmpfs"),
            ("type=volume,source=v", "target= is required"),
            ("type=volume,target=x", "absolute"),
            ("type=tmpfs,source=a,target=/t", "no source"),
            (
                "type=bind,source=/tmp,target=/x,bind-propagation=shared",
                "private",
            ),
            ("type=volume,target=/x,readonly=maybe", "true or false"),
            ("type=volume,target=/x,colour=blue", "colour=blue"),
        ] {
            let e = parse_mount(bad).unwrap_err().to_string();
            assert!(e.starts_with("--mount ") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn volume_options_are_checked() {
        assert!(parse_volume("/a:/b:ro,z").unwrap().2);
        assert!(!parse_volume("vol:/b:rw").unwrap().2);
        let e = parse_volume("/a:/b:bogus").unwrap_err().to_string();
        assert!(e.contains("unknown option \"bogus\""), "{e}");
    }

    #[test]
    fn tiny_memory_limits_and_missing_commands_are_refused() {
        let mut o = RunOptions::default();
        o.limits.memory = Some("1k".into());
        let e = build(&o, &inputs()).unwrap_err().to_string();
        assert!(e.contains("minimum memory limit is 6MB"), "{e}");
        let mut o = RunOptions::default();
        o.limits.memory = Some("6m".into());
        assert!(build(&o, &inputs()).is_ok());
        let mut i = inputs();
        i.image_config = json!({});
        let e = build(&RunOptions::default(), &i).unwrap_err().to_string();
        assert!(e.contains("no command specified"), "{e}");
    }

    #[test]
    fn the_cgroup_follows_the_manager_and_rootless_limits_need_systemd() {
        use crate::config::CgroupManager::*;
        let mut o = RunOptions::default();
        o.limits.memory = Some("64m".into());
        o.limits.pids_limit = Some(20);
        let case = |m, rootless| {
            let mut i = inputs();
            i.cgroup_manager = m;
            i.rootless = rootless;
            built(&o, &i)["linux"].clone()
        };
        let l = case(Cgroupfs, false);
        assert_eq!(l["cgroupsPath"], "/hako/abc");
        assert_eq!(l["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(l["resources"]["devices"][0]["allow"], false);
        let l = case(Systemd, false);
        assert_eq!(l["cgroupsPath"], "machine.slice:hako:abc");
        assert_eq!(l["resources"]["pids"]["limit"], 20);
        assert_eq!(l["resources"]["devices"][0]["allow"], false);
        // Rootless: limits through the user's systemd, no device rules.
        let l = case(Systemd, true);
        assert_eq!(l["cgroupsPath"], "user.slice:hako:abc");
        assert_eq!(l["resources"]["memory"]["limit"], 64 << 20);
        assert!(l["resources"]["devices"].is_null(), "{l}");
        // Rootless without systemd: no cgroup at all.
        let l = case(Cgroupfs, true);
        assert!(
            l["cgroupsPath"].is_null() && l["resources"].is_null(),
            "{l}"
        );
        // --cgroup-parent: a path for cgroupfs, a slice for systemd.
        let parent = |p: &str, m, rootless| {
            let o = RunOptions {
                cgroup_parent: Some(p.into()),
                ..Default::default()
            };
            let mut i = inputs();
            i.cgroup_manager = m;
            i.rootless = rootless;
            build(&o, &i).map(|s| serde_json::to_value(s).unwrap()["linux"]["cgroupsPath"].clone())
        };
        for (p, m, rootless, want) in [
            ("/ci/jobs/", Cgroupfs, false, "/ci/jobs/abc"),
            ("ci//./jobs", Cgroupfs, false, "/ci/jobs/abc"),
            ("ci-jobs.slice", Systemd, false, "ci-jobs.slice:hako:abc"),
            ("mine.slice", Systemd, true, "mine.slice:hako:abc"),
        ] {
            assert_eq!(parent(p, m, rootless).unwrap(), want, "{p}");
        }
        for (p, m, rootless, why) in [
            ("/a/../../etc", Cgroupfs, false, "may not contain \"..\""),
            ("/ci/jobs", Systemd, false, "takes a slice"),
            ("a--b.slice", Systemd, false, "not a valid slice name"),
            ("/ci", Cgroupfs, true, "only through systemd"),
        ] {
            let e = parent(p, m, rootless).unwrap_err().to_string();
            assert!(e.contains("--cgroup-parent") && e.contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn a_volume_on_a_parent_is_mounted_before_what_is_inside() {
        let d = tempfile::tempdir().unwrap();
        for f in ["hosts", "resolv.conf", "hostname"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let mut i = inputs();
        i.ctr_dir = d.path().to_path_buf();
        i.volume_dirs = vec![("vol".into(), "/v/vol/_data".into())];
        let o = RunOptions {
            volumes: vec!["vol:/etc".into()],
            tmpfs: vec!["/etc/x/y".into()],
            ..Default::default()
        };
        let s = built(&o, &i);
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        let at = |d: &str| dests.iter().position(|x| *x == d).unwrap();
        assert!(at("/etc") < at("/etc/resolv.conf"), "{dests:?}");
        assert!(at("/etc/hosts") < at("/etc/x/y"), "{dests:?}");
        assert!(at("/sys/fs/cgroup") < at("/etc"), "{dests:?}");
    }

    #[test]
    fn privileged_gets_the_devices_it_is_given() {
        let mut i = inputs();
        i.devices = vec![oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/loop0")
            .typ(oci_spec::runtime::LinuxDeviceType::B)
            .major(7)
            .minor(0)
            .build()
            .unwrap()];
        let o = RunOptions {
            privileged: true,
            ..Default::default()
        };
        let s = built(&o, &i);
        assert_eq!(s["linux"]["devices"][0]["path"], "/dev/loop0");
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], true);
    }

    #[test]
    fn an_unknown_capability_names_the_flag() {
        let o = RunOptions {
            cap_add: vec!["BOGUS".into()],
            ..Default::default()
        };
        let e = build(&o, &inputs()).unwrap_err().to_string();
        assert_eq!(e, "--cap-add/--cap-drop: unknown capability \"CAP_BOGUS\"");
    }

    /// Every kind of run the engine knows builds a config.json that the
    /// runtime's planner accepts (the checks the runtime would make at
    /// create, here without root).
    #[test]
    fn every_kind_of_spec_plans() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = RunOptions {
            image: "img".into(),
            ..Default::default()
        };
        let mut kinds: Vec<(&str, RunOptions, Inputs)> = Vec::new();
        let mut add = |what: &'static str, f: &dyn Fn(&mut RunOptions, &mut Inputs)| {
            let (mut o, mut i) = (base.clone(), inputs());
            f(&mut o, &mut i);
            kinds.push((what, o, i));
        };
        add("default", &|_, _| {});
        add("network none", &|o, _| o.network = Some("none".into()));
        add("network host", &|o, i| {
            o.network = Some("host".into());
            i.host_network = true;
        });
        add("join a netns", &|_, i| {
            i.joins = vec![("network".into(), "/proc/1/ns/net".into())]
        });
        add("privileged", &|o, _| o.privileged = true);
        add("user", &|o, i| {
            o.user = Some("1000:1000".into());
            i.user = Some(resolve_user("", "", "1000:1000").unwrap());
        });
        add("read-only", &|o, _| o.read_only = true);
        add("caps", &|o, _| {
            o.cap_add = s(&["NET_ADMIN", "CAP_SYS_TIME"]);
            o.cap_drop = s(&["CHOWN", "ALL"]);
        });
        add("volumes and tmpfs", &|o, i| {
            o.volumes = s(&["/host/dir:/data:ro", "vol:/v"]);
            o.tmpfs = s(&["/scratch"]);
            i.volume_dirs = vec![("vol".into(), "/var/lib/hako/volumes/vol/_data".into())];
        });
        add("limits", &|o, _| {
            o.limits.memory = Some("64m".into());
            o.limits.cpus = Some(1.5);
            o.limits.pids_limit = Some(100);
        });
        add("env, workdir, entrypoint, tty", &|o, _| {
            o.env = s(&["X=1"]);
            o.workdir = Some("/tmp".into());
            o.entrypoint = Some("/bin/sh".into());
            o.cmd = s(&["-c", "true"]);
            o.tty = true;
            o.interactive = true;
        });
        add("seccomp", &|_, i| i.seccomp_supported = true);
        add("no-new-privileges off", &|o, _| {
            o.security_opt = s(&["no-new-privileges=false"])
        });
        add("pid/ipc/uts host", &|o, _| {
            o.pid = Some("host".into());
            o.ipc = Some("host".into());
            o.uts = Some("host".into());
        });
        add("time offset", &|o, _| o.time_offset = Some("3600".into()));
        add("rootless", &|o, i| {
            i.rootless = true;
            i.uid = 1000;
            i.gid = 1000;
            o.network = Some("host".into());
            i.host_network = true;
        });
        add("userns", &|o, _| o.userns = Some("auto".into()));
        // The planner checks that the root exists.
        let root = tempfile::tempdir().unwrap();
        for (what, o, mut i) in kinds {
            i.rootfs = root.path().to_path_buf();
            let spec = match build(&o, &i) {
                Ok(v) => v,
                // A combination the engine refuses up front is fine too,
                // but it must say so, not build a broken spec.
                Err(e) => panic!("{what}: the engine refused it: {e}"),
            };
            let v = serde_json::to_value(&spec).unwrap();
            hako_runtime::Plan::from_spec(&spec, std::path::Path::new("/bundle"))
                .unwrap_or_else(|e| panic!("{what}: the runtime would refuse it: {e}\n{v:#}"));
        }
    }

    #[test]
    fn volume_names_cannot_leave_the_volumes_dir() {
        for bad in [
            "../../x:/data",
            "..:/x",
            ".:/x",
            "a/b:/x",
            "-v:/x",
            "a b:/x",
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains("is not a volume name"), "{bad}: {e}");
        }
        let (src, dst, ro, named) = parse_volume("my_vol-1.2:/data:ro").unwrap();
        assert_eq!(
            (src.as_str(), dst.as_str(), ro, named),
            ("my_vol-1.2", "/data", true, true)
        );
        let (src, _, _, named) = parse_volume("/host/dir:/data").unwrap();
        assert_eq!((src.as_str(), named), ("/host/dir", false));
    }

    #[test]
    fn image_defaults_and_flags() {
        let mut o = RunOptions::default();
        let s = built(&o, &inputs());
        assert_eq!(s["process"]["args"], json!(["echo", "hi"]));
        assert_eq!(s["process"]["cwd"], "/w");
        let env = strs(&s["process"]["env"]);
        assert!(env.contains(&"PATH=/x".to_string()) && env.contains(&"A=1".to_string()));
        o.cmd = vec!["sh".into()];
        o.env = vec!["A=2".into()];
        o.limits.memory = Some("64m".into());
        o.limits.pids_limit = Some(20);
        o.read_only = true;
        o.pid = Some("host".into());
        let s = built(&o, &inputs());
        assert_eq!(s["process"]["args"], json!(["sh"]));
        assert!(strs(&s["process"]["env"]).contains(&"A=2".to_string()));
        assert!(!strs(&s["process"]["env"]).contains(&"A=1".to_string()));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(s["root"]["readonly"], true);
        assert!(!s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "pid"));
    }

    #[test]
    fn caps_and_privileged() {
        let mut o = RunOptions {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_KILL".into()],
            ..Default::default()
        };
        let c = capabilities(&o);
        assert!(c.contains(&"CAP_SYS_ADMIN".into()) && !c.contains(&"CAP_KILL".into()));
        o.privileged = true;
        let s = built(&o, &inputs());
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        assert!(capabilities(&o).len() > 30);
    }

    #[test]
    fn volumes_and_time() {
        assert_eq!(
            parse_volume("/a:/b:ro").unwrap(),
            ("/a".into(), "/b".into(), true, false)
        );
        assert!(parse_volume("data:/d").unwrap().3);
        assert!(parse_volume("/a:b").is_err());
        assert_eq!(parse_time_offset("86400").unwrap(), (86400, 86400));
        assert_eq!(parse_time_offset("boottime=5").unwrap(), (0, 5));
        let o = RunOptions {
            time_offset: Some("100".into()),
            userns: Some("auto".into()),
            ..Default::default()
        };
        let mut i = inputs();
        // The ids `auto` chose at create.
        i.idmap = Some(hako_image::idmap::IdMap {
            uid: 300_000,
            gid: 400_000,
            size: 1024,
        });
        let s = built(&o, &i);
        assert_eq!(s["linux"]["timeOffsets"]["boottime"]["secs"], 100);
        assert_eq!(s["linux"]["uidMappings"][0]["hostID"], 300_000);
        assert_eq!(s["linux"]["gidMappings"][0]["hostID"], 400_000);
        assert_eq!(s["linux"]["uidMappings"][0]["size"], 1024);
    }

    #[test]
    fn init_prefix() {
        let mut i = inputs();
        i.init = Some(InitHelper {
            exe: "/usr/bin/hako".into(),
            loader: "/lib64/ld-linux-x86-64.so.2".into(),
            libdir: "/lib/x86_64-linux-gnu".into(),
        });
        let s = built(&RunOptions::default(), &i);
        let a = strs(&s["process"]["args"]);
        assert_eq!(a[0], "/.hako/ld.so");
        assert_eq!(&a[a.len() - 3..], ["--", "echo", "hi"]);
    }
}
