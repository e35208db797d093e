//! `system df`, `system prune` and `system info` (also `info`), and the
//! image pruning `image prune` shares: Docker's verbs over the records,
//! the image store, the volumes and the networks.

use serde_json::{json, Value};

use crate::dirs::Dirs;
use crate::record;
use crate::status::status;
use crate::Result;

/// What a prune removed.
#[derive(Debug, Default, Clone)]
pub struct Pruned {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub images: Vec<String>,
    pub volumes: Vec<String>,
    pub bytes: u64,
}

/// `image prune [-a]`: images no container uses that have no name
/// (`all`: every image no container uses), then the blobs and layers
/// nothing refers to any more. Returns the removed ids and the bytes.
pub fn prune_images(dirs: &Dirs, all: bool) -> Result<(Vec<String>, u64)> {
    let store = dirs.image_store()?;
    let in_use = |id: &hako_image::ImageId| record::image_in_use(dirs, &id.to_string());
    let mut gone = Vec::new();
    for i in store.list()? {
        if (!all && !i.repo_tags.is_empty()) || record::image_in_use(dirs, &i.id) {
            continue;
        }
        // Every name, then the image (untagging the last name deletes it).
        let names = if i.repo_tags.is_empty() {
            vec![i.id.clone()]
        } else {
            i.repo_tags.clone()
        };
        for n in names {
            if let Ok(r) = store.remove(&n, false, &in_use) {
                if let Some(d) = r.deleted {
                    gone.push(d.to_string());
                }
            }
        }
    }
    // The build cache's step images go too (Docker's prune removes them
    // with the dangling ones), and the cache entries that named them.
    for id in store.intermediates()? {
        if !in_use(&id) {
            if let Ok(r) = store.remove(&id.to_string(), false, &in_use) {
                if let Some(d) = r.deleted {
                    gone.push(d.to_string());
                }
            }
        }
    }
    store.cache_gc();
    let gc = store.gc()?;
    Ok((gone, gc.bytes_freed))
}

/// `system prune [-a] [--volumes]`: stopped containers, networks no
/// container uses (not the default one), images (dangling, or with `all`
/// every unused one), and with `volumes` the unused anonymous volumes (all
/// unused ones with `all` too).
pub fn prune(dirs: &Dirs, all: bool, volumes: bool) -> Result<Pruned> {
    let mut p = Pruned {
        containers: super::prune(dirs)?,
        ..Default::default()
    };
    p.networks = crate::network::prune(dirs)?;
    let (images, bytes) = prune_images(dirs, all)?;
    p.images = images;
    p.bytes = bytes;
    if volumes {
        p.volumes = crate::volume::prune(dirs, all)?;
    }
    Ok(p)
}

/// `system df`: Docker's rows (Type, TotalCount, Active, Size,
/// Reclaimable), sizes in bytes.
pub fn df(dirs: &Dirs) -> Result<Vec<Value>> {
    let store = dirs.image_store()?;
    let images = store.list()?;
    let records = record::scan(dirs).0;
    let used: Vec<&hako_image::ImageSummary> = images
        .iter()
        .filter(|i| record::image_in_use(dirs, &i.id))
        .collect();
    let isize: u64 = images.iter().map(|i| i.size).sum();
    let iused: u64 = used.iter().map(|i| i.size).sum();
    let live = records.iter().filter(|r| status(dirs, r).is_live()).count();
    let sizes: Vec<(bool, u64)> = records
        .iter()
        .map(|r| (status(dirs, r).is_live(), store.changes_size(&r.id)))
        .collect();
    let csize: u64 = sizes.iter().map(|s| s.1).sum();
    let creclaim: u64 = sizes.iter().filter(|s| !s.0).map(|s| s.1).sum();
    let vols = crate::volume::list(dirs);
    let vsizes: Vec<(bool, u64)> = vols
        .iter()
        .map(|v| {
            (
                !crate::volume::users(dirs, &v.name).is_empty(),
                hako_image::diff::tree_size(&v.data(dirs)),
            )
        })
        .collect();
    let vsize: u64 = vsizes.iter().map(|s| s.1).sum();
    let vreclaim: u64 = vsizes.iter().filter(|s| !s.0).map(|s| s.1).sum();
    Ok(vec![
        json!({"Type": "Images", "TotalCount": images.len(), "Active": used.len(),
               "Size": isize, "Reclaimable": isize - iused}),
        json!({"Type": "Containers", "TotalCount": records.len(), "Active": live,
               "Size": csize, "Reclaimable": creclaim}),
        json!({"Type": "Local Volumes", "TotalCount": vols.len(),
               "Active": vsizes.iter().filter(|s| s.0).count(),
               "Size": vsize, "Reclaimable": vreclaim}),
    ])
}

/// `info`: what Docker's shows that applies here.
pub fn info(dirs: &Dirs) -> Result<Value> {
    let records = record::scan(dirs).0;
    let count = |w: &str| {
        records
            .iter()
            .filter(|r| status(dirs, r).word() == w)
            .count()
    };
    let images = dirs
        .image_store()
        .and_then(|s| Ok(s.list()?))
        .map_or(0, |l| l.len());
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let uname = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024);
    Ok(json!({
        "Containers": records.len(),
        "ContainersRunning": count("running"),
        "ContainersPaused": count("paused"),
        "ContainersStopped": count("exited") + count("created"),
        "Images": images,
        "Driver": "overlay",
        "DockerRootDir": dirs.data,
        "RunRoot": dirs.run,
        "CgroupDriver": crate::config::cgroup_manager(
            dirs.cgroup_manager_flag,
            &dirs.config,
            &crate::config::SystemdHost::detect(),
            crate::dirs::rootless(),
        ).map(|m| m.to_string()).unwrap_or_default(),
        "CgroupVersion": if unified { "2" } else { "1" },
        "Rootless": crate::dirs::rootless(),
        "DefaultRuntime": "hako-runc (built in)",
        "KernelVersion": uname("osrelease"),
        "OperatingSystem": os,
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem,
        "Name": uname("hostname"),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
    }))
}
