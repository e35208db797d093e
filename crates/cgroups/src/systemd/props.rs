//! `linux.resources` and `org.systemd.property.*` annotations as systemd
//! unit properties. Only the resources systemd knows are properties; the
//! driver writes every resource to the unit's cgroup files afterwards as
//! well (as runc does), so systemd and the files agree.

use oci_spec::runtime::LinuxResources;

use crate::convert;
use crate::error::{Error, Result};

/// A D-Bus value of a unit property (the types systemd's properties use).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    U32s(Vec<u32>),
    Strs(Vec<String>),
}

pub type Property = (String, Value);

fn p(name: &str, v: Value) -> Property {
    (name.to_string(), v)
}

/// systemd's "infinity".
const INFINITY: u64 = u64::MAX;

/// The unit properties for `res` (the subset systemd manages).
pub fn from_resources(res: &LinuxResources) -> Result<Vec<Property>> {
    let mut out = Vec::new();
    let res = crate::normalize::normalize(res);
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            out.push(p("MemoryMax", Value::U64(limit(l))));
        }
        if let Some(r) = m.reservation() {
            out.push(p("MemoryLow", Value::U64(limit(r))));
        }
        match convert::v2_swap(m.swap(), m.limit()) {
            Ok(Some(s)) => out.push(p(
                "MemorySwapMax",
                Value::U64(if s == "max" {
                    INFINITY
                } else {
                    s.parse().unwrap_or(INFINITY)
                }),
            )),
            Ok(None) => {}
            Err(reason) => {
                return Err(Error::InvalidResource {
                    field: "memory.swap".into(),
                    reason,
                })
            }
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            out.push(p("CPUWeight", Value::U64(convert::shares_to_weight(s))));
        }
        let period = c.period().filter(|p| *p > 0);
        if let Some(q) = c.quota() {
            out.push(p(
                "CPUQuotaPerSecUSec",
                Value::U64(quota_per_sec(q, period)),
            ));
        }
        if let Some(per) = period {
            out.push(p("CPUQuotaPeriodUSec", Value::U64(per)));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(p("AllowedCPUs", Value::Bytes(bitmask("cpu.cpus", cpus)?)));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(p(
                "AllowedMemoryNodes",
                Value::Bytes(bitmask("cpu.mems", mems)?),
            ));
        }
    }
    if let Some(pids) = res.pids() {
        let l = pids.limit();
        out.push(p(
            "TasksMax",
            Value::U64(if l > 0 { l as u64 } else { INFINITY }),
        ));
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
        if w > 0 {
            out.push(p(
                "IOWeight",
                Value::U64(convert::blkio_weight_to_io_weight(w as u64)),
            ));
        }
    }
    Ok(out)
}

fn limit(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

/// CPUQuotaPerSecUSec from a quota per period. systemd keeps the quota as a
/// whole percentage, so it is rounded up to the next 10 ms per second (as
/// runc does) lest the unit's cpu.max end below the spec's.
fn quota_per_sec(quota: i64, period: Option<u64>) -> u64 {
    if quota <= 0 {
        return INFINITY;
    }
    let period = period.unwrap_or(100_000);
    let per_sec = (quota as u64).saturating_mul(1_000_000) / period;
    per_sec.div_ceil(10_000) * 10_000
}

/// A cpuset list ("0-3,8") as systemd's byte-array bitmask.
pub fn bitmask(field: &str, list: &str) -> Result<Vec<u8>> {
    let bad = || Error::InvalidResource {
        field: field.into(),
        reason: format!("{list:?} is not a list of numbers and ranges"),
    };
    let mut mask = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b >= 8192 {
            return Err(bad());
        }
        for i in a..=b {
            if mask.len() <= i / 8 {
                mask.resize(i / 8 + 1, 0);
            }
            mask[i / 8] |= 1 << (i % 8);
        }
    }
    Ok(mask)
}

pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// `org.systemd.property.NAME=VALUE` annotations as properties. VALUE is
/// in GVariant text form, as runc takes it: `true`, `uint64 123`, `'text'`,
/// `['a', 'b']`, a number (a uint64 for properties ending in `Sec`, as
/// runc converts them, else an int32).
pub fn from_annotations<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<Property>> {
    let mut out = Vec::new();
    for (k, v) in annotations {
        let Some(name) = k.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let err = |reason: String| Error::InvalidAnnotation {
            key: k.clone(),
            reason,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("not a systemd property name".into()));
        }
        let value = parse_value(v.trim()).map_err(err)?;
        let value = match value {
            Value::I32(n) if name.ends_with("Sec") => Value::U64(
                u64::try_from(n).map_err(|_| err(format!("{v:?}: a time cannot be negative")))?,
            ),
            other => other,
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

fn parse_value(v: &str) -> std::result::Result<Value, String> {
    let bad = || format!("cannot parse {v:?} (e.g. true, uint64 123, 'text', ['a', 'b'])");
    match v {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(s) = quoted(v) {
        return Ok(Value::Str(s));
    }
    if let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let items: Vec<&str> = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.iter().all(|i| quoted(i).is_some()) {
            return Ok(Value::Strs(
                items.iter().filter_map(|i| quoted(i)).collect(),
            ));
        }
        let nums: std::result::Result<Vec<u32>, _> = items
            .iter()
            .map(|i| i.trim_start_matches("uint32 ").parse::<u32>())
            .collect();
        return nums.map(Value::U32s).map_err(|_| bad());
    }
    if let Some((ty, n)) = v.split_once(' ') {
        let n = n.trim();
        let r = match ty {
            "byte" => n.parse().map(Value::Byte).ok(),
            "int16" => n.parse().map(Value::I16).ok(),
            "uint16" => n.parse().map(Value::U16).ok(),
            "int32" => n.parse().map(Value::I32).ok(),
            "uint32" => n.parse().map(Value::U32).ok(),
            "int64" => n.parse().map(Value::I64).ok(),
            "uint64" => n.parse().map(Value::U64).ok(),
            "double" => n.parse().map(Value::Double).ok(),
            _ => None,
        };
        return r.ok_or_else(bad);
    }
    if let Ok(n) = v.parse::<i32>() {
        return Ok(Value::I32(n));
    }
    if let Ok(n) = v.parse::<i64>() {
        return Ok(Value::I64(n));
    }
    if let Ok(n) = v.parse::<f64>() {
        return Ok(Value::Double(n));
    }
    Err(bad())
}

fn quoted(v: &str) -> Option<String> {
    for q in ['\'', '"'] {
        if let Some(s) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            if !s.contains(q) {
                return Some(s.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResources;
    use std::collections::HashMap;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get<'a>(ps: &'a [Property], name: &str) -> Option<&'a Value> {
        ps.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn resources_become_the_properties_runc_sets() {
        let ps = from_resources(&res(
            r#"{"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
                "cpu": {"shares": 1024, "quota": 150000, "period": 100000, "cpus": "0-2,9", "mems": "0"},
                "pids": {"limit": 20}, "blockIO": {"weight": 500}}"#,
        ))
        .unwrap();
        assert_eq!(get(&ps, "MemoryMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&ps, "MemoryLow"), Some(&Value::U64(32 << 20)));
        assert_eq!(get(&ps, "MemorySwapMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&ps, "CPUWeight"), Some(&Value::U64(100)));
        assert_eq!(get(&ps, "CPUQuotaPerSecUSec"), Some(&Value::U64(1_500_000)));
        assert_eq!(get(&ps, "CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
        assert_eq!(
            get(&ps, "AllowedCPUs"),
            Some(&Value::Bytes(vec![0b111, 0b10]))
        );
        assert_eq!(get(&ps, "AllowedMemoryNodes"), Some(&Value::Bytes(vec![1])));
        assert_eq!(get(&ps, "TasksMax"), Some(&Value::U64(20)));
        assert_eq!(get(&ps, "IOWeight"), Some(&Value::U64(4950)));
        // A fractional percentage rounds up to whole ones; -1 is unlimited.
        let ps = from_resources(&res(r#"{"cpu": {"quota": 12345, "period": 100000}}"#)).unwrap();
        assert_eq!(get(&ps, "CPUQuotaPerSecUSec"), Some(&Value::U64(130_000)));
        let ps =
            from_resources(&res(r#"{"memory": {"limit": -1}, "pids": {"limit": -1}}"#)).unwrap();
        assert_eq!(get(&ps, "MemoryMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&ps, "TasksMax"), Some(&Value::U64(u64::MAX)));
        let e = from_resources(&res(r#"{"cpu": {"cpus": "3-1"}}"#)).unwrap_err();
        assert!(
            e.to_string().starts_with("linux.resources.cpu.cpus: "),
            "{e}"
        );
    }

    #[test]
    fn annotations_parse_as_gvariant_text() {
        let a: HashMap<String, String> = [
            ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
            ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
            ("org.systemd.property.CPUQuotaPeriodUSec", "50000"),
            ("org.systemd.property.SendSIGKILL", "false"),
            ("org.systemd.property.Environment", "['A=1', 'B=2']"),
            ("other.annotation", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ps = from_annotations(&a).unwrap();
        assert_eq!(ps.len(), 5);
        assert_eq!(get(&ps, "TimeoutStopUSec"), Some(&Value::U64(123_456_789)));
        assert_eq!(
            get(&ps, "CollectMode"),
            Some(&Value::Str("inactive-or-failed".into()))
        );
        assert_eq!(get(&ps, "CPUQuotaPeriodUSec"), Some(&Value::U64(50_000)));
        assert_eq!(get(&ps, "SendSIGKILL"), Some(&Value::Bool(false)));
        assert_eq!(
            get(&ps, "Environment"),
            Some(&Value::Strs(vec!["A=1".into(), "B=2".into()]))
        );
        for (k, v) in [
            ("org.systemd.property.TimeoutStopUSec", "uint64 x"),
            ("org.systemd.property.Foo", "what is this"),
            ("org.systemd.property.TimeoutStopUSec", "-5"),
            ("org.systemd.property.", "1"),
        ] {
            let one: HashMap<String, String> = [(k.to_string(), v.to_string())].into();
            let e = from_annotations(&one).unwrap_err().to_string();
            assert!(e.starts_with(&format!("annotations.{k}: ")), "{e}");
        }
    }
}
