//! Unit tests: spec validation, flags, the default profile as data. No
//! filter is loaded here (see tests/load.rs for that).

use std::os::fd::AsFd;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSyscall};

use crate::profile::{parsed, DEFAULT_PROFILE_JSON};
use crate::{
    compile, default_profile, default_profile_for_arch, flags, CompiledFilter, SeccompError,
};

fn spec(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("test spec parses")
}

fn err(json: &str) -> String {
    compile(&spec(json))
        .expect_err("spec must be rejected")
        .to_string()
}

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every rule mentioning `name`.
fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    s.syscalls()
        .iter()
        .flatten()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect()
}

fn allowed_unconditionally(s: &LinuxSeccomp, name: &str) -> bool {
    rules_for(s, name).iter().any(|r| {
        r.action() == LinuxSeccompAction::ScmpActAllow
            && r.args().as_ref().map_or(true, |a| a.is_empty())
    })
}

const ALL_CAPS: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYS_NICE",
    "CAP_SYSLOG",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_DAC_READ_SEARCH",
];

// ---- spec validation: errors name the field ----

#[test]
fn unknown_syscall_names_rule_and_name_index() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"},
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["fooo"],"action":"SCMP_ACT_ERRNO"}]}"#);
    assert_eq!(
        e,
        r#"linux.seccomp.syscalls[3].names[0]: unknown syscall "fooo""#
    );
}

#[test]
fn empty_names_rejected() {
    let e = err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].names: empty"),
        "{e}"
    );
}

#[test]
fn errno_ret_only_with_errno_or_trace() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW","errnoRet":5}]}"#);
    assert_eq!(
        e,
        "linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"
    );
    let e = err(r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","defaultErrnoRet":1}"#);
    assert!(
        e.starts_with("linux.seccomp.defaultErrnoRet: only valid"),
        "{e}"
    );
    // TRACE takes a return value.
    compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_TRACE","errnoRet":7}]}"#,
    ))
    .unwrap();
}

#[test]
fn errno_ret_must_fit_16_bits() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#);
    assert_eq!(
        e,
        "linux.seccomp.defaultErrnoRet: 70000 does not fit in the 16-bit seccomp return data"
    );
}

#[test]
fn arg_index_out_of_range() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
            {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#);
    assert!(
        e.starts_with("linux.seccomp.syscalls[1].args[1].index: argument index 6 out of range"),
        "{e}"
    );
}

#[test]
fn notify_as_default_action_rejected() {
    let e = err(
        r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/x","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    assert!(
        e.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY not supported"),
        "{e}"
    );
}

#[test]
fn notify_needs_listener_path() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}]}"#);
    assert_eq!(
        e,
        "linux.seccomp.listenerPath: required because syscalls[1].action uses SCMP_ACT_NOTIFY"
    );
}

#[test]
fn unknown_action_is_a_parse_error() {
    let r: Result<LinuxSeccomp, _> = serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#);
    assert!(r.is_err());
}

// ---- semantics ----

#[test]
fn name_known_on_other_arch_is_skipped_with_warning() {
    // socketcall exists on i386 only; arm_fadvise64_64 on ARM only.
    let f = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["getcwd","socketcall","arm_fadvise64_64"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let w: Vec<String> = f.warnings().iter().map(|w| w.to_string()).collect();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                r#"linux.seccomp.syscalls[0].names[1]: syscall "socketcall" does not exist on"#
            ),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("linux.seccomp.syscalls[0].names[2]:"),
            "{w:?}"
        );
        // With i386 in the filter, socketcall is real and no longer skipped.
        let f = compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"syscalls":[
            {"names":["socketcall"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    }
}

#[test]
fn rule_equal_to_default_is_skipped() {
    let base = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    let with_noop = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"},
        {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    ))
    .unwrap();
    assert_eq!(base.program_bytes(), with_noop.program_bytes());
    // A different errno is a different action and is kept.
    let different = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"},
        {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    ))
    .unwrap();
    assert_ne!(base.program_bytes(), different.program_bytes());
}

#[test]
fn all_operators_and_repeated_arg_index_compile() {
    compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
            {"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":9,"op":"SCMP_CMP_EQ"}]},
        {"names":["dup3"],"action":"SCMP_ACT_ERRNO","args":[
            {"index":0,"value":1,"op":"SCMP_CMP_NE"},{"index":1,"value":2,"op":"SCMP_CMP_LT"},
            {"index":2,"value":3,"op":"SCMP_CMP_LE"}]},
        {"names":["mmap"],"action":"SCMP_ACT_LOG","args":[
            {"index":3,"value":4,"op":"SCMP_CMP_GE"},{"index":4,"value":5,"op":"SCMP_CMP_GT"},
            {"index":5,"value":255,"valueTwo":1,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    ))
    .unwrap();
}

#[test]
fn every_action_compiles() {
    for act in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ] {
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock","syscalls":[
                {{"names":["getppid"],"action":"{act}"}}]}}"#
        );
        let f = compile(&spec(&json)).unwrap_or_else(|e| panic!("{act}: {e}"));
        assert_eq!(f.needs_listener(), act == "SCMP_ACT_NOTIFY", "{act}");
    }
    for def in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
    ] {
        let json = format!(
            r#"{{"defaultAction":"{def}","syscalls":[{{"names":["read"],"action":"SCMP_ACT_ALLOW"}}]}}"#
        );
        compile(&spec(&json)).unwrap_or_else(|e| panic!("{def}: {e}"));
    }
}

#[test]
fn spec_flags_become_seccomp_flags() {
    let f = compile(&spec(r#"{"defaultAction":"SCMP_ACT_ALLOW",
        "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#))
    .unwrap();
    assert_eq!(f.flags(), flags::TSYNC | flags::LOG | flags::SPEC_ALLOW);
    assert!(!f.needs_listener());

    let f = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x",
        "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    ))
    .unwrap();
    assert_eq!(
        f.flags(),
        flags::TSYNC | flags::NEW_LISTENER | flags::TSYNC_ESRCH | flags::WAIT_KILLABLE_RECV
    );
    assert!(f.needs_listener());

    let f = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
        "flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    assert_eq!(f.flags(), 0);
    assert_eq!(f.warnings().len(), 1);
    assert_eq!(f.warnings()[0].field, "flags[0]");
}

#[test]
fn program_bytes_round_trip() {
    let f = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let bytes = f.program_bytes();
    assert_eq!(bytes.len(), f.len() * 8);
    let back = CompiledFilter::from_bpf_bytes(bytes, f.flags()).unwrap();
    assert_eq!(back, f);
    assert!(matches!(
        CompiledFilter::from_bpf_bytes(&bytes[..7], 0),
        Err(SeccompError::BadProgram { len: 7 })
    ));
    assert!(CompiledFilter::from_bpf_bytes(&vec![0u8; 8 * 4097], 0).is_err());
    // Deterministic: the same spec gives the same program (cacheable by hash).
    let again = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    assert_eq!(again, f);
}

#[test]
fn full_oci_section_parses_and_compiles() {
    // Shaped like a config.json `linux.seccomp`, unknown sibling keys included.
    let s = spec(
        r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW", "comment": "ignored"},
            {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]
    }"#,
    );
    let f = compile(&s).unwrap();
    assert!(f.needs_listener());
    assert!(f.warnings().is_empty(), "{:?}", f.warnings());
}

// ---- the default profile as data ----

#[test]
fn default_profile_parses() {
    let file = parsed();
    assert!(!file.syscalls.is_empty());
    for (i, r) in file.syscalls.iter().enumerate() {
        assert!(!r.comment.trim().is_empty(), "syscalls[{i}] has no comment");
        assert!(!r.rule.names().is_empty(), "syscalls[{i}] has no names");
    }
    for (i, d) in file.denied.iter().enumerate() {
        assert!(!d.comment.trim().is_empty(), "denied[{i}] has no comment");
    }
    // oci-spec tolerates the extension fields, so the file is also plain OCI.
    let raw: LinuxSeccomp = serde_json::from_str(DEFAULT_PROFILE_JSON).unwrap();
    assert_eq!(raw.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(raw.default_errno_ret(), Some(1));
}

#[test]
fn default_profile_compiles_without_warnings_for_any_caps() {
    for caps in [caps(&[]), caps(ALL_CAPS)] {
        let p = default_profile(&caps);
        let f = compile(&p).unwrap_or_else(|e| panic!("caps {caps:?}: {e}"));
        assert!(f.warnings().is_empty(), "caps {caps:?}: {:?}", f.warnings());
        assert!(!f.needs_listener());
    }
}

#[test]
fn default_profile_names_exist_somewhere() {
    // Compile every rule of the file for every arch it may be used on; an
    // unknown name would be an error, not a warning.
    for arch in ["x86_64", "aarch64", "s390x", "riscv64", "powerpc64"] {
        let p = default_profile_for_arch(&caps(ALL_CAPS), arch);
        let mut p2 = p.clone();
        p2.set_architectures(None); // host libseccomp may lack nothing, but keep it native-only
        compile(&p2).unwrap_or_else(|e| panic!("{arch}: {e}"));
    }
}

#[test]
fn capability_gating() {
    let none = default_profile(&[]);
    let ptrace = default_profile(&caps(&["CAP_SYS_PTRACE"]));
    let admin = default_profile(&caps(&["sys_admin"])); // spelling is normalized
    for name in ["ptrace", "process_vm_readv", "kcmp", "pidfd_getfd"] {
        assert!(
            !allowed_unconditionally(&none, name),
            "{name} without CAP_SYS_PTRACE"
        );
        assert!(
            allowed_unconditionally(&ptrace, name),
            "{name} with CAP_SYS_PTRACE"
        );
    }
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "sethostname",
        "bpf",
        "perf_event_open",
    ] {
        assert!(
            !allowed_unconditionally(&none, name),
            "{name} without CAP_SYS_ADMIN"
        );
        assert!(
            !allowed_unconditionally(&ptrace, name),
            "{name} with only CAP_SYS_PTRACE"
        );
        assert!(
            allowed_unconditionally(&admin, name),
            "{name} with CAP_SYS_ADMIN"
        );
    }
    // clone: namespace flags masked without CAP_SYS_ADMIN, free with it; clone3 -> ENOSYS.
    assert!(!allowed_unconditionally(&none, "clone"));
    assert_eq!(rules_for(&none, "clone").len(), 1);
    let clone3 = rules_for(&none, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(38));
    assert!(allowed_unconditionally(&admin, "clone"));
    assert!(allowed_unconditionally(&admin, "clone3"));
    assert!(rules_for(&admin, "clone3")
        .iter()
        .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    // Single-capability gates.
    for (cap, name) in [
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_CHROOT", "chroot"),
        ("CAP_SYS_MODULE", "init_module"),
        ("CAP_SYS_PACCT", "acct"),
        ("CAP_SYS_TIME", "settimeofday"),
        ("CAP_SYSLOG", "syslog"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ] {
        assert!(!allowed_unconditionally(&none, name), "{name}");
        assert!(
            allowed_unconditionally(&default_profile(&caps(&[cap])), name),
            "{name} with {cap}"
        );
    }
}

#[test]
fn denied_syscalls_are_never_allowed() {
    let file = parsed();
    let everything = default_profile(&caps(ALL_CAPS));
    for group in &file.denied {
        for name in &group.names {
            assert!(
                rules_for(&everything, name).is_empty(),
                "{name} is listed as denied but has a rule"
            );
        }
    }
    for name in [
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "pivot_root",
        "swapon",
        "io_uring_setup",
    ] {
        assert!(
            file.denied
                .iter()
                .any(|g| g.names.iter().any(|n| n == name)),
            "{name} not documented"
        );
    }
}

#[test]
fn default_profile_architectures_follow_host() {
    let x = default_profile_for_arch(&[], "x86_64");
    assert_eq!(
        x.architectures()
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    assert!(allowed_unconditionally(&x, "arch_prctl"));
    assert!(!allowed_unconditionally(&x, "cacheflush"));
    let a = default_profile_for_arch(&[], "aarch64");
    assert!(allowed_unconditionally(&a, "cacheflush"));
    assert!(!allowed_unconditionally(&a, "arch_prctl"));
    // s390x swaps clone's arguments.
    let s = default_profile_for_arch(&[], "s390x");
    let clone = rules_for(&s, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args().as_ref().unwrap()[0].index(), 1);
}

// ---- listener plumbing without fork ----

#[test]
fn send_and_recv_fd_over_socketpair() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let n = crate::send_fd(a.as_fd(), file.as_fd(), b"hello").unwrap();
    assert_eq!(n, 5);
    let mut buf = [0u8; 16];
    let (n, fd) = crate::recv_fd(b.as_fd(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let fd = fd.expect("an fd arrived");
    let ours = std::fs::metadata("/proc/self/exe").unwrap();
    let theirs = std::fs::File::from(fd).metadata().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
    assert!(crate::send_fd(a.as_fd(), file.as_fd(), b"").is_err());
}

#[test]
fn process_state_json_shape() {
    let state: oci_spec::runtime::State = serde_json::from_str(
        r#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#,
    )
    .unwrap();
    let json = crate::process_state_json(&state, 42, Some("meta"));
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["ociVersion"], "1.2.0");
    assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(v["pid"], 42);
    assert_eq!(v["metadata"], "meta");
    assert_eq!(v["state"]["id"], "c1");
    assert_eq!(v["state"]["status"], "creating");
}

#[test]
fn default_profile_allows_the_basics() {
    // Regression guard: things every shell and libc start-up needs.
    let p = default_profile(&[]);
    for name in [
        "read",
        "write",
        "openat",
        "close",
        "mmap",
        "mprotect",
        "brk",
        "pipe",
        "pipe2",
        "execve",
        "exit_group",
        "wait4",
        "rt_sigaction",
        "futex",
        "newfstatat",
        "getdents64",
        "ioctl",
        "prlimit64",
        "getrandom",
        "rseq",
        "set_robust_list",
        "arch_prctl",
    ] {
        if name == "arch_prctl" && !cfg!(target_arch = "x86_64") {
            continue;
        }
        assert!(allowed_unconditionally(&p, name), "{name}");
    }
}

#[test]
fn conflicting_unconditional_rules_warn() {
    let f = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_KILL","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["write","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    let w: Vec<String> = f.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with(r#"linux.seccomp.syscalls[1].names[1]: "read" already has an unconditional rule in syscalls[0]"#), "{w:?}");
}

#[test]
fn names_are_checked_even_in_rules_equal_to_default() {
    let e = err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read","fooo"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    assert_eq!(
        e,
        r#"linux.seccomp.syscalls[0].names[1]: unknown syscall "fooo""#
    );
}

#[test]
fn notify_on_the_handover_syscall_rejected() {
    let e = err(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ERRNO"},
        {"names":["getppid","sendmsg"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    );
    assert!(
        e.starts_with(
            r#"linux.seccomp.syscalls[1].names[1]: SCMP_ACT_NOTIFY not supported for "sendmsg""#
        ),
        "{e}"
    );
}
