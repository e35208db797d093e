//! v2 hugetlb controller: hugetlb.<size>.max (+ .rsvd.max), .current, .events.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::convert;
use crate::error::Result;
use crate::fs;
use crate::plan::Plan;
use crate::stats::Hugetlb;
use crate::v1::hugetlb::{page_sizes, validate_page_size};

pub(crate) fn plan(limits: &[LinuxHugepageLimit], dir: &Path, plan: &mut Plan) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let ps = l.page_size();
        validate_page_size(i, ps)?;
        let field = format!("hugepageLimits[{i}]({ps})");
        let v = convert::v2_limit(l.limit());
        plan.write(
            "hugetlb",
            field.clone(),
            dir,
            &format!("hugetlb.{ps}.max"),
            &v,
        );
        let rsvd = format!("hugetlb.{ps}.rsvd.max");
        if dir.join(&rsvd).exists() {
            plan.write("hugetlb", field, dir, &rsvd, &v);
        }
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path) -> Result<BTreeMap<String, Hugetlb>> {
    let mut out = BTreeMap::new();
    for ps in page_sizes(dir, ".current")? {
        let events = fs::read_flat_keyed(&dir.join(format!("hugetlb.{ps}.events")))?;
        out.insert(
            ps.clone(),
            Hugetlb {
                usage: fs::read_u64_or_zero(&dir.join(format!("hugetlb.{ps}.current")))?,
                // v2 keeps no high-water mark.
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(out)
}
