//! v1 blkio controller. Proportional weights exist only with CFQ
//! (blkio.weight, gone since Linux 5.0) or BFQ (blkio.bfq.weight); throttling
//! works with any scheduler.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::{parse_blkio_v1, Blkio};

const CTL: &str = "blkio";

/// Picks the CFQ file if present, else the BFQ one, else explains.
fn weight_file(dir: &Path, field: &str, cfq: &str, bfq: &str) -> Result<String> {
    if dir.join(cfq).exists() {
        Ok(cfq.to_string())
    } else if dir.join(bfq).exists() {
        Ok(bfq.to_string())
    } else {
        Err(Error::MissingFile {
            field: field.into(),
            path: dir.join(cfq),
            hint: format!(
                "neither {cfq} (CFQ) nor {bfq} (BFQ) exists: no proportional-weight I/O scheduler is active on this host"
            ),
        })
    }
}

fn throttle(
    plan: &mut Plan,
    dir: &Path,
    field: &str,
    file: &str,
    devs: &Option<Vec<LinuxThrottleDevice>>,
) {
    for d in devs.iter().flatten() {
        plan.write(
            CTL,
            field,
            dir,
            file,
            format!("{}:{} {}", d.major(), d.minor(), d.rate()),
        );
    }
}

pub(crate) fn plan(b: &LinuxBlockIo, dir: &Path, plan: &mut Plan) -> Result<()> {
    if let Some(w) = b.weight() {
        let f = weight_file(dir, "blockIO.weight", "blkio.weight", "blkio.bfq.weight")?;
        plan.write(CTL, "blockIO.weight", dir, &f, w);
    }
    if let Some(w) = b.leaf_weight() {
        plan.write(CTL, "blockIO.leafWeight", dir, "blkio.leaf_weight", w);
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let f = weight_file(
                dir,
                "blockIO.weightDevice",
                "blkio.weight_device",
                "blkio.bfq.weight_device",
            )?;
            plan.write(
                CTL,
                "blockIO.weightDevice",
                dir,
                &f,
                format!("{}:{} {}", d.major(), d.minor(), w),
            );
        }
        if let Some(w) = d.leaf_weight() {
            plan.write(
                CTL,
                "blockIO.weightDevice.leafWeight",
                dir,
                "blkio.leaf_weight_device",
                format!("{}:{} {}", d.major(), d.minor(), w),
            );
        }
    }
    throttle(
        plan,
        dir,
        "blockIO.throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
        b.throttle_read_bps_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
        b.throttle_write_bps_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
        b.throttle_read_iops_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
        b.throttle_write_iops_device(),
    );
    Ok(())
}

/// Prefers the scheduler's recursive counters (CFQ, then BFQ) and falls back
/// to the throttle layer's, which count every bio (as runc does).
pub(crate) fn stats(dir: &Path) -> Result<Blkio> {
    for prefix in ["blkio", "blkio.bfq", "blkio.throttle"] {
        let bytes = fs::read_opt(&dir.join(format!("{prefix}.io_service_bytes_recursive")))?;
        let ios = fs::read_opt(&dir.join(format!("{prefix}.io_serviced_recursive")))?;
        if let (Some(bytes), Some(ios)) = (bytes, ios) {
            let b = parse_blkio_v1(&bytes);
            if b.is_empty() && prefix != "blkio.throttle" {
                continue;
            }
            return Ok(Blkio {
                io_service_bytes_recursive: b,
                io_serviced_recursive: parse_blkio_v1(&ios),
            });
        }
    }
    Ok(Blkio::default())
}
