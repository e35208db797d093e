//! `set()` is split into plan and execute: controllers turn
//! `LinuxResources` into an ordered list of [`Op`]s, the whole list is
//! validated (every target file exists, every controller is enabled), and
//! only then is anything written. A spec asking for something this host
//! cannot do therefore fails before the first write, and tests can assert
//! the exact files and values without a kernel.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::error::{Error, Result};
use crate::fs;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write `value` to `path` (one write(2)).
    Write {
        /// Controller that owns the file, for error hints.
        controller: &'static str,
        /// The spec field this write comes from (`memory.limit`, ...).
        field: String,
        path: PathBuf,
        value: String,
    },
    /// cgroup v2 device rules: compile to eBPF, attach to `dir`, detach the
    /// program(s) attached before.
    DeviceFilter {
        dir: PathBuf,
        rules: Vec<LinuxDeviceCgroup>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    pub(crate) fn write(
        &mut self,
        controller: &'static str,
        field: impl Into<String>,
        dir: &Path,
        file: &str,
        value: impl ToString,
    ) {
        self.ops.push(Op::Write {
            controller,
            field: field.into(),
            path: dir.join(file),
            value: value.to_string(),
        });
    }

    /// `(file, value)` pairs relative to their cgroup dir, for tests.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Write { path, value, .. } => Some((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    value.clone(),
                )),
                Op::DeviceFilter { .. } => None,
            })
            .collect()
    }

    /// Checks that every file the plan writes exists, so a missing
    /// controller or kernel feature is reported before anything is written.
    pub fn validate(&self) -> Result<()> {
        for op in &self.ops {
            let Op::Write {
                controller,
                field,
                path,
                ..
            } = op
            else {
                continue;
            };
            if path.exists() {
                continue;
            }
            let dir = path.parent().unwrap_or(Path::new("/"));
            if !dir.exists() {
                return Err(Error::NotCreated {
                    path: dir.to_path_buf(),
                });
            }
            return Err(Error::MissingFile {
                field: field.clone(),
                path: path.clone(),
                hint: missing_hint(controller, path, dir),
            });
        }
        Ok(())
    }

    /// Writes every op in order. The plan was validated, so on valid input
    /// nothing should fail; if the kernel still refuses a value, what was
    /// already written is put back (newest first, so ordering constraints
    /// such as memsw >= limit hold on the way back) and the error names the
    /// field. A half-applied `update` is worse than a refused one.
    pub fn execute(&self) -> Result<()> {
        self.execute_and(|| Ok(()))
    }

    /// `execute`, then `then` (e.g. telling systemd the same values); if
    /// `then` fails, what was written is put back and its error returned,
    /// so the two change together or not at all.
    pub fn execute_and(&self, then: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut undo: Vec<(&Path, String)> = Vec::new();
        for op in &self.ops {
            let (field, done) = match op {
                Op::Write {
                    field, path, value, ..
                } => {
                    let old = std::fs::read_to_string(path).ok();
                    let done = fs::write_file(path, value);
                    if let (Ok(()), Some(old)) = (&done, old) {
                        undo.push((path, old));
                    }
                    (field.as_str(), done)
                }
                Op::DeviceFilter { dir, rules } => {
                    ("devices", crate::v2::devices::apply(dir, rules))
                }
            };
            if let Err(e) = done {
                let restored = undo.iter().rev().all(|(p, old)| restore(p, old));
                return Err(Error::Refused {
                    field: field.to_string(),
                    restored,
                    source: Box::new(e),
                });
            }
        }
        then().inspect_err(|_| {
            undo.iter().rev().all(|(p, old)| restore(p, old));
        })
    }
}

/// Writes back a value read from a cgroup file: files that list one entry
/// per line (io.max, io.weight, blkio.throttle.*) take one line per write.
fn restore(path: &Path, old: &str) -> bool {
    let lines: Vec<&str> = old.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return true;
    }
    lines.iter().all(|l| fs::write_file(path, l.trim()).is_ok())
}

/// Explains why a controller file is absent.
fn missing_hint(controller: &str, path: &Path, dir: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with("memory.memsw.") || name.starts_with("memory.swap.") {
        return "swap accounting is not enabled on this host (no swap, or booted without swapaccount=1)".into();
    }
    // On cgroup2 every cgroup has cgroup.controllers: tell whether the
    // controller is enabled for this cgroup at all.
    if let Ok(enabled) = std::fs::read_to_string(dir.join("cgroup.controllers")) {
        if !enabled.split_whitespace().any(|c| c == controller) {
            return format!(
                "the {controller} controller is not enabled for this cgroup (cgroup.controllers: {:?})",
                enabled.trim()
            );
        }
    }
    format!("the {controller} controller on this kernel does not provide this file")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `then` refuses is undone in the files too: the systemd driver
    /// writes files first and tells systemd after.
    #[test]
    fn a_refused_follow_up_puts_the_written_values_back() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memory.max"), "67108864\n").unwrap();
        std::fs::write(d.path().join("pids.max"), "max\n").unwrap();
        let mut plan = Plan::default();
        plan.write("memory", "memory.limit", d.path(), "memory.max", 33554432);
        plan.write("pids", "pids.limit", d.path(), "pids.max", 30);
        plan.validate().unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        let e = plan
            .execute_and(|| {
                assert_eq!(read("memory.max"), "33554432");
                Err(Error::Systemd {
                    what: "set properties".into(),
                    reason: "refused".into(),
                })
            })
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(read("memory.max").trim(), "67108864");
        assert_eq!(read("pids.max").trim(), "max");
        plan.execute_and(|| Ok(())).unwrap();
        assert_eq!(read("pids.max"), "30");
    }
}
