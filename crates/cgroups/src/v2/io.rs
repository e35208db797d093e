//! v2 io controller: io.bfq.weight / io.weight, io.max, io.stat.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::convert;
use crate::error::{Error, Result};
use crate::fs;
use crate::plan::Plan;
use crate::stats::{parse_io_stat, Blkio};

const CTL: &str = "io";

/// BFQ's io.bfq.weight takes the v1 range (1..=1000) unconverted; the
/// generic io.weight (io.cost) takes 1..=10000. Prefer BFQ as crun does.
fn weight_target(dir: &Path, field: &str) -> Result<(&'static str, bool)> {
    if dir.join("io.bfq.weight").exists() {
        Ok(("io.bfq.weight", false))
    } else if dir.join("io.weight").exists() {
        Ok(("io.weight", true))
    } else {
        Err(Error::MissingFile {
            field: field.into(),
            path: dir.join("io.weight"),
            hint: "neither io.bfq.weight nor io.weight exists: the io controller is not enabled here or no weight-based I/O control is available".into(),
        })
    }
}

fn throttle(
    plan: &mut Plan,
    dir: &Path,
    field: &str,
    key: &str,
    devs: &Option<Vec<LinuxThrottleDevice>>,
) {
    for d in devs.iter().flatten() {
        let rate = if d.rate() == 0 {
            "max".to_string()
        } else {
            d.rate().to_string()
        };
        plan.write(
            CTL,
            field,
            dir,
            "io.max",
            format!("{}:{} {key}={rate}", d.major(), d.minor()),
        );
    }
}

pub(crate) fn plan(b: &LinuxBlockIo, dir: &Path, plan: &mut Plan) -> Result<()> {
    if let Some(w) = b.weight() {
        let (file, conv) = weight_target(dir, "blockIO.weight")?;
        let v = if conv {
            convert::blkio_weight_to_io_weight(w.into())
        } else {
            w.into()
        };
        plan.write(CTL, "blockIO.weight", dir, file, v);
    }
    // leafWeight was a CFQ-only v1 feature; v2 has no equivalent (ignored,
    // as in runc).
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let (file, conv) = weight_target(dir, "blockIO.weightDevice")?;
            let v = if conv {
                convert::blkio_weight_to_io_weight(w.into())
            } else {
                w.into()
            };
            plan.write(
                CTL,
                "blockIO.weightDevice",
                dir,
                file,
                format!("{}:{} {v}", d.major(), d.minor()),
            );
        }
    }
    throttle(
        plan,
        dir,
        "blockIO.throttleReadBpsDevice",
        "rbps",
        b.throttle_read_bps_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleWriteBpsDevice",
        "wbps",
        b.throttle_write_bps_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleReadIOPSDevice",
        "riops",
        b.throttle_read_iops_device(),
    );
    throttle(
        plan,
        dir,
        "blockIO.throttleWriteIOPSDevice",
        "wiops",
        b.throttle_write_iops_device(),
    );
    Ok(())
}

pub(crate) fn stats(dir: &Path) -> Result<Blkio> {
    let Some(s) = fs::read_opt(&dir.join("io.stat"))? else {
        return Ok(Blkio::default());
    };
    let (bytes, ios) = parse_io_stat(&s);
    Ok(Blkio {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ios,
    })
}
