//! Load compiled filters into forked children and check what the kernel does.
//!
//! Pattern (the runtime's): compile in the parent, fork, and in the child
//! only set no_new_privs, `load()`, probe with raw syscalls and `_exit`.
//! Children only make async-signal-safe calls: the test harness is
//! multi-threaded, so the child must not allocate or take locks. Each child
//! arms `alarm(20)` so a bug cannot hang the suite.
//!
//! Runs as any user (no_new_privs makes seccomp unprivileged), but some
//! probes (unshare/mount succeeding with the capability) expect root; they
//! are skipped otherwise.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use hako_seccomp::{
    compile, default_profile, recv_fd, send_fd, send_listener, CompiledFilter, LinuxSeccomp,
};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Signaled(i32),
}

/// Fork; in the child run `f` and `_exit` with its result.
fn in_child(f: impl FnOnce() -> i32) -> Outcome {
    // SAFETY: fork has no memory-safety preconditions; the child below only
    // runs `f` (async-signal-safe by this file's convention) and `_exit`s
    // without returning into the test harness or running destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm and _exit are async-signal-safe and take plain values.
        unsafe {
            libc::alarm(20);
            let code = f();
            libc::_exit(code)
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a live local int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "waitpid: {e}");
    }
    if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        panic!("unexpected wait status {status:#x}")
    }
}

fn spec(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("test spec parses")
}

fn errno() -> i32 {
    // No allocation: an OS error is stored inline.
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Child side: no_new_privs, then install the filter. Returns 0 or an exit code.
fn nnp_and_load(filter: &CompiledFilter) -> i32 {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return 90;
    }
    match filter.load() {
        Ok(None) => 0,
        Ok(Some(_)) => 91,
        Err(_) => 92,
    }
}

/// Raw syscall returning -errno on failure.
macro_rules! sys {
    ($($arg:expr),+ $(,)?) => {{
        // SAFETY: each probe passes either plain integers or pointers to live
        // locals / static C strings that the syscall only reads or writes
        // within their stated length.
        let r = unsafe { libc::syscall($($arg),+) };
        if r < 0 { -(errno() as i64) } else { r }
    }};
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn errno_action_returns_eperm_or_errno_ret() {
    let eperm = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let custom = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    ))
    .unwrap();
    // Also through the cache path: bytes -> filter.
    let cached = CompiledFilter::from_bpf_bytes(custom.program_bytes(), custom.flags()).unwrap();

    for (filter, want) in [
        (&eperm, libc::EPERM),
        (&custom, libc::EACCES),
        (&cached, libc::EACCES),
    ] {
        let out = in_child(|| {
            let rc = nnp_and_load(filter);
            if rc != 0 {
                return rc;
            }
            let mut buf = [0u8; 256];
            let r = sys!(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len());
            if r >= 0 {
                return 100;
            }
            // getpid is untouched by the filter.
            if sys!(libc::SYS_getpid) <= 0 {
                return 101;
            }
            (-r) as i32
        });
        assert_eq!(out, Outcome::Exited(want));
    }
}

#[test]
fn argument_conditions() {
    // personality: arg0 == 8 OR arg0 == 0x20008 -> EACCES (repeated index = OR).
    // umask: (arg0 & 0o700) == 0o700 -> EDOM (MASKED_EQ: value = mask, valueTwo = datum).
    // dup3: arg2 > 0 AND arg0 == 1000 -> EXDEV (AND across indexes).
    let filter = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[
                {"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":131080,"op":"SCMP_CMP_EQ"}]},
            {"names":["umask"],"action":"SCMP_ACT_ERRNO","errnoRet":33,"args":[
                {"index":0,"value":448,"valueTwo":448,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":18,"args":[
                {"index":0,"value":1000,"op":"SCMP_CMP_EQ"},{"index":2,"value":0,"op":"SCMP_CMP_GT"}]}
        ]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return rc;
        }
        if sys!(libc::SYS_personality, 0xffff_ffffu64) < 0 {
            return 10; // query must pass
        }
        if sys!(libc::SYS_personality, 8u64) != -(libc::EACCES as i64) {
            return 11;
        }
        if sys!(libc::SYS_personality, 0x20008u64) != -(libc::EACCES as i64) {
            return 12;
        }
        if sys!(libc::SYS_umask, 0o777u64) != -(libc::EDOM as i64) {
            return 13;
        }
        if sys!(libc::SYS_umask, 0o022u64) < 0 {
            return 14;
        }
        if sys!(libc::SYS_dup3, 1000u64, 1001u64, libc::O_CLOEXEC as u64) != -(libc::EXDEV as i64) {
            return 15;
        }
        // Same fd, no flags: condition on arg2 false -> real dup3 -> EBADF (1000 not open).
        if sys!(libc::SYS_dup3, 1000u64, 1001u64, 0u64) != -(libc::EBADF as i64) {
            return 16;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn kill_process_default_kills_with_sigsys() {
    let filter = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[
            {"names":["exit_group","exit"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    let killed = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return rc;
        }
        sys!(libc::SYS_getpid);
        1
    });
    assert_eq!(killed, Outcome::Signaled(libc::SIGSYS));
    // The allowed exit_group still works.
    let exited = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return rc;
        }
        7
    });
    assert_eq!(exited, Outcome::Exited(7));
}

#[test]
fn spec_flags_load() {
    let filter = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":5}]}"#,
    ))
    .unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return 50 + rc;
        }
        let mut buf = [0u8; 64];
        (-sys!(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len())) as i32
    });
    assert_eq!(out, Outcome::Exited(libc::EIO));
}

fn temp_socket_path(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!(
        "hako-seccomp-{tag}-{}-{nanos}.sock",
        std::process::id()
    ))
}

/// The full SCMP_ACT_NOTIFY path: child loads and hands the listener to the
/// parent over a sync socket; the parent forwards it to the agent at
/// listenerPath with the process state; the agent answers the notification.
#[test]
fn notify_listener_reaches_agent_and_answers() {
    let path = temp_socket_path("agent");
    let agent_sock = UnixListener::bind(&path).unwrap();
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"{}","listenerMetadata":"probe",
            "flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls":[{{"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}}]}}"#,
        path.display()
    );
    let seccomp = spec(&json);
    let filter = compile(&seccomp).unwrap();
    assert!(filter.needs_listener());

    // Agent: receive state + fd, then answer one notification with 4242.
    let agent = std::thread::spawn(move || -> Result<(serde_json::Value, u64), String> {
        let (conn, _) = agent_sock.accept().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut n, fd) = recv_fd(conn.as_fd(), &mut buf).map_err(|e| e.to_string())?;
        let listener = fd.ok_or("no fd in SCM_RIGHTS")?;
        loop {
            use std::io::Read;
            let m = (&conn).read(&mut buf[n..]).map_err(|e| e.to_string())?;
            if m == 0 {
                break;
            }
            n += m;
        }
        let state: serde_json::Value =
            serde_json::from_slice(&buf[..n]).map_err(|e| e.to_string())?;
        // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed before RECV.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        use std::os::fd::AsRawFd;
        // SAFETY: NOTIF_RECV writes one seccomp_notif into `req`, a live local.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req,
            )
        } != 0
        {
            return Err(format!("NOTIF_RECV: {}", io::Error::last_os_error()));
        }
        if i64::from(req.data.nr) != libc::SYS_getppid {
            return Err(format!("notified for syscall {}", req.data.nr));
        }
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 4242,
            error: 0,
            flags: 0,
        };
        // SAFETY: NOTIF_SEND reads one seccomp_notif_resp from `resp`, a live local.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            )
        } != 0
        {
            return Err(format!("NOTIF_SEND: {}", io::Error::last_os_error()));
        }
        Ok((state, u64::from(req.pid)))
    });

    let (parent_end, child_end) = UnixStream::pair().unwrap();
    let out_child = {
        let filter = &filter;
        let child_end = &child_end;
        move || {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return 90;
            }
            let listener = match filter.load() {
                Ok(Some(fd)) => fd,
                Ok(None) => return 91,
                Err(_) => return 92,
            };
            // What the runtime child does: pass the listener up, close it, go on.
            if send_fd(child_end.as_fd(), listener.as_fd(), b"L").is_err() {
                return 93;
            }
            drop(listener);
            match sys!(libc::SYS_getppid) {
                4242 => 0,
                _ => 94,
            }
        }
    };
    // Parent side runs concurrently with the child: fork first, then relay.
    let relay = {
        let state_json = {
            let state: oci_spec::runtime::State = serde_json::from_str(
                r#"{"ociVersion":"1.2.0","id":"notify-test","status":"creating","bundle":"/"}"#,
            )
            .unwrap();
            hako_seccomp::process_state_json(&state, 1, seccomp.listener_metadata().as_deref())
        };
        let path = path.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let mut b = [0u8; 1];
            let (_, fd) = recv_fd(parent_end.as_fd(), &mut b).map_err(|e| e.to_string())?;
            let listener = fd.ok_or("child sent no fd")?;
            send_listener(&path, listener.as_fd(), &state_json).map_err(|e| e.to_string())
        })
    };
    let outcome = in_child(out_child);
    let relayed = relay.join().unwrap();
    if relayed.is_err() {
        // Unblock the agent's accept() so the test fails instead of hanging.
        let _ = UnixStream::connect(&path);
    }
    let agent_result = agent.join().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        outcome,
        Outcome::Exited(0),
        "relay: {relayed:?}, agent: {agent_result:?}"
    );
    relayed.unwrap();
    let (state, pid) = agent_result.unwrap();
    assert!(pid > 0);
    assert_eq!(state["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(state["metadata"], "probe");
    assert_eq!(state["state"]["id"], "notify-test");
}

const BIN_TRUE: &CStr = c"/bin/true";
const BIN_SH: &CStr = c"/bin/sh";

/// execve from the child with prepared argv; returns only on failure.
fn exec(argv: &[*const libc::c_char]) -> i32 {
    let envp: [*const libc::c_char; 2] = [c"PATH=/usr/bin:/bin".as_ptr(), std::ptr::null()];
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to static
    // NUL-terminated strings; execve only reads them.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    100 + errno()
}

#[test]
fn default_profile_blocks_privileged_and_runs_programs() {
    let filter = compile(&default_profile(&[])).unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return rc;
        }
        let eperm = -(libc::EPERM as i64);
        if sys!(libc::SYS_unshare, libc::CLONE_NEWUTS as u64) != eperm {
            return 10;
        }
        let r = sys!(
            libc::SYS_mount,
            c"none".as_ptr(),
            c"/nonexistent-hako".as_ptr(),
            c"tmpfs".as_ptr(),
            0u64,
            std::ptr::null::<libc::c_void>()
        );
        if r != eperm {
            return 11; // unfiltered this would be ENOENT
        }
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
        if sys!(libc::SYS_keyctl, 0u64, -3i64, 0u64) != eperm {
            return 12;
        }
        if sys!(
            libc::SYS_ptrace,
            libc::PTRACE_TRACEME as u64,
            0u64,
            0u64,
            0u64
        ) != eperm
        {
            return 13;
        }
        if sys!(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0u64) != -(libc::ENOSYS as i64)
        {
            return 14;
        }
        if sys!(
            libc::SYS_socket,
            libc::AF_VSOCK as u64,
            libc::SOCK_STREAM as u64,
            0u64
        ) != eperm
        {
            return 15;
        }
        // ADDR_NO_RANDOMIZE is not an allowed persona.
        if sys!(libc::SYS_personality, 0x0040000u64) != eperm {
            return 16;
        }
        if sys!(
            libc::SYS_io_uring_setup,
            1u64,
            std::ptr::null::<libc::c_void>()
        ) != eperm
        {
            return 17;
        }
        exec(&[BIN_TRUE.as_ptr(), std::ptr::null()])
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn default_profile_runs_a_shell_pipeline() {
    // fork (clone without namespace flags), pipes, execs, dynamic loading.
    let filter = compile(&default_profile(&[])).unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&filter);
        if rc != 0 {
            return rc;
        }
        exec(&[
            BIN_SH.as_ptr(),
            c"-c".as_ptr(),
            c"grep -q '^Seccomp:[[:space:]]*2' /proc/self/status && ls / | sort >/dev/null && echo ok | cat >/dev/null"
                .as_ptr(),
            std::ptr::null(),
        ])
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn default_profile_capabilities_unlock_their_syscalls() {
    let ptrace = compile(&default_profile(&["CAP_SYS_PTRACE".to_string()])).unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&ptrace);
        if rc != 0 {
            return rc;
        }
        match sys!(
            libc::SYS_ptrace,
            libc::PTRACE_TRACEME as u64,
            0u64,
            0u64,
            0u64
        ) {
            0 => 0,
            e => (-e) as i32,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

/// The default profile with CAP_SYS_ADMIN allows unshare (needs root).
#[test]
#[ignore = "needs root"]
fn default_profile_with_cap_sys_admin_allows_unshare() {
    assert!(
        is_root(),
        "needs root: root tests are #[ignore]d and run as root with --include-ignored"
    );
    let admin = compile(&default_profile(&["CAP_SYS_ADMIN".to_string()])).unwrap();
    let out = in_child(|| {
        let rc = nnp_and_load(&admin);
        if rc != 0 {
            return rc;
        }
        match sys!(libc::SYS_unshare, libc::CLONE_NEWUTS as u64) {
            0 => 0,
            e => (-e) as i32,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}
