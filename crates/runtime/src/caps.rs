//! Switching to the container user and setting the five capability sets.
//!
//! Order matters: the bounding set is trimmed while we still hold
//! CAP_SETPCAP; KEEPCAPS carries the permitted set across setuid; effective
//! is set before permitted shrinks (effective must stay a subset); ambient
//! last, since it needs the capability permitted and inheritable.

use caps::{CapSet, Capability, CapsHashSet};

use crate::error::{Context, Result};
use crate::plan::ProcessPlan;
use crate::sys;

fn set_of(v: &[Capability]) -> CapsHashSet {
    v.iter().copied().collect()
}

fn caps_err(step: &str, e: caps::errors::CapsError) -> crate::error::Error {
    crate::error::Error::Other(format!("{step}: {e}"))
}

pub fn apply_user_and_caps(p: &ProcessPlan, userns: bool) -> Result<()> {
    if let Some(c) = &p.caps {
        let supported = caps::runtime::thread_all_supported();
        for cap in supported {
            if !c.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| caps_err(&format!("drop {cap} from the bounding set"), e))?;
            }
        }
        sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).ctx(|| "set keepcaps".into())?;
    }

    match sys::setgroups(&p.additional_gids) {
        Ok(()) => {}
        // With setgroups denied in a user namespace only an empty list is
        // acceptable, and then there is nothing to do.
        Err(e)
            if userns && e.raw_os_error() == Some(libc::EPERM) && p.additional_gids.is_empty() => {}
        Err(e) => {
            return Err(e).ctx(|| {
                format!(
                    "setgroups {} (process.user.additionalGids)",
                    gid_summary(&p.additional_gids)
                )
            })
        }
    }
    sys::setresgid(p.gid).ctx(|| format!("setgid {} (process.user.gid)", p.gid))?;
    sys::setresuid(p.uid).ctx(|| format!("setuid {} (process.user.uid)", p.uid))?;

    if let Some(c) = &p.caps {
        sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).ctx(|| "clear keepcaps".into())?;
        caps::set(None, CapSet::Effective, &set_of(&c.effective))
            .map_err(|e| caps_err("set effective capabilities", e))?;
        caps::set(None, CapSet::Inheritable, &set_of(&c.inheritable))
            .map_err(|e| caps_err("set inheritable capabilities", e))?;
        caps::set(None, CapSet::Permitted, &set_of(&c.permitted))
            .map_err(|e| caps_err("set permitted capabilities", e))?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| caps_err("clear ambient capabilities", e))?;
        for cap in &c.ambient {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| caps_err(&format!("raise ambient {cap}"), e))?;
        }
    }
    Ok(())
}

/// A gid list for an error message, bounded however long the list is:
/// all of a short list, else the count and the first few.
fn gid_summary(gids: &[u32]) -> String {
    const SHOWN: usize = 8;
    if gids.len() <= SHOWN {
        return format!("{gids:?}");
    }
    let head: Vec<String> = gids[..SHOWN].iter().map(u32::to_string).collect();
    format!("of {} gids [{}, ...]", gids.len(), head.join(", "))
}

#[cfg(test)]
mod tests {
    use super::gid_summary;

    #[test]
    fn gid_summary_is_bounded() {
        assert_eq!(gid_summary(&[1, 2]), "[1, 2]");
        let many: Vec<u32> = (0..70_000).collect();
        let s = gid_summary(&many);
        assert_eq!(s, "of 70000 gids [0, 1, 2, 3, 4, 5, 6, 7, ...]");
    }
}
