//! Resource usage, shaped to serialize exactly like runc's `types.Stats`
//! (the `data` of `runc events --stats`): same JSON keys, and the same
//! `omitempty` behaviour (zero numbers and empty lists are left out; nested
//! structs are always present, as Go's omitempty never drops a struct).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size as the kernel names it ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// All values in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// v1: memory+swap (memsw). v2: swap + memory, for v1 compatibility (as runc).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as read from the kernel.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited ("max").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Parses v1 blkio files: `8:0 Read 4096` lines (the `Total` line is skipped).
pub(crate) fn parse_blkio_v1(s: &str) -> Vec<BlkioEntry> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (major, minor) = f[0].split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// Parses v2 io.stat (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`)
/// into runc's (service bytes, serviced) lists with ops Read/Write/Discard.
pub(crate) fn parse_io_stat(s: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.memory.usage.usage = 10;
        s.memory.raw.insert("cache".into(), 1);
        s.hugetlb.insert("2MB".into(), Hugetlb::default());
        s.blkio.io_service_bytes_recursive.push(BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 5,
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
                "memory": {
                    "usage": {"limit": 0, "usage": 10, "failcnt": 0},
                    "swap": {"limit": 0, "failcnt": 0},
                    "kernel": {"limit": 0, "failcnt": 0},
                    "kernelTCP": {"limit": 0, "failcnt": 0},
                    "raw": {"cache": 1}
                },
                "pids": {},
                "blkio": {"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 5}]},
                "hugetlb": {"2MB": {"failcnt": 0}}
            })
        );
    }

    #[test]
    fn parses_blkio_and_io_stat() {
        let v1 = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[0].op, "Read");
        assert_eq!(v1[0].value, 4096);
        let (b, i) = parse_io_stat("8:16 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[1].op.as_str(), b[1].value, b[1].minor),
            ("Write", 200, 16)
        );
        assert_eq!((i[0].op.as_str(), i[0].value), ("Read", 1));
    }
}
