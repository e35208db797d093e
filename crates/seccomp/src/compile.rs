//! `linux.seccomp` -> libseccomp filter context -> BPF program.
//!
//! Runs in the runtime parent, before clone: everything that can fail on a
//! bad spec fails here, with nothing to undo.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::error::{SeccompError, Warning};
use crate::filter::{flags, parse_program, CompiledFilter};

/// Errno returned when `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` has no
/// `errnoRet`/`defaultErrnoRet` (runtime-spec: EPERM).
const DEFAULT_ERRNO: u16 = libc::EPERM as u16;

/// Syscalls the container child makes between `load` and the listener
/// reaching the runtime ([`crate::send_fd`]): a NOTIFY rule on them would
/// deadlock (runc refuses `write` for the same reason).
const NOTIFY_FORBIDDEN: &[&str] = &["sendmsg", "socketcall"];

/// Every architecture token libseccomp knows; used to tell "unknown
/// anywhere" (error) from "not on this filter's architectures" (warning).
const ALL_ARCHES: &[ScmpArch] = &[
    ScmpArch::X8664,
    ScmpArch::X86,
    ScmpArch::X32,
    ScmpArch::Arm,
    ScmpArch::Aarch64,
    ScmpArch::Mips,
    ScmpArch::Mips64,
    ScmpArch::Mips64N32,
    ScmpArch::Mipsel,
    ScmpArch::Mipsel64,
    ScmpArch::Mipsel64N32,
    ScmpArch::Ppc,
    ScmpArch::Ppc64,
    ScmpArch::Ppc64Le,
    ScmpArch::S390,
    ScmpArch::S390X,
    ScmpArch::Parisc,
    ScmpArch::Parisc64,
    ScmpArch::Riscv64,
];

/// Compile an OCI `linux.seccomp` section into a loadable filter.
///
/// Semantics follow runc/crun where the runtime-spec is silent:
/// - a rule whose action (with its errno) equals the default action is
///   skipped (it would not change the program; libseccomp refuses it);
/// - within one rule, conditions on different arguments are ANDed; if two
///   conditions name the same argument index, each condition becomes its
///   own rule (ORed), as runc does;
/// - `SCMP_CMP_MASKED_EQ` uses `value` as the mask and `valueTwo` as the
///   value the masked argument must equal;
/// - a syscall name unknown to libseccomp is an error; a name that exists
///   on some architecture but on none in this filter is skipped with a
///   [`Warning`];
/// - the native architecture is always in the filter, in addition to
///   `architectures`; syscalls from other architectures are killed.
///
/// `SCMP_ACT_NOTIFY` is refused as `defaultAction` (the runtime's own
/// syscalls between load and execve would wait for an agent that does not
/// have the listener yet) and requires `listenerPath`.
pub fn compile(spec: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let default_action = action(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultErrnoRet",
    )?;
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::UnsupportedAction {
            field: "defaultAction".into(),
            action: "SCMP_ACT_NOTIFY".into(),
            reason: "as the default action (the runtime's own syscalls before execve would block)"
                .into(),
        });
    }

    let rules = spec.syscalls().as_deref().unwrap_or_default();
    let first_notify = rules
        .iter()
        .position(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    if let Some(idx) = first_notify {
        // User notification needs libseccomp API level 5 (libseccomp >= 2.5
        // and a kernel >= 5.0); get_api probes the kernel once.
        if libseccomp::get_api() < 5 {
            return Err(SeccompError::UnsupportedAction {
                field: format!("syscalls[{idx}].action"),
                action: "SCMP_ACT_NOTIFY".into(),
                reason: "by this libseccomp and kernel (needs libseccomp API level 5)".into(),
            });
        }
        if spec.listener_path().is_none() {
            return Err(SeccompError::MissingListenerPath {
                field: format!("syscalls[{idx}].action"),
            });
        }
    }
    let mut warnings = Vec::new();

    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Libseccomp {
            field: "defaultAction".into(),
            step: "seccomp_init",
            source,
        })?;
    // The default profile has ~350 syscalls: a binary tree keeps the
    // per-syscall cost logarithmic instead of a linear scan. Best effort:
    // libseccomp < 2.5 lacks the attribute and still emits a valid program.
    let _ = ctx.set_ctl_optimize(2);

    // Architectures. The native one is implicit in seccomp_init.
    let mut filter_arches = vec![ScmpArch::native()];
    for (idx, arch) in spec.architectures().iter().flatten().enumerate() {
        let scmp = scmp_arch(*arch);
        if filter_arches.contains(&scmp) {
            continue;
        }
        ctx.add_arch(scmp).map_err(|source| SeccompError::Arch {
            idx,
            arch: arch.to_string(),
            source,
        })?;
        filter_arches.push(scmp);
    }

    // Flags. TSYNC/LOG/SPEC_ALLOW/WAIT_KILLABLE_RECV go straight to
    // seccomp(2) in `load`; libseccomp's own attributes only matter for
    // seccomp_load, which hako never calls.
    let mut load_flags = 0u32;
    for (idx, flag) in spec.flags().iter().flatten().enumerate() {
        load_flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags::TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags::LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags::SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                if first_notify.is_none() {
                    // The kernel rejects it without NEW_LISTENER (EINVAL).
                    warnings.push(Warning {
                        field: format!("flags[{idx}]"),
                        message: "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no rule uses SCMP_ACT_NOTIFY".into(),
                    });
                    0
                } else {
                    flags::WAIT_KILLABLE_RECV
                }
            }
        };
    }
    if first_notify.is_some() {
        load_flags |= flags::NEW_LISTENER;
        if load_flags & flags::TSYNC != 0 {
            // TSYNC and NEW_LISTENER both want the return value; the kernel
            // only accepts the pair with TSYNC_ESRCH (Linux >= 5.7).
            load_flags |= flags::TSYNC_ESRCH;
        }
    }

    // (syscall nr, rule index, action) of unconditional rules added so far.
    let mut unconditional: Vec<(i32, usize, ScmpAction)> = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        if rule.names().is_empty() {
            return Err(SeccompError::EmptyNames { rule: ri });
        }
        let act = action(
            rule.action(),
            rule.errno_ret(),
            &format!("syscalls[{ri}].errnoRet"),
        )?;
        let cond_sets = conditions(ri, rule.args().as_deref().unwrap_or_default())?;
        for (ni, name) in rule.names().iter().enumerate() {
            if act == ScmpAction::Notify && NOTIFY_FORBIDDEN.contains(&name.as_str()) {
                return Err(SeccompError::UnsupportedAction {
                    field: format!("syscalls[{ri}].names[{ni}]"),
                    action: "SCMP_ACT_NOTIFY".into(),
                    reason: format!(
                        "for {name:?}: the container child uses it to hand the listener to the runtime, so it would wait for an agent that does not have the listener yet"
                    ),
                });
            }
            let Some(syscall) = resolve(ri, ni, name, &filter_arches, &mut warnings)? else {
                continue;
            };
            if act == default_action {
                // No effect on the program, and libseccomp refuses it.
                continue;
            }
            if cond_sets.len() == 1 && cond_sets[0].is_empty() {
                // libseccomp silently keeps the first unconditional rule for a
                // syscall; say so instead of dropping the later one quietly.
                let nr = syscall.as_raw_syscall();
                match unconditional.iter().find(|(n, _, _)| *n == nr) {
                    Some((_, first, first_act)) if *first_act != act => {
                        warnings.push(Warning {
                            field: format!("syscalls[{ri}].names[{ni}]"),
                            message: format!(
                                "{name:?} already has an unconditional rule in syscalls[{first}] with another action; libseccomp keeps that one, this rule has no effect"
                            ),
                        });
                        continue;
                    }
                    Some(_) => {}
                    None => unconditional.push((nr, ri, act)),
                }
            }
            for conds in &cond_sets {
                ctx.add_rule_conditional(act, syscall, conds)
                    .map_err(|source| SeccompError::Libseccomp {
                        field: format!("syscalls[{ri}].names[{ni}]"),
                        step: "seccomp_rule_add",
                        source,
                    })?;
            }
        }
    }

    let bpf = export(&ctx)?;
    CompiledFilter::new(bpf, load_flags, warnings)
}

/// Map an OCI action (+ errno) to libseccomp's.
fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction, SeccompError> {
    let data = |default: u16| -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(default),
            Some(v) => u16::try_from(v).map_err(|_| SeccompError::ErrnoRetRange {
                field: errno_field.to_string(),
                value: v,
            }),
        }
    };
    let no_errno = || -> Result<(), SeccompError> {
        match errno_ret {
            None => Ok(()),
            Some(_) => Err(SeccompError::ErrnoRetNotAllowed {
                field: errno_field.to_string(),
                action: act.to_string(),
            }),
        }
    };
    Ok(match act {
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data(DEFAULT_ERRNO)?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data(DEFAULT_ERRNO)?),
        other => {
            no_errno()?;
            match other {
                // OCI's SCMP_ACT_KILL is the historic thread kill.
                LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                    ScmpAction::KillThread
                }
                LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
                LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
                LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
                LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
                LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
                LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace => {
                    unreachable!("handled above")
                }
            }
        }
    })
}

/// The argument conditions of rule `ri` as a list of condition sets, each
/// set becoming one libseccomp rule (sets are ORed, conditions within a set
/// ANDed).
fn conditions(
    ri: usize,
    args: &[LinuxSeccompArg],
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut cmps = Vec::with_capacity(args.len());
    for (ai, arg) in args.iter().enumerate() {
        let index = u32::try_from(arg.index())
            .ok()
            .filter(|i| *i < 6)
            .ok_or_else(|| SeccompError::ArgIndex {
                field: format!("syscalls[{ri}].args[{ai}].index"),
                index: arg.index(),
            })?;
        let op = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                // OCI: value = mask, valueTwo = expected masked value.
                cmps.push((
                    index,
                    ScmpArgCompare::new(
                        index,
                        ScmpCompareOp::MaskedEqual(arg.value()),
                        arg.value_two().unwrap_or(0),
                    ),
                ));
                continue;
            }
        };
        cmps.push((index, ScmpArgCompare::new(index, op, arg.value())));
    }
    let repeated_index = cmps
        .iter()
        .enumerate()
        .any(|(i, (idx, _))| cmps[..i].iter().any(|(other, _)| other == idx));
    Ok(if repeated_index {
        cmps.into_iter().map(|(_, c)| vec![c]).collect()
    } else {
        vec![cmps.into_iter().map(|(_, c)| c).collect()]
    })
}

/// Resolve a syscall name for this filter. `Ok(None)`: the name exists on
/// some architecture but on none of `filter_arches` (warning recorded).
fn resolve(
    ri: usize,
    ni: usize,
    name: &str,
    filter_arches: &[ScmpArch],
    warnings: &mut Vec<Warning>,
) -> Result<Option<ScmpSyscall>, SeccompError> {
    let unknown = || SeccompError::UnknownSyscall {
        rule: ri,
        name_idx: ni,
        name: name.to_string(),
    };
    let on_arch = |arch: ScmpArch| exists_on(name, arch);
    // Native resolution gives a real number, a libseccomp pseudo number
    // (negative: the name exists elsewhere, libseccomp translates it per
    // architecture), or an error.
    match ScmpSyscall::from_name(name) {
        Ok(sys) if sys.as_raw_syscall() >= 0 => Ok(Some(sys)),
        Ok(sys) if filter_arches.iter().any(|a| on_arch(*a)) => Ok(Some(sys)),
        _ if ALL_ARCHES.iter().any(|a| on_arch(*a)) => {
            warnings.push(Warning {
                field: format!("syscalls[{ri}].names[{ni}]"),
                message: format!(
                    "syscall {name:?} does not exist on {}; rule skipped",
                    arch_list(filter_arches)
                ),
            });
            Ok(None)
        }
        _ => Err(unknown()),
    }
}

/// Whether `name` is a syscall on `arch`, directly or as a subcall of a
/// multiplexer: libseccomp numbers socketcall(2) subcalls -100..-199 and
/// ipc(2) subcalls -200..-299 and filters them by the multiplexer's first
/// argument on architectures that have one (i386, s390, ...).
fn exists_on(name: &str, arch: ScmpArch) -> bool {
    let nr = |n: &str| {
        ScmpSyscall::from_name_by_arch(n, arch)
            .map(|s| s.as_raw_syscall())
            .unwrap_or(-1)
    };
    match nr(name) {
        n if n >= 0 => true,
        n if (-199..=-100).contains(&n) => nr("socketcall") >= 0,
        n if (-299..=-200).contains(&n) => nr("ipc") >= 0,
        _ => false,
    }
}

fn arch_list(arches: &[ScmpArch]) -> String {
    arches
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::native(),
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Export the program with `seccomp_export_bpf` into a memfd and read it
/// back (libseccomp 2.5 has no in-memory export; 2.6's
/// `seccomp_export_bpf_mem` would avoid the fd).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let err = |step| move |source| SeccompError::Export { step, source };
    // SAFETY: memfd_create reads a NUL-terminated name (a C string literal)
    // and returns a new fd or -1; it touches no Rust memory.
    let raw = unsafe { libc::memfd_create(c"hako-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(err("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a freshly created fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    ctx.export_bpf(&fd)
        .map_err(|e| err("seccomp_export_bpf")(std::io::Error::other(e.to_string())))?;
    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0)).map_err(err("lseek"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(err("read"))?;
    parse_program(&bytes)
}
