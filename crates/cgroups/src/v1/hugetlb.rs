//! hugetlb controller, v1 file names (v2 is in `crate::v2::hugetlb`).

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::Hugetlb;

/// "2MB", "64KB", "1GB": the kernel's names for page sizes in file names.
pub(crate) fn validate_page_size(idx: usize, ps: &str) -> Result<()> {
    let digits = ps.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &ps[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB")
    {
        return Err(Error::InvalidResource {
            field: format!("hugepageLimits[{idx}].pageSize"),
            reason: format!("{ps:?} is not a page size like 2MB or 1GB"),
        });
    }
    Ok(())
}

pub(crate) fn plan(limits: &[LinuxHugepageLimit], dir: &Path, plan: &mut Plan) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let ps = l.page_size();
        validate_page_size(i, ps)?;
        let field = format!("hugepageLimits[{i}]({ps})");
        let file = format!("hugetlb.{ps}.limit_in_bytes");
        plan.write("hugetlb", field.clone(), dir, &file, l.limit());
        // Reservation limits (Linux >= 5.7) also cap pages reserved but not
        // yet faulted in; set both as runc does.
        let rsvd = format!("hugetlb.{ps}.rsvd.limit_in_bytes");
        if dir.join(&rsvd).exists() {
            plan.write("hugetlb", field, dir, &rsvd, l.limit());
        }
    }
    Ok(())
}

/// Page sizes present in `dir`, found from files `hugetlb.<size>.<suffix>`.
pub(crate) fn page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some(ps) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
        {
            if !ps.contains('.') {
                out.push(ps.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn stats(dir: &Path) -> Result<BTreeMap<String, Hugetlb>> {
    let mut out = BTreeMap::new();
    for ps in page_sizes(dir, ".usage_in_bytes")? {
        let f = |s: &str| fs::read_u64_or_zero(&dir.join(format!("hugetlb.{ps}.{s}")));
        out.insert(
            ps.clone(),
            Hugetlb {
                usage: f("usage_in_bytes")?,
                max: f("max_usage_in_bytes")?,
                failcnt: f("failcnt")?,
            },
        );
    }
    Ok(out)
}
