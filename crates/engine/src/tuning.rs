//! Run flags that tune the container's process and namespaces, checked as
//! Docker checks them: `--ulimit`, `--sysctl`, `--shm-size`,
//! `--oom-score-adj`, `--group-add` and `--label`/`--label-file`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::{Error, Result};

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// `--ulimit NAME=SOFT[:HARD]` (-1: unlimited), over the default
/// RLIMIT_NOFILE `nofile`.
pub fn rlimits(ulimits: &[String], nofile: (u64, u64)) -> Result<Vec<PosixRlimit>> {
    let mut out: Vec<(PosixRlimitType, u64, u64)> =
        vec![(PosixRlimitType::RlimitNofile, nofile.0, nofile.1)];
    for u in ulimits {
        let bad = |why: &str| usage(format!("--ulimit {u:?}: {why}"));
        let (name, vals) = u
            .split_once('=')
            .ok_or_else(|| bad("NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
        let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(format!(
            "RLIMIT_{}",
            name.to_ascii_uppercase()
        )))
        .map_err(|_| bad("unknown limit (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)"))?;
        let num = |v: &str| -> Result<u64> {
            match v {
                "-1" | "unlimited" => Ok(u64::MAX),
                _ => v.parse().map_err(|_| bad("the values are numbers, or -1")),
            }
        };
        let (soft, hard) = match vals.split_once(':') {
            Some((s, h)) => (num(s)?, num(h)?),
            None => (num(vals)?, num(vals)?),
        };
        if soft > hard {
            return Err(bad("the soft limit must not be above the hard limit"));
        }
        out.retain(|(t, ..)| *t != typ);
        out.push((typ, soft, hard));
    }
    out.into_iter()
        .map(|(typ, soft, hard)| {
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .map_err(|e| Error::Other(format!("rlimit: {e}")))
        })
        .collect()
}

/// Which namespaces the container has of its own (sysctls of a shared
/// one would change the host's).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnNamespaces {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// `--sysctl KEY=VALUE`: only the namespaced ones, and only when the
/// container has that namespace of its own (Docker's rule).
pub fn sysctls(list: &[String], own: OwnNamespaces) -> Result<HashMap<String, String>> {
    use hako_runtime::NsKind;
    let mut out = HashMap::new();
    for s in list {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| usage(format!("--sysctl {s:?}: KEY=VALUE")))?;
        let k = k.replace('/', ".");
        if k == "kernel.hostname" {
            return Err(usage(format!(
                "--sysctl {s:?}: set the host name with --hostname"
            )));
        }
        let (ok, ns) = match hako_runtime::sysctl_namespace(&k) {
            Some(NsKind::Network) => (own.net, "network"),
            Some(NsKind::Ipc) => (own.ipc, "IPC"),
            Some(NsKind::Uts) => (own.uts, "UTS"),
            _ => {
                return Err(usage(format!(
                    "--sysctl {s:?}: {k} is not namespaced, so setting it would change the host"
                )))
            }
        };
        if !ok {
            return Err(usage(format!(
                "--sysctl {s:?}: the container shares the host's {ns} namespace"
            )));
        }
        out.insert(k, v.to_string());
    }
    Ok(out)
}

/// `--shm-size` as the /dev/shm tmpfs's size option (default 64 MiB).
pub fn shm_size(v: Option<&str>) -> Result<String> {
    let Some(v) = v else {
        return Ok("size=65536k".into());
    };
    let n = crate::util::parse_bytes(v).map_err(|e| usage(format!("--shm-size {v}: {e}")))?;
    if n <= 0 {
        return Err(usage(format!("--shm-size {v}: must be more than 0")));
    }
    Ok(format!("size={n}"))
}

/// `--oom-score-adj`, -1000 to 1000.
pub fn oom_score_adj(v: Option<i32>) -> Result<Option<i32>> {
    match v {
        Some(n) if !(-1000..=1000).contains(&n) => Err(usage(format!(
            "--oom-score-adj {n}: the range is -1000 to 1000"
        ))),
        v => Ok(v),
    }
}

/// `--group-add` names or numbers, resolved in the image's /etc/group.
pub fn group_ids(group_file: &str, names: &[String]) -> Result<Vec<u32>> {
    names
        .iter()
        .map(|g| {
            g.parse::<u32>().or_else(|_| {
                group_file
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        usage(format!(
                            "--group-add {g}: unable to find group {g}: no matching entries in group file"
                        ))
                    })
            })
        })
        .collect()
}

/// `--label KEY=VALUE` (a bare KEY is an empty value) and the lines of
/// `--label-file`s, the later winning.
pub fn labels(labels: &[String], files: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut put = |l: &str, from: &str| -> Result<()> {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(usage(format!("{from} {l:?}: a label needs a key")));
        }
        out.insert(k.to_string(), v.to_string());
        Ok(())
    };
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| usage(format!("--label-file {}: {e}", f.display())))?;
        for l in text.lines().map(str::trim) {
            if !l.is_empty() && !l.starts_with('#') {
                put(l, "--label-file")?;
            }
        }
    }
    for l in labels {
        put(l, "--label")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_and_override_the_default() {
        let r = rlimits(
            &["nofile=100:200".into(), "nproc=50".into(), "core=-1".into()],
            (1024, 1024),
        )
        .unwrap();
        let get = |t| {
            r.iter()
                .find(|x| x.typ() == t)
                .map(|x| (x.soft(), x.hard()))
        };
        assert_eq!(get(PosixRlimitType::RlimitNofile), Some((100, 200)));
        assert_eq!(get(PosixRlimitType::RlimitNproc), Some((50, 50)));
        assert_eq!(get(PosixRlimitType::RlimitCore), Some((u64::MAX, u64::MAX)));
        assert_eq!(r.len(), 3);
        for (bad, says) in [
            ("nofile", "NAME=SOFT"),
            ("files=1", "unknown limit"),
            ("nofile=a", "numbers"),
            ("nofile=10:5", "soft limit"),
        ] {
            let e = rlimits(&[bad.into()], (1, 1)).unwrap_err().to_string();
            assert!(e.starts_with("--ulimit") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn only_namespaced_sysctls_of_own_namespaces() {
        let own = OwnNamespaces {
            net: true,
            ipc: true,
            uts: true,
        };
        let m = sysctls(
            &[
                "net.ipv4.ip_forward=1".into(),
                "kernel.shmmax=100".into(),
                "fs/mqueue/msg_max=20".into(),
            ],
            own,
        )
        .unwrap();
        assert_eq!(m["net.ipv4.ip_forward"], "1");
        assert_eq!(m["fs.mqueue.msg_max"], "20");
        let e = sysctls(&["vm.swappiness=1".into()], own)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not namespaced"), "{e}");
        let e = sysctls(&["kernel.hostname=x".into()], own)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--hostname"), "{e}");
        let host_net = OwnNamespaces { net: false, ..own };
        let e = sysctls(&["net.ipv4.ip_forward=1".into()], host_net)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host's network namespace"), "{e}");
        assert!(sysctls(&["net.x".into()], own).is_err());
    }

    #[test]
    fn shm_oom_groups_and_labels() {
        assert_eq!(shm_size(None).unwrap(), "size=65536k");
        assert_eq!(shm_size(Some("1m")).unwrap(), "size=1048576");
        assert!(shm_size(Some("0")).is_err());
        assert_eq!(oom_score_adj(Some(-1000)).unwrap(), Some(-1000));
        assert!(oom_score_adj(Some(1001))
            .unwrap_err()
            .to_string()
            .contains("-1000 to 1000"));
        let g = "root:x:0:\naudio:x:29:\nstaff:x:50:\n";
        assert_eq!(
            group_ids(g, &["audio".into(), "1234".into()]).unwrap(),
            [29, 1234]
        );
        assert!(group_ids(g, &["nope".into()])
            .unwrap_err()
            .to_string()
            .contains("unable to find group nope"));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("l");
        std::fs::write(&f, "# comment\na=1\nb=file\n").unwrap();
        let l = labels(&["b=flag".into(), "c".into()], &[f]).unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "flag");
        assert_eq!(l["c"], "");
        assert!(labels(&["=x".into()], &[]).is_err());
    }
}
