//! Which cgroup hierarchies are mounted where, read from
//! `/proc/self/mountinfo`, and which cgroup this process is in, read from
//! `/proc/self/cgroup`. Both paths are injectable ([`ProcFiles`]) so tests can
//! describe a fake host.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// v1 controllers we know how to manage or at least create a directory in.
/// Named hierarchies (`name=systemd`) are not controllers and are skipped.
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: line {line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no cgroup or cgroup2 filesystem is mounted (according to {})", path.display())]
    NoCgroupMounts { path: PathBuf },
}

/// Where the cgroup hierarchies of this host are mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Layout {
    /// Pure cgroup2: every controller lives on one hierarchy at `root`.
    V2 { root: PathBuf },
    /// cgroup v1 only: controller name -> mountpoint of its hierarchy.
    V1 {
        controllers: BTreeMap<String, PathBuf>,
    },
    /// v1 controllers plus a cgroup2 hierarchy at `unified` that holds
    /// `unified_controllers` (the controllers not bound to v1).
    Hybrid {
        controllers: BTreeMap<String, PathBuf>,
        unified: PathBuf,
        unified_controllers: Vec<String>,
    },
}

/// The /proc files layout detection reads.
#[derive(Clone, Debug)]
pub struct ProcFiles {
    pub mountinfo: PathBuf,
    pub cgroup: PathBuf,
}

impl Default for ProcFiles {
    fn default() -> Self {
        ProcFiles {
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            cgroup: PathBuf::from("/proc/self/cgroup"),
        }
    }
}

/// The detected layout plus this process's own cgroup in each hierarchy
/// (needed to resolve relative `cgroupsPath`s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub layout: Layout,
    /// Key: v1 controller name, or `""` for the cgroup2 hierarchy. Value: the
    /// cgroup path relative to that hierarchy's mountpoint (starts with `/`).
    pub own: BTreeMap<String, PathBuf>,
}

impl Host {
    /// Detects the layout of the running host.
    pub fn detect() -> Result<Host, LayoutError> {
        Host::detect_from(&ProcFiles::default())
    }

    pub fn detect_from(files: &ProcFiles) -> Result<Host, LayoutError> {
        let own_raw = parse_proc_cgroup(&files.cgroup, &read(&files.cgroup)?)?;
        let mounts = cgroup_mounts(&files.mountinfo, &own_raw)?;

        // One mount per hierarchy (its first), and a controller is in one
        // hierarchy at most: nothing here is seen twice.
        let mut v1: BTreeMap<String, Mount> = BTreeMap::new();
        let mut unified: Option<Mount> = None;
        for m in mounts {
            if m.fstype == "cgroup2" {
                unified = Some(m);
            } else {
                for opt in m.super_opts.split(',') {
                    if V1_CONTROLLERS.contains(&opt) {
                        v1.insert(opt.to_string(), m.clone());
                    }
                }
            }
        }

        let mut own = BTreeMap::new();
        for (ctl, m) in &v1 {
            if let Some(p) = own_raw.get(ctl.as_str()) {
                own.insert(ctl.clone(), strip_mount_root(p, &m.root));
            }
        }
        if let (Some(m), Some(p)) = (&unified, own_raw.get("")) {
            own.insert(String::new(), strip_mount_root(p, &m.root));
        }

        let controllers: BTreeMap<String, PathBuf> =
            v1.into_iter().map(|(k, m)| (k, m.mountpoint)).collect();
        let layout = match (controllers.is_empty(), unified) {
            (true, None) => {
                return Err(LayoutError::NoCgroupMounts {
                    path: files.mountinfo.clone(),
                })
            }
            (true, Some(u)) => Layout::V2 { root: u.mountpoint },
            (false, None) => Layout::V1 { controllers },
            (false, Some(u)) => {
                let cpath = u.mountpoint.join("cgroup.controllers");
                let unified_controllers = read(&cpath)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                Layout::Hybrid {
                    controllers,
                    unified: u.mountpoint,
                    unified_controllers,
                }
            }
        };
        Ok(Host { layout, own })
    }
}

fn read(path: &Path) -> Result<String, LayoutError> {
    crate::fs::read_kernel_file(path).map_err(|source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Inside a container without a cgroup namespace the hierarchy is bind
/// mounted from a sub-cgroup (mountinfo root `/docker/x`) while
/// /proc/self/cgroup still shows the full path: make it mount-relative.
fn strip_mount_root(p: &Path, root: &Path) -> PathBuf {
    match p.strip_prefix(root) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => p.to_path_buf(),
    }
}

#[derive(Clone, Debug)]
struct Mount {
    root: PathBuf,
    mountpoint: PathBuf,
    fstype: String,
    super_opts: String,
}

impl Mount {
    /// Whether this mount is of the hierarchy that /proc/PID/cgroup names
    /// by `key` (a controller, `name=…`, or `""` for cgroup2).
    fn holds(&self, key: &str) -> bool {
        if key.is_empty() {
            self.fstype == "cgroup2"
        } else {
            self.fstype == "cgroup" && self.super_opts.split(',').any(|o| o == key)
        }
    }

    /// What tells hierarchies apart: `""` for cgroup2, else the controllers
    /// and name it was mounted with ("cpu,cpuacct", "name=systemd"), which
    /// is also the data to mount it again with.
    fn hierarchy(&self) -> String {
        if self.fstype == "cgroup2" {
            return String::new();
        }
        self.super_opts
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro" | "noprefix")
                    && !o.starts_with("release_agent")
                    && !o.starts_with("clone_children")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One cgroup hierarchy mounted in this process's mount namespace, as the
/// runtime needs it to give a container its /sys/fs/cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// cgroup2 (else a v1 hierarchy).
    pub v2: bool,
    /// v1: the controllers and name the hierarchy was mounted with
    /// ("cpu,cpuacct", "name=systemd"), the data for mounting it again;
    /// empty for cgroup2.
    pub subsys: String,
    /// This process's cgroup in it, relative to the mountpoint ("/..." ).
    pub own: PathBuf,
}

/// Whether /sys/fs/cgroup is itself a cgroup2 mount, as on a cgroup2-only
/// host ([`Layout::V2`]): one statfs (runc's test), for callers that must
/// decide before they read the whole layout with [`Host::detect`].
pub fn unified_only() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Every cgroup hierarchy mounted in this mount namespace, at its first
/// mount, in mount order (empty when /proc cannot be read).
pub fn hierarchies() -> Vec<Hierarchy> {
    hierarchies_from(&ProcFiles::default()).unwrap_or_default()
}

pub fn hierarchies_from(files: &ProcFiles) -> Result<Vec<Hierarchy>, LayoutError> {
    let own = parse_proc_cgroup(&files.cgroup, &read(&files.cgroup)?)?;
    Ok(cgroup_mounts(&files.mountinfo, &own)?
        .into_iter()
        .map(|m| {
            let v2 = m.fstype == "cgroup2";
            let subsys = m.hierarchy();
            let key = if v2 {
                ""
            } else {
                subsys.split(',').next().unwrap_or("")
            };
            let own = own
                .get(key)
                .map(|p| strip_mount_root(p, &m.root))
                .unwrap_or_else(|| PathBuf::from("/"));
            Hierarchy {
                mountpoint: m.mountpoint,
                v2,
                subsys,
                own,
            }
        })
        .collect())
}

/// The first mount of each cgroup hierarchy in the mountinfo file `path`,
/// in mount order (later ones are usually bind mounts of the same
/// hierarchy, e.g. inside containers). `own` is /proc/PID/cgroup ([`parse_proc_cgroup`]): it
/// names every hierarchy there is, so reading stops once each has been
/// seen. That keeps the cost flat: the hierarchies are mounted at boot,
/// while the file grows by ~500 bytes per running container's rootfs and
/// the kernel formats only what is read (with 200 overlays the whole file
/// is ~100 KB and 0.4 ms). A hierarchy that is not mounted here means
/// reading to the end.
fn cgroup_mounts(path: &Path, own: &BTreeMap<String, PathBuf>) -> Result<Vec<Mount>, LayoutError> {
    use std::io::Read as _;
    let read_err = |source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let mut missing: Vec<&str> = own.keys().map(String::as_str).collect();
    let mut out: Vec<Mount> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut pending: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 4096];
    let mut lineno = 0;
    let mut eof = false;
    while !eof && (!missing.is_empty() || own.is_empty()) {
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        eof = n == 0;
        pending.extend_from_slice(&chunk[..n]);
        // Whole lines only, unless the file ended without a newline.
        let upto = if eof {
            pending.len()
        } else {
            match pending.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => continue,
            }
        };
        for line in pending[..upto].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            lineno += 1;
            let line = String::from_utf8_lossy(line);
            let Some(m) = parse_mount_line(path, lineno, &line)? else {
                continue;
            };
            let id = m.hierarchy();
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            missing.retain(|k| !m.holds(k));
            out.push(m);
        }
        pending.drain(..upto);
    }
    Ok(out)
}

/// One mountinfo line, if it is a cgroup or cgroup2 mount:
/// `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`
fn parse_mount_line(path: &Path, lineno: usize, line: &str) -> Result<Option<Mount>, LayoutError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let err = |reason: &str| LayoutError::Parse {
        path: path.to_path_buf(),
        line: lineno,
        reason: reason.to_string(),
    };
    let (pre, post) = line
        .split_once(" - ")
        .ok_or_else(|| err("missing ' - ' separator"))?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let post: Vec<&str> = post.split(' ').collect();
    if pre.len() < 6 || post.len() < 3 {
        return Err(err("too few fields"));
    }
    let fstype = post[0];
    if fstype != "cgroup" && fstype != "cgroup2" {
        return Ok(None);
    }
    Ok(Some(Mount {
        root: PathBuf::from(unescape(pre[3])),
        mountpoint: PathBuf::from(unescape(pre[4])),
        fstype: fstype.to_string(),
        super_opts: post[2].to_string(),
    }))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/cgroup (`hierarchy-id:controllers:path`) into
/// controller -> path, with `""` for the cgroup2 entry (`0::/path`).
fn parse_proc_cgroup(path: &Path, s: &str) -> Result<BTreeMap<String, PathBuf>, LayoutError> {
    let mut out = BTreeMap::new();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (_id, ctls, p) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => {
                return Err(LayoutError::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: "expected id:controllers:path".into(),
                })
            }
        };
        if ctls.is_empty() {
            out.insert(String::new(), PathBuf::from(p));
        } else {
            for c in ctls.split(',') {
                out.insert(c.to_string(), PathBuf::from(p));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / UNIFIED rw,relatime - cgroup2 cgroup2 rw
";

    fn write_proc(dir: &Path, mountinfo: &str, cgroup: &str) -> ProcFiles {
        std::fs::write(dir.join("mountinfo"), mountinfo).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        ProcFiles {
            mountinfo: dir.join("mountinfo"),
            cgroup: dir.join("cgroup"),
        }
    }

    #[test]
    fn hybrid_layout_and_own_cgroups() {
        let t = tempfile::tempdir().unwrap();
        let unified = t.path().join("unified");
        std::fs::create_dir(&unified).unwrap();
        std::fs::write(unified.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let mi = HYBRID.replace("UNIFIED", unified.to_str().unwrap());
        let files = write_proc(
            t.path(),
            &mi,
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n",
        );
        let host = Host::detect_from(&files).unwrap();
        let Layout::Hybrid {
            controllers,
            unified: u,
            unified_controllers,
        } = &host.layout
        else {
            panic!("expected hybrid, got {:?}", host.layout)
        };
        assert_eq!(controllers["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            controllers["cpuacct"],
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(controllers["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert!(!controllers.contains_key("name=systemd"));
        assert_eq!(u, &unified);
        assert_eq!(unified_controllers, &vec!["hugetlb".to_string()]);
        assert_eq!(host.own["memory"], Path::new("/process_api/abc"));
        assert_eq!(host.own[""], Path::new("/"));
    }

    #[test]
    fn v2_layout_with_bind_mounted_root() {
        let t = tempfile::tempdir().unwrap();
        let files = write_proc(
            t.path(),
            "50 40 0:26 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/docker/x/sub\n",
        );
        let host = Host::detect_from(&files).unwrap();
        assert_eq!(
            host.layout,
            Layout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(host.own[""], Path::new("/sub"));
    }

    #[test]
    fn v1_only_and_escapes() {
        let t = tempfile::tempdir().unwrap();
        let files = write_proc(
            t.path(),
            "35 31 0:32 / /cg\\040root/memory rw - cgroup cgroup rw,memory\n",
            "4:memory:/a\n",
        );
        let host = Host::detect_from(&files).unwrap();
        let Layout::V1 { controllers } = host.layout else {
            panic!()
        };
        assert_eq!(controllers["memory"], Path::new("/cg root/memory"));
    }

    #[test]
    fn hierarchies_for_the_runtime_mounts() {
        let t = tempfile::tempdir().unwrap();
        let mi = HYBRID.replace("UNIFIED", "/sys/fs/cgroup/unified");
        let files = write_proc(
            t.path(),
            &mi,
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/u\n",
        );
        let hs = hierarchies_from(&files).unwrap();
        let by = |mp: &str| hs.iter().find(|h| h.mountpoint == Path::new(mp)).unwrap();
        let mem = by("/sys/fs/cgroup/memory");
        assert!(!mem.v2);
        assert_eq!(mem.subsys, "memory");
        assert_eq!(mem.own, Path::new("/process_api/abc"));
        assert_eq!(by("/sys/fs/cgroup/unified").own, Path::new("/u"));
        assert!(by("/sys/fs/cgroup/unified").v2);
        // A bind-mounted cgroup2 root: paths relative to the mount.
        let files = write_proc(
            t.path(),
            "50 40 0:26 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/docker/x/sub\n",
        );
        let hs = hierarchies_from(&files).unwrap();
        assert_eq!(hs.len(), 1);
        assert_eq!((hs[0].v2, hs[0].own.as_path()), (true, Path::new("/sub")));
        assert_eq!(hs[0].subsys, "");
    }

    /// Many container rootfs mounts between the hierarchies: lines split
    /// across reads, a hierarchy mounted last, no final newline.
    fn overlays(n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "{} 23 0:{} / /var/lib/hako/image/containers/{i:064x}/merged rw - overlay overlay rw,lowerdir=/l/{i},upperdir=/u/{i},workdir=/w/{i}\n",
                    100 + i,
                    100 + i
                )
            })
            .collect()
    }

    #[test]
    fn hierarchies_are_found_wherever_they_are_mounted() {
        let t = tempfile::tempdir().unwrap();
        let mi = format!(
            "{}{}35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n{}\
             46 31 0:40 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb",
            "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
            overlays(30),
            overlays(30),
        );
        let files = write_proc(t.path(), &mi, "3:hugetlb:/\n2:memory:/m\n0::/u\n");
        let hs = hierarchies_from(&files).unwrap();
        let mps: Vec<_> = hs.iter().map(|h| h.mountpoint.to_str().unwrap()).collect();
        assert_eq!(
            mps,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/hugetlb"
            ]
        );
        assert_eq!(hs[1].own, Path::new("/m"));
    }

    /// Reading stops once every hierarchy of /proc/self/cgroup is seen:
    /// what follows is not read (here it would not even parse), and a
    /// hierarchy bound again later is reported at its first mount only.
    #[test]
    fn reading_stops_when_every_hierarchy_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let mi = format!(
            "{}{}{}",
            HYBRID.replace("UNIFIED", "/sys/fs/cgroup/unified"),
            overlays(50),
            "90 40 0:32 / /elsewhere/memory rw - cgroup cgroup rw,memory\nnot a mountinfo line\n",
        );
        let cgroup = "4:memory:/a\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";
        let files = write_proc(t.path(), &mi, cgroup);
        let hs = hierarchies_from(&files).unwrap();
        assert_eq!(hs.len(), 4, "{hs:?}");
        assert!(hs
            .iter()
            .all(|h| h.mountpoint.starts_with("/sys/fs/cgroup")));
        // A hierarchy that is mounted nowhere: the whole file is read.
        let files = write_proc(t.path(), &mi, &format!("9:pids:/\n{cgroup}"));
        let e = hierarchies_from(&files).unwrap_err();
        assert!(e.to_string().contains("line 57: missing"), "{e}");
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let files = write_proc(t.path(), "1 0 0:1 / / rw - ext4 /dev/sda rw\n", "0::/\n");
        let e = Host::detect_from(&files).unwrap_err();
        assert!(e.to_string().contains("no cgroup"), "{e}");
    }
}
