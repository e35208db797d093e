//! systemd's naming rules, as runc follows them: a `cgroupsPath` of the
//! form `slice:prefix:name` names a transient unit `prefix-name.scope` (or,
//! when `name` ends in `.slice`, that slice) under `slice`, and a slice
//! `a-b.slice` lives in `a.slice/a-b.slice`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The unit a container's cgroup is, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPath {
    /// The parent slice (`system.slice`).
    pub slice: String,
    /// The unit (`hako-<id>.scope`, or a `.slice`).
    pub unit: String,
}

fn bad(path: &str, reason: impl Into<String>) -> Error {
    Error::InvalidPath {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

impl UnitPath {
    /// Parse a systemd `cgroupsPath`; an empty one is
    /// `<default_slice>:hako:<id>`.
    pub fn parse(cgroups_path: &str, id: &str, default_slice: &str) -> Result<UnitPath> {
        if cgroups_path.is_empty() {
            return UnitPath::parse(&format!("{default_slice}:hako:{id}"), id, default_slice);
        }
        let parts: Vec<&str> = cgroups_path.split(':').collect();
        let [slice, prefix, name] = parts.as_slice() else {
            return Err(bad(
                cgroups_path,
                "the systemd driver takes slice:prefix:name (e.g. system.slice:hako:c1)",
            ));
        };
        if name.is_empty() {
            return Err(bad(cgroups_path, "the name part is empty"));
        }
        for (what, p) in [("slice", slice), ("prefix", prefix), ("name", name)] {
            if p.contains('/') {
                return Err(bad(cgroups_path, format!("the {what} contains '/'")));
            }
        }
        let slice = if slice.is_empty() {
            default_slice.to_string()
        } else {
            slice.to_string()
        };
        expand_slice(&slice).map_err(|r| bad(cgroups_path, r))?;
        let unit = if name.ends_with(".slice") {
            expand_slice(name).map_err(|r| bad(cgroups_path, r))?;
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        check_unit_name(&unit).map_err(|r| bad(cgroups_path, r))?;
        Ok(UnitPath { slice, unit })
    }

    pub fn is_slice(&self) -> bool {
        self.unit.ends_with(".slice")
    }

    /// The unit's cgroup below the manager's own (`/system.slice/x.scope`).
    pub fn cgroup(&self) -> String {
        let parent = expand_slice(&self.slice).unwrap_or_default();
        let parent = parent.trim_end_matches('/');
        if self.is_slice() {
            // A slice unit's own path already includes its parents.
            let own = expand_slice(&self.unit).unwrap_or_default();
            let leaf = own.rsplit('/').next().unwrap_or_default();
            format!("{parent}/{leaf}")
        } else {
            format!("{parent}/{}", self.unit)
        }
    }
}

/// The cgroup path of a slice as systemd lays it out: `a-b-c.slice` is
/// `/a.slice/a-b.slice/a-b-c.slice`, and `-.slice` is the root.
pub fn expand_slice(slice: &str) -> std::result::Result<String, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice name (no .slice suffix)"));
    };
    if slice == "-.slice" {
        return Ok("/".into());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    check_unit_name(slice)?;
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// systemd's unit name alphabet and length.
fn check_unit_name(unit: &str) -> std::result::Result<(), String> {
    if unit.len() > 255 {
        return Err(format!("unit name {unit:?} is longer than 255 bytes"));
    }
    if let Some(c) = unit
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)))
    {
        return Err(format!("unit name {unit:?} has the character {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_name_units_as_runc_does() {
        let p = UnitPath::parse("system.slice:hako:c1", "c1", "system.slice").unwrap();
        assert_eq!(p.unit, "hako-c1.scope");
        assert_eq!(p.cgroup(), "/system.slice/hako-c1.scope");
        let p = UnitPath::parse("", "abc", "system.slice").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.unit.as_str()),
            ("system.slice", "hako-abc.scope")
        );
        let p = UnitPath::parse(":docker:x", "x", "user.slice").unwrap();
        assert_eq!(p.cgroup(), "/user.slice/docker-x.scope");
        let p = UnitPath::parse("machine-a.slice::c", "c", "system.slice").unwrap();
        assert_eq!(p.cgroup(), "/machine.slice/machine-a.slice/c.scope");
        let p = UnitPath::parse("system.slice:x:pod-1.slice", "c", "system.slice").unwrap();
        assert!(p.is_slice());
        assert_eq!(p.cgroup(), "/system.slice/pod-1.slice");
        for bad in [
            "a:b",
            "a:b:c:d",
            "system.slice:hako:",
            "system:hako:c1",
            "system.slice:ha/ko:c1",
            "-a.slice:hako:c1",
            "a--b.slice:hako:c1",
            "system.slice:hako:c 1",
        ] {
            let e = UnitPath::parse(bad, "c1", "system.slice")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("cgroupsPath {bad}: ")), "{bad}: {e}");
        }
    }

    #[test]
    fn slices_expand_as_systemd_lays_them_out() {
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert!(expand_slice("a-.slice").is_err());
        assert!(expand_slice("a.scope").is_err());
    }
}
