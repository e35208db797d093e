//! The resource flags (`--memory`, `--cpus`, `--cpu-shares`, …, see
//! [`Limits`]) as OCI `linux.resources`, checked as Docker checks them, for
//! `run`/`create` and `update`; and how an update's values join the stored
//! ones.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};

use crate::record::Limits;
use crate::{Error, Result};

/// Docker's floor: below it the container cannot even start (the
/// runtime's init is killed before it reports).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

fn bytes(flag: &str, v: &str) -> Result<i64> {
    crate::util::parse_bytes(v).map_err(|e| usage(format!("{flag} {v}: {e}")))
}

/// A cpuset list: `0-2,4`.
fn cpuset(flag: &str, v: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.split(',').all(|r| {
            let mut ends = r.splitn(2, '-').map(|n| n.parse::<u32>());
            match (ends.next(), ends.next()) {
                (Some(Ok(a)), Some(Ok(b))) => a <= b,
                (Some(Ok(_)), None) => true,
                _ => false,
            }
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err(usage(format!(
            "{flag} {v:?}: a list of numbers and ranges, e.g. 0-2,4"
        )))
    }
}

/// `l` as OCI resources; what is unset stays unset.
pub fn to_resources(l: &Limits) -> Result<LinuxResources> {
    let mut res = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    let limit = l
        .memory
        .as_deref()
        .map(|m| bytes("--memory", m))
        .transpose()?;
    if let (Some(limit), Some(m)) = (limit, &l.memory) {
        if limit < MIN_MEMORY {
            return Err(usage(format!(
                "--memory {m}: the minimum memory limit is 6MB"
            )));
        }
        mem.set_limit(Some(limit));
        any_mem = true;
    }
    if let Some(s) = &l.memory_swap {
        let swap = if s == "-1" {
            -1
        } else {
            bytes("--memory-swap", s)?
        };
        match limit {
            None => {
                return Err(usage(
                    "--memory-swap: set --memory too (the swap limit counts memory and swap)"
                        .into(),
                ))
            }
            Some(m) if swap != -1 && swap < m => {
                return Err(usage(format!(
                    "--memory-swap {s}: must be at least --memory (it counts memory and swap)"
                )))
            }
            _ => {}
        }
        mem.set_swap(Some(swap));
        any_mem = true;
    }
    if let Some(r) = &l.memory_reservation {
        let r_bytes = bytes("--memory-reservation", r)?;
        if limit.is_some_and(|m| r_bytes > m) {
            return Err(usage(format!(
                "--memory-reservation {r}: must be below --memory"
            )));
        }
        mem.set_reservation(Some(r_bytes));
        any_mem = true;
    }
    if any_mem {
        res.set_memory(Some(mem));
    }

    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if let Some(c) = l.cpus {
        if c.is_nan() || c <= 0.0 {
            return Err(usage("--cpus must be positive".into()));
        }
        cpu.set_quota(Some((c * 100_000.0) as i64))
            .set_period(Some(100_000));
        any_cpu = true;
    }
    if l.cpus.is_some() && (l.cpu_quota.is_some() || l.cpu_period.is_some()) {
        return Err(usage(
            "--cpus and --cpu-quota/--cpu-period cannot both be set (as Docker)".into(),
        ));
    }
    // 0 is "unset", as in Docker (and runc).
    if let Some(q) = l.cpu_quota.filter(|q| *q != 0) {
        if q != -1 && q < 1000 {
            return Err(usage(format!(
                "--cpu-quota {q}: at least 1000 (microseconds), or -1"
            )));
        }
        cpu.set_quota(Some(q));
        any_cpu = true;
    }
    if let Some(p) = l.cpu_period.filter(|p| *p > 0) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(usage(format!(
                "--cpu-period {p}: the range is 1000 to 1000000 (microseconds)"
            )));
        }
        cpu.set_period(Some(p));
        any_cpu = true;
    }
    if let Some(s) = l.cpu_shares.filter(|s| *s > 0) {
        if s < 2 {
            return Err(usage(format!("--cpu-shares {s}: the minimum is 2")));
        }
        cpu.set_shares(Some(s));
        any_cpu = true;
    }
    if let Some(c) = &l.cpuset_cpus {
        cpu.set_cpus(Some(cpuset("--cpuset-cpus", c)?));
        any_cpu = true;
    }
    if let Some(m) = &l.cpuset_mems {
        cpu.set_mems(Some(cpuset("--cpuset-mems", m)?));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }
    if let Some(w) = l.blkio_weight.filter(|w| *w > 0) {
        if !(10..=1000).contains(&w) {
            return Err(usage(format!(
                "--blkio-weight {w}: the range is 10 to 1000"
            )));
        }
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    if let Some(p) = l.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    Ok(res)
}

/// `--memory-swappiness` and `--oom-kill-disable` (run/create only; the
/// runtime applies them on cgroup v1, where they exist).
pub fn memory_behaviour(o: &crate::record::RunOptions, res: &mut LinuxResources) -> Result<()> {
    let swappiness = match o.memory_swappiness {
        None | Some(-1) => None,
        Some(s @ 0..=100) => Some(s as u64),
        Some(s) => {
            return Err(usage(format!(
                "--memory-swappiness {s}: the range is 0 to 100 (-1: the host's)"
            )))
        }
    };
    if swappiness.is_none() && !o.oom_kill_disable {
        return Ok(());
    }
    let mut m = res.memory().unwrap_or_default();
    m.set_swappiness(swappiness);
    if o.oom_kill_disable {
        m.set_disable_oom_killer(Some(true));
    }
    res.set_memory(Some(m));
    Ok(())
}

/// DEVICE:VALUE of a per-device flag: the block device's numbers, and
/// the value.
fn per_device<'a>(flag: &str, v: &'a str) -> Result<(i64, i64, &'a str)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (path, value) = v
        .rsplit_once(':')
        .filter(|(p, val)| p.starts_with('/') && !val.is_empty())
        .ok_or_else(|| {
            usage(format!(
                "{flag} {v}: DEVICE:VALUE, the device an absolute path"
            ))
        })?;
    let md = std::fs::metadata(path).map_err(|e| usage(format!("{flag} {v}: {path}: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(usage(format!("{flag} {v}: {path} is not a block device")));
    }
    let rdev = md.rdev();
    Ok((libc::major(rdev) as i64, libc::minor(rdev) as i64, value))
}

/// The per-device IO flags (`--device-read-bps`, `--device-write-iops`,
/// `--blkio-weight-device`, ...; run/create only), as the block IO
/// resources' device lists.
pub fn device_io(o: &crate::record::RunOptions, res: &mut LinuxResources) -> Result<()> {
    let throttles =
        |flag: &str, list: &[String], bytes: bool| -> Result<Vec<LinuxThrottleDevice>> {
            list.iter()
                .map(|v| {
                    let (major, minor, value) = per_device(flag, v)?;
                    let rate = if bytes {
                        crate::util::parse_bytes(value)
                            .ok()
                            .and_then(|b| u64::try_from(b).ok())
                    } else {
                        value.parse().ok()
                    }
                    .ok_or_else(|| usage(format!("{flag} {v}: {value:?} is not a rate")))?;
                    Ok(LinuxThrottleDeviceBuilder::default()
                        .major(major)
                        .minor(minor)
                        .rate(rate)
                        .build()
                        .expect("every field is set"))
                })
                .collect()
        };
    let lists = [
        throttles("--device-read-bps", &o.device_read_bps, true)?,
        throttles("--device-write-bps", &o.device_write_bps, true)?,
        throttles("--device-read-iops", &o.device_read_iops, false)?,
        throttles("--device-write-iops", &o.device_write_iops, false)?,
    ];
    let weights = o
        .blkio_weight_device
        .iter()
        .map(|v| {
            let (major, minor, value) = per_device("--blkio-weight-device", v)?;
            let w = value
                .parse::<u16>()
                .ok()
                .filter(|w| (10..=1000).contains(w))
                .ok_or_else(|| {
                    usage(format!(
                        "--blkio-weight-device {v}: the weight is 10 to 1000"
                    ))
                })?;
            Ok(LinuxWeightDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .weight(w)
                .build()
                .expect("every field is set"))
        })
        .collect::<Result<Vec<_>>>()?;
    if weights.is_empty() && lists.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let some = |l: Vec<LinuxThrottleDevice>| (!l.is_empty()).then_some(l);
    let [rb, wb, ri, wi] = lists;
    let mut b = res.block_io().clone().unwrap_or_default();
    b.set_throttle_read_bps_device(some(rb))
        .set_throttle_write_bps_device(some(wb))
        .set_throttle_read_iops_device(some(ri))
        .set_throttle_write_iops_device(some(wi))
        .set_weight_device((!weights.is_empty()).then_some(weights));
    res.set_block_io(Some(b));
    Ok(())
}

/// Docker's warnings for what `o` asks that this host will not do.
pub fn warnings(o: &crate::record::RunOptions, unified: bool) -> Vec<String> {
    let mut w = Vec::new();
    if unified && o.memory_swappiness.is_some_and(|s| s != -1) {
        w.push("--memory-swappiness is discarded: cgroup v2 has no per-cgroup swappiness".into());
    }
    if unified && o.oom_kill_disable {
        w.push("--oom-kill-disable is discarded: cgroup v2 cannot turn the OOM killer off".into());
    } else if o.oom_kill_disable && o.limits.memory.is_none() {
        w.push(
            "disabling the OOM killer without a --memory limit may be dangerous: the host's \
             OOM killer then ends other processes instead"
                .into(),
        );
    }
    w
}

/// `new`'s set fields over `base`, field by field (an update of the
/// memory limit keeps the stored reservation).
pub fn merge(base: &mut LinuxResources, new: &LinuxResources) {
    if let Some(n) = new.memory() {
        let mut m = base.memory().unwrap_or_default();
        if n.limit().is_some() {
            m.set_limit(n.limit());
        }
        if n.swap().is_some() {
            m.set_swap(n.swap());
        }
        if n.reservation().is_some() {
            m.set_reservation(n.reservation());
        }
        base.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c = base.cpu().clone().unwrap_or_default();
        if n.quota().is_some() {
            c.set_quota(n.quota());
        }
        if n.period().is_some() {
            c.set_period(n.period());
        }
        if n.shares().is_some() {
            c.set_shares(n.shares());
        }
        if n.cpus().is_some() {
            c.set_cpus(n.cpus().clone());
        }
        if n.mems().is_some() {
            c.set_mems(n.mems().clone());
        }
        base.set_cpu(Some(c));
    }
    if new.block_io().is_some() {
        base.set_block_io(new.block_io().clone());
    }
    if new.pids().is_some() {
        base.set_pids(*new.pids());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l() -> Limits {
        Limits::default()
    }

    #[test]
    fn swappiness_and_the_oom_killer_as_docker() {
        use crate::record::RunOptions;
        let with = |swappiness, oom_kill_disable, memory: Option<&str>| RunOptions {
            memory_swappiness: swappiness,
            oom_kill_disable,
            limits: Limits {
                memory: memory.map(Into::into),
                ..l()
            },
            ..Default::default()
        };
        let mut res = to_resources(&with(None, false, Some("64m")).limits).unwrap();
        memory_behaviour(&with(Some(10), true, Some("64m")), &mut res).unwrap();
        let m = res.memory().unwrap();
        assert_eq!(
            (m.limit(), m.swappiness(), m.disable_oom_killer()),
            (Some(64 << 20), Some(10), Some(true))
        );
        // -1 is the host's: nothing set.
        let mut res = LinuxResources::default();
        memory_behaviour(&with(Some(-1), false, None), &mut res).unwrap();
        assert!(res.memory().is_none());
        let e = memory_behaviour(&with(Some(101), false, None), &mut res).unwrap_err();
        assert!(
            e.to_string()
                .contains("--memory-swappiness 101: the range is 0 to 100"),
            "{e}"
        );
        // Warnings: discarded on cgroup v2, dangerous without --memory.
        assert_eq!(
            warnings(&with(Some(10), true, Some("64m")), false),
            Vec::<String>::new()
        );
        let w = warnings(&with(Some(10), true, Some("64m")), true);
        assert!(
            w.len() == 2 && w[0].contains("--memory-swappiness is discarded"),
            "{w:?}"
        );
        assert!(w[1].contains("--oom-kill-disable is discarded"), "{w:?}");
        let w = warnings(&with(None, true, None), false);
        assert!(
            w.len() == 1 && w[0].contains("without a --memory limit"),
            "{w:?}"
        );
    }

    #[test]
    fn per_device_flags_name_what_is_wrong() {
        use crate::record::RunOptions;
        let mut res = LinuxResources::default();
        // Nothing asked: nothing set.
        device_io(&RunOptions::default(), &mut res).unwrap();
        assert!(res.block_io().is_none());
        for (o, says) in [
            (
                RunOptions {
                    device_read_bps: vec!["/dev/null:1mb".into()],
                    ..Default::default()
                },
                "--device-read-bps /dev/null:1mb: /dev/null is not a block device",
            ),
            (
                RunOptions {
                    device_write_iops: vec!["sda:100".into()],
                    ..Default::default()
                },
                "DEVICE:VALUE, the device an absolute path",
            ),
            (
                RunOptions {
                    device_read_iops: vec!["/dev/nonexistent-hako:1".into()],
                    ..Default::default()
                },
                "/dev/nonexistent-hako: No such file",
            ),
        ] {
            let e = device_io(&o, &mut res).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn every_flag_becomes_its_resource() {
        let res = to_resources(&Limits {
            memory: Some("64m".into()),
            memory_swap: Some("128m".into()),
            memory_reservation: Some("32m".into()),
            cpus: Some(1.5),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
            blkio_weight: Some(300),
            pids_limit: Some(-1),
            ..l()
        })
        .unwrap();
        let m = res.memory().unwrap();
        assert_eq!(
            (m.limit(), m.swap(), m.reservation()),
            (Some(64 << 20), Some(128 << 20), Some(32 << 20))
        );
        let c = res.cpu().clone().unwrap();
        assert_eq!(
            (c.quota(), c.period(), c.shares()),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(
            (c.cpus().as_deref(), c.mems().as_deref()),
            (Some("0-1"), Some("0"))
        );
        assert_eq!(res.block_io().clone().unwrap().weight(), Some(300));
        assert_eq!(res.pids().unwrap().limit(), -1);
        // Unset (and Docker's zeros) stay unset.
        let res = to_resources(&Limits {
            cpu_shares: Some(0),
            blkio_weight: Some(0),
            ..l()
        })
        .unwrap();
        assert_eq!(res, LinuxResources::default());
        let res = to_resources(&Limits {
            memory: Some("1g".into()),
            memory_swap: Some("-1".into()),
            ..l()
        })
        .unwrap();
        assert_eq!(res.memory().unwrap().swap(), Some(-1));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (lim, says) in [
            (
                Limits {
                    memory: Some("1k".into()),
                    ..l()
                },
                "minimum memory limit is 6MB",
            ),
            (
                Limits {
                    memory: Some("lots".into()),
                    ..l()
                },
                "--memory lots",
            ),
            (
                Limits {
                    memory_swap: Some("1g".into()),
                    ..l()
                },
                "set --memory too",
            ),
            (
                Limits {
                    memory: Some("1g".into()),
                    memory_swap: Some("512m".into()),
                    ..l()
                },
                "at least --memory",
            ),
            (
                Limits {
                    memory: Some("64m".into()),
                    memory_reservation: Some("1g".into()),
                    ..l()
                },
                "below --memory",
            ),
            (
                Limits {
                    cpus: Some(0.0),
                    ..l()
                },
                "--cpus must be positive",
            ),
            (
                Limits {
                    cpu_shares: Some(1),
                    ..l()
                },
                "--cpu-shares 1",
            ),
            (
                Limits {
                    cpuset_cpus: Some("0-x".into()),
                    ..l()
                },
                "--cpuset-cpus",
            ),
            (
                Limits {
                    cpuset_mems: Some("3-1".into()),
                    ..l()
                },
                "--cpuset-mems",
            ),
            (
                Limits {
                    blkio_weight: Some(5),
                    ..l()
                },
                "10 to 1000",
            ),
        ] {
            let e = to_resources(&lim).unwrap_err().to_string();
            assert!(e.contains(says), "{lim:?}: {e}");
        }
    }

    #[test]
    fn an_update_keeps_what_it_does_not_set() {
        let mut base = to_resources(&Limits {
            memory: Some("64m".into()),
            memory_reservation: Some("32m".into()),
            cpu_shares: Some(512),
            pids_limit: Some(10),
            ..l()
        })
        .unwrap();
        let new = to_resources(&Limits {
            memory: Some("128m".into()),
            cpus: Some(1.0),
            ..l()
        })
        .unwrap();
        merge(&mut base, &new);
        let m = base.memory().unwrap();
        assert_eq!(
            (m.limit(), m.reservation()),
            (Some(128 << 20), Some(32 << 20))
        );
        let c = base.cpu().clone().unwrap();
        assert_eq!((c.quota(), c.shares()), (Some(100_000), Some(512)));
        assert_eq!(base.pids().unwrap().limit(), 10);
    }
}
