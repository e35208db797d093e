//! The executor's order as data.
//!
//! The container's init and an exec process each run a checklist of named
//! steps. The checklist is a pure function of the plan (which steps, in
//! which order); an [`Executor`] does each step. The order is what security
//! depends on, so it is unit-tested here without root against a recording
//! executor: mounts before pivot_root, capabilities dropped after every
//! privileged step, no_new_privs before a late seccomp filter, the filter
//! last before exec, the cwd checked after fds are closed.

use crate::error::Result;
use crate::plan::{NsKind, Plan, ProcessPlan};

/// One step of the init or of an exec process. The comments say what the
/// step does; `init.rs`, `exec.rs` and `process.rs` say why it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Die with the runtime until we are set up.
    ParentDeathSignal,
    /// The parent wrote the id maps (and, with the systemd driver, put us
    /// in the cgroup).
    WaitForParent,
    /// Move ourselves into each v1 cgroup hierarchy (files the parent
    /// opened; cgroup2 we were cloned into).
    EnterCgroup,
    /// Container processes may not read or ptrace the runtime inside.
    NonDumpable,
    /// Become root of the new user namespace.
    UserNsRoot,
    /// setns into the namespaces given by path (the user namespace first).
    JoinNamespaces,
    /// The cgroup namespace, once we are in our cgroup.
    UnshareCgroupNs,
    /// Namespaces that must belong to a joined user namespace.
    LateNamespaces,
    Hostname,
    /// A private procfs for every write to /proc (CVE-2025-52881).
    PrivateProc,
    Sysctl,
    /// Rootfs, spec mounts and devices, before pivot_root.
    Mounts,
    /// A pty from the container's devpts, its master to the console socket.
    Console,
    /// prestart/createRuntime hooks, run by the parent.
    ParentHooks,
    CreateContainerHooks,
    PivotRoot,
    /// No mount namespace of our own: chroot into the rootfs.
    Chroot,
    /// Read-only root, masked and read-only paths (after pivot_root).
    FinishRootfs,
    /// New session; the terminal becomes stdio and controlling tty.
    Setsid,
    /// exec: the pty for `exec -t`.
    Terminal,
    Rlimits,
    Keyring,
    // The hand-over (process.rs), shared by the init and exec.
    /// Resolve the program, build argv/env.
    ResolveProgram,
    /// Every fd but stdio and the preserved ones close-on-exec.
    CloseFds,
    /// The cwd is inside the root (CVE-2024-21626).
    CheckCwd,
    /// Without no_new_privs the filter needs CAP_SYS_ADMIN: load it now.
    SeccompEarly,
    UserAndCaps,
    /// chdir again as the container user.
    CheckCwdAsUser,
    NoNewPrivs,
    Umask,
    /// From here on the process outlives the runtime.
    ClearParentDeathSignal,
    ReportReady,
    /// Block on the exec fifo until `start`.
    WaitForStart,
    StartContainerHooks,
    ResetSignals,
    /// With no_new_privs, the filter loads last.
    SeccompLast,
    Exec,
}

/// Does the steps.
pub(crate) trait Executor {
    fn run_step(&mut self, step: Step) -> Result<()>;
}

/// Run `steps` in order; the first failure stops the rest.
pub(crate) fn run(steps: &[Step], e: &mut dyn Executor) -> Result<()> {
    for s in steps {
        e.run_step(*s)?;
    }
    Ok(())
}

/// The hand-over steps around the caller's `last` steps.
fn hand_over(p: &ProcessPlan, seccomp: bool, last: &[Step]) -> Vec<Step> {
    use Step::*;
    let mut v = vec![ResolveProgram, CloseFds, CheckCwd];
    if seccomp && !p.no_new_privs {
        v.push(SeccompEarly);
    }
    v.extend([UserAndCaps, CheckCwdAsUser]);
    if p.no_new_privs {
        v.push(NoNewPrivs);
    }
    v.push(Umask);
    v.extend_from_slice(last);
    v.push(ResetSignals);
    if seccomp && p.no_new_privs {
        v.push(SeccompLast);
    }
    v.push(Exec);
    v
}

/// What the init's checklist depends on besides the plan.
pub(crate) struct InitInputs {
    pub joins: bool,
    /// The init moves itself into v1 cgroup hierarchies.
    pub enters_cgroup: bool,
    pub seccomp: bool,
    pub no_new_keyring: bool,
}

/// The container's init, from clone to exec.
pub(crate) fn init(plan: &Plan, p: &ProcessPlan, i: &InitInputs) -> Vec<Step> {
    use Step::*;
    let mut v = vec![ParentDeathSignal, WaitForParent];
    if i.enters_cgroup {
        v.push(EnterCgroup);
    }
    v.push(NonDumpable);
    if plan.ns.is_new(NsKind::User) && plan.host_uid(0).is_some() {
        v.push(UserNsRoot);
    }
    if i.joins {
        v.push(JoinNamespaces);
    }
    if plan.ns.is_new(NsKind::Cgroup) && plan.ns.joined(NsKind::User).is_none() {
        v.push(UnshareCgroupNs);
    }
    if plan.ns.joined(NsKind::User).is_some() {
        v.push(LateNamespaces);
    }
    if plan.hostname.is_some() || plan.domainname.is_some() {
        v.push(Hostname);
    }
    v.push(PrivateProc);
    if !plan.sysctl.is_empty() {
        v.push(Sysctl);
    }
    let own_mntns = plan.ns.is_new(NsKind::Mount);
    if own_mntns {
        v.push(Mounts);
    }
    if p.terminal {
        v.push(Console);
    }
    v.push(ParentHooks);
    if !plan.hooks.create_container.is_empty() {
        v.push(CreateContainerHooks);
    }
    if own_mntns {
        v.extend([PivotRoot, FinishRootfs]);
    } else if plan.rootfs != std::path::Path::new("/") {
        v.push(Chroot);
    }
    v.push(Setsid);
    if !p.rlimits.is_empty() {
        v.push(Rlimits);
    }
    if !i.no_new_keyring {
        v.push(Keyring);
    }
    let mut last = vec![ClearParentDeathSignal, ReportReady, WaitForStart];
    if !plan.hooks.start_container.is_empty() {
        last.push(StartContainerHooks);
    }
    v.extend(hand_over(p, i.seccomp, &last));
    v
}

/// A process joining a running container (`exec`).
pub(crate) fn exec(p: &ProcessPlan, seccomp: bool, enters_cgroup: bool) -> Vec<Step> {
    use Step::*;
    let mut v = vec![ParentDeathSignal, NonDumpable, WaitForParent];
    if enters_cgroup {
        v.push(EnterCgroup);
    }
    v.push(JoinNamespaces);
    if p.terminal {
        v.push(Terminal);
    }
    if !p.rlimits.is_empty() {
        v.push(Rlimits);
    }
    v.extend(hand_over(p, seccomp, &[ClearParentDeathSignal]));
    v
}

#[cfg(test)]
mod tests {
    use super::Step::*;
    use super::*;

    fn plan(json: serde_json::Value) -> Plan {
        let mut base = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
        });
        merge(&mut base, json);
        let spec: oci_spec::runtime::Spec = serde_json::from_value(base).unwrap();
        Plan::from_spec(&spec, std::path::Path::new("/bundle")).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pos(v: &[Step], s: Step) -> usize {
        v.iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("{s:?} missing from {v:?}"))
    }

    fn before(v: &[Step], a: Step, b: Step) {
        assert!(pos(v, a) < pos(v, b), "{a:?} must come before {b:?}: {v:?}");
    }

    /// Plans that cover the checklist's branches.
    fn variants() -> Vec<(&'static str, Plan, InitInputs)> {
        let inputs = |seccomp: bool| InitInputs {
            joins: false,
            // A v1 or hybrid host with the cgroupfs driver: all but one.
            enters_cgroup: !seccomp,
            seccomp,
            no_new_keyring: false,
        };
        vec![
            ("plain", plan(serde_json::json!({})), inputs(false)),
            (
                "nnp+seccomp",
                plan(serde_json::json!({"process": {"noNewPrivileges": true}})),
                inputs(true),
            ),
            (
                "seccomp without nnp",
                plan(serde_json::json!({})),
                inputs(true),
            ),
            (
                "userns, terminal, hooks, sysctl",
                plan(serde_json::json!({
                    "process": {"terminal": true, "noNewPrivileges": true},
                    "hostname": "h",
                    "hooks": {"createContainer": [{"path": "/bin/true"}], "startContainer": [{"path": "/bin/true"}]},
                    "linux": {
                        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "user"}, {"type": "uts"}, {"type": "ipc"}, {"type": "cgroup"}],
                        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                        "sysctl": {"kernel.shmmax": "1"},
                    },
                })),
                inputs(true),
            ),
        ]
    }

    #[test]
    fn init_order_that_security_depends_on() {
        for (name, plan, i) in variants() {
            let p = plan.process.clone().unwrap();
            let v = init(&plan, &p, &i);
            let last = *v.last().unwrap();
            assert_eq!(last, Exec, "{name}: exec is last");
            // Nothing happens in the container's namespaces before the
            // parent wrote the id maps and we are in our cgroup, or while
            // we are dumpable.
            let head: &[Step] = if i.enters_cgroup {
                &[ParentDeathSignal, WaitForParent, EnterCgroup, NonDumpable]
            } else {
                &[ParentDeathSignal, WaitForParent, NonDumpable]
            };
            assert_eq!(&v[..head.len()], head, "{name}");
            // Mounts before pivot_root; the finishing remounts after.
            before(&v, Mounts, PivotRoot);
            before(&v, PivotRoot, FinishRootfs);
            // createContainer hooks see the mounts, before pivot_root.
            before(&v, ParentHooks, PivotRoot);
            // Every privileged step before capabilities go.
            for s in [
                Mounts,
                PivotRoot,
                FinishRootfs,
                PrivateProc,
                Setsid,
                Keyring,
            ] {
                before(&v, s, UserAndCaps);
            }
            if v.contains(&Hostname) {
                before(&v, Hostname, UserAndCaps);
            }
            if v.contains(&Sysctl) {
                before(&v, PrivateProc, Sysctl);
                before(&v, Sysctl, PivotRoot);
            }
            // The cwd is checked only after every other fd is closed.
            before(&v, CloseFds, CheckCwd);
            before(&v, UserAndCaps, CheckCwdAsUser);
            // Ready only once the process is fully set up.
            before(&v, UserAndCaps, ReportReady);
            before(&v, ReportReady, WaitForStart);
            if v.contains(&StartContainerHooks) {
                before(&v, WaitForStart, StartContainerHooks);
                before(&v, StartContainerHooks, ResetSignals);
            }
            if p.no_new_privs {
                before(&v, NoNewPrivs, Exec);
                if i.seccomp {
                    // no_new_privs first; then the filter, and then only exec.
                    before(&v, NoNewPrivs, SeccompLast);
                    assert_eq!(&v[v.len() - 2..], &[SeccompLast, Exec], "{name}");
                    assert!(!v.contains(&SeccompEarly), "{name}");
                }
            } else if i.seccomp {
                // Loading needs CAP_SYS_ADMIN: before capabilities drop.
                before(&v, SeccompEarly, UserAndCaps);
                assert!(!v.contains(&SeccompLast), "{name}");
            }
        }
    }

    #[test]
    fn exec_order_that_security_depends_on() {
        for (nnp, seccomp, terminal, enters_cgroup) in [
            (true, true, false, true),
            (false, true, true, false),
            (true, false, false, true),
        ] {
            let plan = plan(serde_json::json!({
                "process": {"noNewPrivileges": nnp, "terminal": terminal}
            }));
            let p = plan.process.unwrap();
            let v = exec(&p, seccomp, enters_cgroup);
            if enters_cgroup {
                // In the cgroup before the container's namespaces, with
                // the host's cgroup files closed before the cwd is checked.
                before(&v, WaitForParent, EnterCgroup);
                before(&v, EnterCgroup, JoinNamespaces);
            }
            before(&v, NonDumpable, JoinNamespaces);
            before(&v, WaitForParent, JoinNamespaces);
            before(&v, JoinNamespaces, UserAndCaps);
            before(&v, CloseFds, CheckCwd);
            assert_eq!(*v.last().unwrap(), Exec);
            if terminal {
                before(&v, JoinNamespaces, Terminal);
                before(&v, Terminal, UserAndCaps);
            }
            if seccomp && nnp {
                assert_eq!(&v[v.len() - 2..], &[SeccompLast, Exec]);
            }
            if seccomp && !nnp {
                before(&v, SeccompEarly, UserAndCaps);
            }
        }
    }

    /// A recording executor: what ran, and a step to fail at.
    struct Recorder {
        ran: Vec<Step>,
        fail_at: Option<Step>,
    }

    impl Executor for Recorder {
        fn run_step(&mut self, step: Step) -> Result<()> {
            self.ran.push(step);
            if self.fail_at == Some(step) {
                return Err(crate::Error::Other(format!("{step:?} failed")));
            }
            Ok(())
        }
    }

    #[test]
    fn a_failing_step_stops_the_rest_and_names_itself() {
        let (_, plan, i) = variants().remove(1);
        let p = plan.process.clone().unwrap();
        let steps = init(&plan, &p, &i);
        let mut r = Recorder {
            ran: Vec::new(),
            fail_at: None,
        };
        run(&steps, &mut r).unwrap();
        assert_eq!(r.ran, steps, "every step runs, in order");
        let mut r = Recorder {
            ran: Vec::new(),
            fail_at: Some(PivotRoot),
        };
        let e = run(&steps, &mut r).unwrap_err();
        assert!(e.to_string().contains("PivotRoot"), "{e}");
        assert_eq!(*r.ran.last().unwrap(), PivotRoot);
        assert!(!r.ran.contains(&UserAndCaps) && !r.ran.contains(&Exec));
    }
}
