//! What the `hako` CLI prints: tables padded like Docker's, JSON lines for
//! `--format json`, pretty JSON for `inspect`. The engine returns data; only
//! this module decides how it looks.

use anyhow::Result;
use hako_engine::{hako_image, hako_net};
use serde::Serialize;
use serde_json::{json, Value};

/// Print a table with columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// One JSON object per line (`--format json`).
pub fn json_lines<T: Serialize>(rows: &[T]) -> Result<()> {
    for r in rows {
        println!("{}", serde_json::to_string(r)?);
    }
    Ok(())
}

/// A JSON array, indented (`inspect`).
pub fn pretty<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

/// `ps`: the engine's rows as a table, ids only (`-q`), or JSON lines.
pub fn ps(rows: &[Value], quiet: bool, format: Option<&str>, no_trunc: bool) -> Result<()> {
    let id = |r: &Value| text(r, if no_trunc { "FullID" } else { "ID" });
    if quiet {
        for r in rows {
            println!("{}", id(r));
        }
        return Ok(());
    }
    if crate::format::custom(rows, format)? {
        return Ok(());
    }
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cmd = text(r, "Command");
            if !no_trunc && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect();
                cmd.push('…');
            }
            let mut row = vec![
                id(r),
                text(r, "Image"),
                format!("\"{cmd}\""),
                text(r, "RunningFor"),
                text(r, "Status"),
                text(r, "Ports"),
                text(r, "Names"),
            ];
            if r.get("Size").is_some() {
                row.push(text(r, "Size"));
            }
            row
        })
        .collect();
    let mut head = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if rows.first().is_some_and(|r| r.get("Size").is_some()) {
        head.push("SIZE");
    }
    table(&head, &t);
    Ok(())
}

/// `top`: (PID, UID, STAT, CMD) rows.
pub fn top(rows: &[[String; 4]]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    table(&["PID", "UID", "STAT", "CMD"], &rows);
}

/// `stats`: memory use against the limit and the process count.
pub fn stats(rows: &[Value], format: Option<&str>) -> Result<()> {
    let size = |v: Option<u64>| v.map_or("--".into(), binary_bytes);
    // Docker's template fields next to the JSON's.
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let st = r["Stats"].clone();
            r["Container"] = r["ID"].clone();
            // Without a limit, the host's memory (as Docker shows it).
            r["MemUsage"] = format!(
                "{} / {}",
                size(st["memory"]["usage"]["usage"].as_u64()),
                size(r["MemLimit"].as_u64())
            )
            .into();
            r
        })
        .collect();
    if format == Some("json") {
        return json_lines(&rows);
    }
    if crate::format::custom(&rows, format)? {
        return Ok(());
    }
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                text(r, "ID"),
                text(r, "Name"),
                text(r, "CPUPerc"),
                text(r, "MemUsage"),
                text(r, "MemPerc"),
                r["PIDs"].to_string(),
            ]
        })
        .collect();
    table(
        &[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
        ],
        &t,
    );
    Ok(())
}

/// `ns ls`: each namespace with the host and containers that share it.
pub fn namespaces(rows: &[Value], format: Option<&str>) -> Result<()> {
    if crate::format::custom(rows, format)? {
        return Ok(());
    }
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut with = Vec::new();
            if r["Host"] == json!(true) {
                with.push("host".to_string());
            }
            if let Some(a) = r["SharedWith"].as_array() {
                with.extend(a.iter().filter_map(|s| s.as_str().map(str::to_string)));
            }
            vec![
                text(r, "Container"),
                text(r, "Type"),
                text(r, "Id"),
                if with.is_empty() {
                    "-".into()
                } else {
                    with.join(",")
                },
            ]
        })
        .collect();
    table(&["CONTAINER", "TYPE", "NAMESPACE", "SHARED WITH"], &t);
    Ok(())
}

/// An image id as Docker shows it: 12 hex digits without `sha256:`.
pub fn short_image(id: &str) -> String {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    h[..12.min(h.len())].to_string()
}

/// `images`: one row per tag (`<none>` for an untagged image).
/// One row per name of each image (`<none>` for an untagged one), with
/// Docker's fields: ID, Repository, Tag, CreatedAt, Size, over the JSON's.
fn image_rows(list: &[hako_image::ImageSummary]) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for i in list {
        let base = serde_json::to_value(i)?;
        let tags = if i.repo_tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            i.repo_tags.clone()
        };
        for t in tags {
            let (repo, tag) = t
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .unwrap_or((&t, "<none>"));
            let mut r = base.clone();
            r["ID"] = short_image(&i.id).into();
            r["Repository"] = repo.into();
            r["Tag"] = tag.into();
            r["CreatedAt"] = i.created.clone().unwrap_or_default().into();
            r["Size"] = format!("{:.1}MB", i.size as f64 / 1e6).into();
            rows.push(r);
        }
    }
    Ok(rows)
}

pub fn images(list: &[hako_image::ImageSummary], quiet: bool, format: Option<&str>) -> Result<()> {
    if format == Some("json") {
        return json_lines(list);
    }
    if quiet {
        for i in list {
            println!("{}", short_image(&i.id));
        }
        return Ok(());
    }
    let rows = image_rows(list)?;
    if crate::format::custom(&rows, format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["Repository", "Tag", "ID", "CreatedAt", "Size"]
                .iter()
                .map(|k| text(r, k))
                .collect()
        })
        .collect();
    table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
    Ok(())
}

/// `history`: the image's id on its newest entry, `<missing>` on the
/// others (as Docker shows entries of layers it did not build).
pub fn history(id: &str, h: &[hako_image::HistoryEntry], no_trunc: bool, quiet: bool) {
    let ids = |i: usize| {
        if i == 0 {
            short_image(id)
        } else {
            "<missing>".to_string()
        }
    };
    if quiet {
        for i in 0..h.len() {
            println!("{}", ids(i));
        }
        return;
    }
    let rows: Vec<Vec<String>> = h
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut by = e.created_by.clone();
            if !no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                ids(i),
                e.created.clone(),
                by,
                format!("{:.1}MB", e.size as f64 / 1e6),
                e.comment.clone(),
            ]
        })
        .collect();
    table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    );
}

/// Docker's memory sizes in `stats`: 244.1KiB, 23.45GiB (powers of 1024,
/// four significant digits, as Go's `%.4g`).
pub fn binary_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let decimals = match v {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", UNITS[u])
}

/// Docker's sizes: 512B, 1.2kB, 4.3MB, 2.1GB (powers of 1000).
pub fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1000 => format!("{b}B"),
        b if b < 1_000_000 => format!("{:.1}kB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1}MB", b as f64 / 1e6),
        b => format!("{:.1}GB", b as f64 / 1e9),
    }
}

/// `system df`: Docker's table (sizes and the reclaimable share).
pub fn df(rows: &[Value], format: Option<&str>) -> Result<()> {
    if crate::format::custom(rows, format)? {
        return Ok(());
    }
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let size = r["Size"].as_u64().unwrap_or(0);
            let rec = r["Reclaimable"].as_u64().unwrap_or(0);
            vec![
                text(r, "Type"),
                r["TotalCount"].to_string(),
                r["Active"].to_string(),
                human_bytes(size),
                format!(
                    "{} ({}%)",
                    human_bytes(rec),
                    (rec * 100).checked_div(size).unwrap_or(0)
                ),
            ]
        })
        .collect();
    table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &t);
    Ok(())
}

/// `info`: `Key: value` lines, or `--format`.
pub fn info(v: &Value, format: Option<&str>) -> Result<()> {
    if crate::format::custom(std::slice::from_ref(v), format)? {
        return Ok(());
    }
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            let s = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k}: {s}");
        }
    }
    Ok(())
}

/// `volume ls`.
pub fn volumes(
    dirs: &hako_engine::Dirs,
    list: &[hako_engine::volume::Volume],
    quiet: bool,
    format: Option<&str>,
) -> Result<()> {
    if quiet {
        for v in list {
            println!("{}", v.name);
        }
        return Ok(());
    }
    // inspect's object, with the labels as one string (Docker's ls row).
    let objs: Vec<serde_json::Value> = list
        .iter()
        .map(|v| {
            let mut o = v.inspect(dirs);
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            o["Labels"] = labels.join(",").into();
            o
        })
        .collect();
    if crate::format::custom(&objs, format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| vec!["local".to_string(), v.name.clone()])
        .collect();
    table(&["DRIVER", "VOLUME NAME"], &rows);
    Ok(())
}

pub fn networks(list: &[hako_net::Network], format: Option<&str>) -> Result<()> {
    if format == Some("json") {
        return json_lines(list);
    }
    if let Some(f) = format {
        // `network inspect`'s fields (Docker's), with the table's columns
        // as `.Bridge`, `.Subnet` and `.Gateway`, and Docker's `.IPv6`.
        let mut rows = Vec::new();
        for n in list {
            let mut v = hako_engine::network::view(n, &[]);
            v["Bridge"] = n.bridge.clone().into();
            v["Subnet"] = n.subnet.to_string().into();
            v["Gateway"] = n.gateway.to_string().into();
            v["IPv6"] = n.subnet6.is_some().into();
            rows.push(v);
        }
        crate::format::print(&rows, &crate::format::parse(f)?)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let v = serde_json::to_value(n).unwrap_or_default();
            vec![
                n.name.clone(),
                n.bridge.clone(),
                text(&v, "subnet"),
                text(&v, "gateway"),
            ]
        })
        .collect();
    table(&["NAME", "BRIDGE", "SUBNET", "GATEWAY"], &rows);
    Ok(())
}

/// `port`: Docker's lines, `80/tcp -> 0.0.0.0:32768`, or with `private`
/// the host addresses of that port alone.
pub fn ports(
    container: &str,
    list: &[hako_net::PortMapping],
    private: Option<&str>,
) -> Result<i32> {
    let mut shown = 0;
    for m in list {
        let s = m.to_string();
        let proto = s.rsplit('/').next().unwrap_or("tcp");
        let ctr = format!("{}/{proto}", m.container_port);
        let host = format!(
            "{}:{}",
            m.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
            m.host_port
        );
        match private {
            None => println!("{ctr} -> {host}"),
            Some(p) if p == ctr || format!("{p}/tcp") == ctr => println!("{host}"),
            Some(_) => continue,
        }
        shown += 1;
    }
    if let (Some(p), 0) = (private, shown) {
        anyhow::bail!("no public port {p:?} published for {container}");
    }
    Ok(0)
}

/// What a prune removed, as Docker lists it.
pub fn deleted(what: &str, gone: &[String]) {
    if !gone.is_empty() {
        println!("Deleted {what}:");
        for n in gone {
            println!("{n}");
        }
        println!();
    }
    println!("Total {} deleted: {}", what.to_lowercase(), gone.len());
}

/// `version`: hako's, the runtime it runs containers with (built in), and
/// the host's kernel and cgroups.
pub fn version(format: Option<&str>) -> Result<i32> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroups = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1 (hybrid with v2)"
    };
    let v = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Runtime": "hako-runtime (built in)",
        "OciVersion": "1.2.0",
        "Os": std::env::consts::OS,
        "Arch": std::env::consts::ARCH,
        "Kernel": kernel.trim(),
        "Cgroups": cgroups,
    });
    match format {
        Some("json") => println!("{v}"),
        Some(f) => anyhow::bail!("--format {f:?}: only json"),
        None => {
            for (k, label) in [
                ("Version", "Version"),
                ("Runtime", "Runtime"),
                ("OciVersion", "OCI spec"),
                ("Os", "OS"),
                ("Arch", "Arch"),
                ("Kernel", "Kernel"),
                ("Cgroups", "Cgroups"),
            ] {
                println!(
                    "{:<10} {}",
                    format!("{label}:"),
                    v[k].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_as_docker_stats() {
        assert_eq!(binary_bytes(0), "0B");
        assert_eq!(binary_bytes(512), "512B");
        assert_eq!(binary_bytes(250_000), "244.1KiB");
        assert_eq!(binary_bytes(2 << 20), "2MiB");
        assert_eq!(binary_bytes(25_179_189_248), "23.45GiB");
    }
}
