//! `inspect`.

use serde_json::{json, Value};

use super::UNKNOWN_EXIT;
use crate::dirs::Dirs;
use crate::ns::ns_ids;
use crate::record::{self, Record};
use crate::status::{monitor_alive, status, Status};
use crate::Result;

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
    // Sorted: the spec keeps them as a set, in no order.
    let mut caps: Vec<&str> = spec["process"]["capabilities"]["bounding"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    caps.sort_unstable();
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
            "Restarting": r.restarting && monitor_alive(&r),
            "Health": r.health,
            // podman's: a checkpoint ended it and can restore it.
            "Checkpointed": r.checkpointed_at.is_some() && matches!(s, Status::Exited(_)),
            "CheckpointedAt": r.checkpointed_at,
            "CheckpointPath": if r.checkpointed_at.is_some() {
                json!(super::checkpoint_dir(dirs, &id))
            } else {
                json!("")
            },
        },
        "HostPid": pid,
        "Namespaces": if live { Value::Object(ns_ids(pid)) } else { json!({}) },
        "HostNamespaces": Value::Object(ns_ids("self")),
        "RestartCount": r.restart_count,
        "LogPath": record::log_path(dirs, &id),
        "Rootfs": r.rootfs,
        // How the root filesystem is made, e.g. "overlay on idmapped layers".
        "GraphDriver": {"Name": r.rootfs_kind.as_deref().unwrap_or("overlay")},
        "Mounts": spec["mounts"].as_array().map(|m| m.iter().filter(|m| m["type"] == "bind" || m["type"] == "tmpfs").map(|m| json!({
            "Type": m["type"], "Source": m["source"], "Destination": m["destination"],
            "RW": !m["options"].as_array().is_some_and(|o| o.iter().any(|x| x == "ro")),
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "HostConfig": {
            "Memory": res["memory"]["limit"].as_i64().unwrap_or(0),
            "NanoCpus": r.opts.limits.cpus.map_or(0, |c| (c * 1e9) as i64),
            "CpuQuota": if r.opts.limits.cpus.is_none() { res["cpu"]["quota"].as_i64().unwrap_or(0) } else { 0 },
            "CpuPeriod": if r.opts.limits.cpus.is_none() { res["cpu"]["period"].as_u64().unwrap_or(0) } else { 0 },
            "PidsLimit": res["pids"]["limit"].as_i64().unwrap_or(0),
            "MemorySwappiness": r.opts.memory_swappiness,
            "OomKillDisable": r.opts.oom_kill_disable,
            "Privileged": r.opts.privileged,
            "UsernsMode": r.opts.userns.as_deref().unwrap_or(""),
            // podman's: container:host:size, for uids and gids.
            "IDMappings": r.idmap.map(|m| json!({
                "UidMap": [format!("0:{}:{}", m.uid, m.size)],
                "GidMap": [format!("0:{}:{}", m.gid, m.size)],
            })),
            "RestartPolicy": match crate::restart::Policy::of(&r.opts) {
                crate::restart::Policy::No => json!({"Name": "no", "MaximumRetryCount": 0}),
                crate::restart::Policy::OnFailure(n) => json!({"Name": "on-failure", "MaximumRetryCount": n}),
                crate::restart::Policy::Always => json!({"Name": "always", "MaximumRetryCount": 0}),
                crate::restart::Policy::UnlessStopped => json!({"Name": "unless-stopped", "MaximumRetryCount": 0}),
            },
            "ReadonlyRootfs": r.opts.read_only,
            "AutoRemove": r.opts.rm,
            "NetworkMode": r.opts.network.clone().unwrap_or_else(|| "bridge".into()),
            "CapAdd": r.opts.cap_add,
            "CapDrop": r.opts.cap_drop,
            "SecurityOpt": r.opts.security_opt,
            "Init": r.opts.init,
            "CgroupManager": r.cgroup_manager.to_string(),
            "CgroupParent": r.opts.cgroup_parent.clone().unwrap_or_default(),
        },
        "Config": {
            "Hostname": r.hostname,
            "Image": r.image,
            "Env": spec["process"]["env"],
            "Cmd": r.opts.cmd,
            "WorkingDir": spec["process"]["cwd"],
            "User": r.opts.user.clone().unwrap_or_default(),
            "Tty": r.opts.tty,
            "OpenStdin": r.opts.interactive,
            "Labels": labels(dirs, &r),
            "StopSignal": r.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "StopTimeout": r.opts.stop_timeout.unwrap_or(10),
        },
        "Capabilities": caps,
        "Seccomp": if spec["linux"]["seccomp"].is_null() { "unconfined" } else { "default" },
        "NetworkSettings": {
            "IPAddress": r.networks.first().map(|n| n.ip.clone()).unwrap_or_default(),
            "MacAddress": r.networks.first().map(|n| n.mac.clone()).unwrap_or_default(),
            "Networks": nets,
            "Ports": r.opts.publish,
        },
    }))
}

/// The image's labels, with the container's own (`--label`) over them.
fn labels(dirs: &Dirs, r: &Record) -> serde_json::Map<String, Value> {
    let mut m = dirs
        .image_store()
        .ok()
        .and_then(|s| s.inspect(&r.image_id).or_else(|_| s.inspect(&r.image)).ok())
        .and_then(|i| i.config["Labels"].as_object().cloned())
        .unwrap_or_default();
    for l in &r.opts.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    m
}
