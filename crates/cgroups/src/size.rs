//! Sizes as people type them ("512m", "1.5g", "1024", "-1"), the one parser
//! of the engine's `--memory` and hako-runc's `update --memory`: Docker's
//! rules (binary units, an optional trailing "b", case-insensitive,
//! decimals allowed), with runc's "-1" for unlimited.

/// Bytes for `s`, or why it is not a size.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use b, k, m, g, t or p)"
            ))
        }
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| {
            format!("invalid size {s:?}: expected a number with an optional unit, e.g. 512m")
        })?;
    if n < 0.0 {
        return Err(format!(
            "invalid size {s:?}: negative (only -1, unlimited, is allowed)"
        ));
    }
    let bytes = n * mul as f64;
    if bytes >= i64::MAX as f64 {
        return Err(format!("invalid size {s:?}: too large"));
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn docker_forms() {
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size(" 64M "), Ok(64 << 20));
        assert_eq!(parse_size("-1"), Ok(-1));
    }

    #[test]
    fn bad_input_says_why() {
        for bad in [
            "",
            "x",
            "12q",
            "-5m",
            "m",
            "1..2g",
            "99999999999p",
            "nan",
            "inf",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid size {bad:?}")),
                "{bad}: {e}"
            );
        }
    }
}
