//! hako's default seccomp profile: `profiles/default.json`, embedded at
//! build time. The file is an OCI `linux.seccomp` object with hako
//! extensions (see its top-level `comment`); [`default_profile`] resolves
//! the extensions for one container and returns plain OCI data.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSyscall};
use serde::Deserialize;

/// The profile source, as shipped.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../profiles/default.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileFile {
    /// defaultAction, defaultErrnoRet, flags, ... (everything OCI except
    /// `syscalls` and `architectures`, which are computed per container).
    #[serde(flatten)]
    pub(crate) base: LinuxSeccomp,
    /// Rust `std::env::consts::ARCH` -> seccomp architectures.
    #[serde(default)]
    pub(crate) arch_map: BTreeMap<String, Vec<Arch>>,
    pub(crate) syscalls: Vec<ProfileRule>,
    /// Documentation only: syscalls deliberately left to the default action.
    #[serde(default)]
    #[cfg_attr(not(test), allow(dead_code))] // checked by tests, read by humans
    pub(crate) denied: Vec<DeniedGroup>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProfileRule {
    #[serde(flatten)]
    pub(crate) rule: LinuxSyscall,
    /// Why this group exists. Required: a rule without a reason does not parse.
    #[cfg_attr(not(test), allow(dead_code))] // checked by tests, read by humans
    pub(crate) comment: String,
    #[serde(default)]
    pub(crate) includes: Gate,
    #[serde(default)]
    pub(crate) excludes: Gate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Gate {
    #[serde(default)]
    pub(crate) caps: Vec<String>,
    #[serde(default)]
    pub(crate) arches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeniedGroup {
    #[cfg_attr(not(test), allow(dead_code))] // checked by tests, read by humans
    pub(crate) comment: String,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) names: Vec<String>,
}

pub(crate) fn parsed() -> &'static ProfileFile {
    static PROFILE: OnceLock<ProfileFile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        // The embedded file is fixed at build time and parsed by the unit
        // test `default_profile_parses`, so this cannot fail in a tested build.
        serde_json::from_str(DEFAULT_PROFILE_JSON).expect("profiles/default.json is valid")
    })
}

/// `CAP_SYS_ADMIN`, `cap_sys_admin` and `SYS_ADMIN` all name the same capability.
fn normalize_cap(cap: &str) -> String {
    let up = cap.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// hako's default `linux.seccomp` for a container whose capability bounding
/// set is `caps` (names as in config.json, e.g. `"CAP_SYS_PTRACE"`), on the
/// host architecture. Capability-gated rules (ptrace with CAP_SYS_PTRACE,
/// mount/unshare/setns/... with CAP_SYS_ADMIN, ...) are included only when
/// their capability is in `caps`.
pub fn default_profile(caps: &[String]) -> LinuxSeccomp {
    default_profile_for_arch(caps, std::env::consts::ARCH)
}

/// [`default_profile`] for an explicit host architecture
/// (`std::env::consts::ARCH` spelling: `x86_64`, `aarch64`, ...).
pub fn default_profile_for_arch(caps: &[String], arch: &str) -> LinuxSeccomp {
    let file = parsed();
    let caps: Vec<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let has = |c: &String| caps.contains(&normalize_cap(c));
    let arch_ok = |list: &[String]| list.iter().any(|a| a == arch);

    let syscalls: Vec<LinuxSyscall> = file
        .syscalls
        .iter()
        .filter(|r| r.includes.caps.iter().all(has))
        .filter(|r| !r.excludes.caps.iter().any(has))
        .filter(|r| r.includes.arches.is_empty() || arch_ok(&r.includes.arches))
        .filter(|r| !arch_ok(&r.excludes.arches))
        .map(|r| r.rule.clone())
        .collect();

    let mut out = file.base.clone();
    out.set_syscalls(Some(syscalls));
    out.set_architectures(file.arch_map.get(arch).cloned());
    out
}
