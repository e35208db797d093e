//! Conversions between the OCI spec (whose resource fields follow cgroup v1)
//! and cgroup v2 values, following what runc and crun do so that the same
//! config.json behaves the same under every runtime.

/// cpu.shares (v1, 2..=262144, default 1024) -> cpu.weight (v2, 1..=10000,
/// default 100). crun's quadratic fit in log space (also adopted by runc):
/// it maps 2 -> 1, 1024 -> 100 and 262144 -> 10000 exactly, unlike the old
/// linear formula which mapped the default 1024 to 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

/// blkio.weight (10..=1000) -> io.weight (1..=10000), linear as runc does.
/// io.bfq.weight uses the v1 range and takes the value unconverted.
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (weight.saturating_sub(10)) * 9999 / 990
}

/// v2 writes "max" for unlimited (-1).
pub fn v2_limit(v: i64) -> String {
    if v == -1 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// OCI `memory.swap` is the v1 memory+swap limit; cgroup v2's
/// memory.swap.max is swap alone. Returns the memory.swap.max value to
/// write (None: leave untouched), or an error message.
pub fn v2_swap(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, String> {
    let limit_v = limit.unwrap_or(0);
    match swap {
        // Unlimited memory with swap unset means "both unlimited" (v1 compat).
        None | Some(0) if limit == Some(-1) => Ok(Some("max".into())),
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some("max".into())),
        Some(s) if s < -1 => Err(format!("invalid swap value {s}")),
        Some(s) => {
            if limit_v == 0 || limit_v == -1 {
                return Err(format!(
                    "swap limit {s} needs a memory limit (memory.swap is memory+swap)"
                ));
            }
            if s < limit_v {
                return Err(format!(
                    "memory+swap limit {s} must be >= memory limit {limit_v}"
                ));
            }
            Ok(Some((s - limit_v).to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_fixed_points() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert!(shares_to_weight(512) < 100 && shares_to_weight(512) > 1);
        assert!(shares_to_weight(2048) > 100);
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn swap_semantics() {
        assert_eq!(v2_swap(Some(300), Some(100)).unwrap(), Some("200".into()));
        assert_eq!(v2_swap(Some(-1), Some(100)).unwrap(), Some("max".into()));
        assert_eq!(v2_swap(None, Some(-1)).unwrap(), Some("max".into()));
        assert_eq!(v2_swap(None, Some(100)).unwrap(), None);
        assert_eq!(v2_swap(Some(100), Some(100)).unwrap(), Some("0".into()));
        assert!(v2_swap(Some(50), Some(100)).is_err());
        assert!(v2_swap(Some(50), None).is_err());
    }
}
