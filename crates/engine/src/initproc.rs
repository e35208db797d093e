//! `--init`: a minimal PID 1 (`hako __init -- CMD…`, run inside the
//! container). It forks the command, forwards every signal it gets to it,
//! reaps every child (orphans re-parent to PID 1), and exits with the
//! command's exit code (128+N when a signal killed it), like tini.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;

use hako_runtime::os;

/// Returns the exit code for the caller to exit with.
pub fn main(cmd: &[String]) -> i32 {
    let Some((prog, args)) = cmd.split_first() else {
        eprintln!("hako-init: no command given");
        return 2;
    };
    // Run through the host's loader, we would show in `ps` as "ld.so";
    // Docker's shows as docker-init.
    // (PR_SET_NAME reads at most 16 bytes from a valid C string.)
    let _ = os::prctl(libc::PR_SET_NAME, c"hako-init".as_ptr() as libc::c_ulong, 0);
    // Block signals before the fork so none is lost before the signalfd.
    let old = match os::block_all_signals() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hako-init: block signals: {e}");
            return 1;
        }
    };
    let sfd = match os::signalfd_all() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hako-init: signalfd: {e}");
            return 1;
        }
    };
    let child = match os::fork() {
        Err(e) => {
            eprintln!("hako-init: fork: {e}");
            return 1;
        }
        Ok(None) => {
            // The command gets the mask and dispositions PID 1 was given,
            // its own process group, and the terminal's foreground if any.
            drop(sfd);
            let _ = os::set_sigmask(&old);
            // SAFETY: setpgid on ourselves; tcsetpgrp on fd 0 fails harmlessly
            // without a terminal. SIGTTOU is blocked until exec resets the
            // mask below, so taking the foreground cannot stop us.
            unsafe {
                libc::setpgid(0, 0);
                if os::isatty(0) {
                    libc::tcsetpgrp(0, libc::getpgrp());
                }
            }
            let e = std::process::Command::new(prog).args(args).exec();
            eprintln!("hako-init: exec {prog}: {e}");
            // SAFETY: _exit never returns; skipping atexit handlers after fork.
            unsafe {
                libc::_exit(if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                })
            };
        }
        Ok(Some(pid)) => pid,
    };
    loop {
        let sig = match os::read_signal(sfd.as_fd()) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hako-init: read signalfd: {e}");
                return 1;
            }
        };
        match sig {
            libc::SIGCHLD => {
                let mut code = None;
                while let Some((p, st)) = os::wait_any_nohang() {
                    if p == child {
                        code = Some(os::exit_code(st));
                    }
                }
                if let Some(c) = code {
                    return c;
                }
            }
            // Job-control stops from the terminal don't apply to PID 1.
            libc::SIGTTIN | libc::SIGTTOU | libc::SIGTSTP => {}
            s => {
                // The whole group, so a shell's children hear it too.
                let _ = os::kill(-child, s).or_else(|_| os::kill(child, s));
            }
        }
    }
}
