//! Published ports of a rootless container on a user network.
//!
//! A rootless user network lives in the user's own network namespace (the
//! pause process's, see [`crate::rootless`]), which no host port leads to:
//! pasta forwards the default network's ports, but it is started once per
//! namespace. podman runs its rootlessport helper for this; hako forks a
//! forwarder of the same design from the monitor: it takes the host ports
//! the monitor already holds (bound in the host's network namespace, as
//! the user), listens on them, joins the user's network namespace and, for
//! every connection, connects to the container's address there and relays
//! the bytes both ways. It ends when the monitor lets go of it (the
//! container's end, see [`stop`]) or dies. TCP only: a UDP mapping is
//! refused when the container is created (a UDP relay would keep a table
//! of clients; podman's does).
//!
//! Written by hand: no crate does "listen here, connect in another
//! namespace"; the relay itself is std's `io::copy` on two threads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use hako_runtime::os;

use crate::dirs::Dirs;
use crate::{Error, Result};

/// The write end of this monitor's forwarder's exit pipe.
static EXIT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Forward each of `ports` (a host port the caller holds, and the
/// container port it leads to) to the container at `ip` in the user's
/// network namespace. Returns once the forwarder listens, or with its
/// error. For a single-threaded caller (it forks).
pub fn start(dirs: &Dirs, ports: &[(BorrowedFd<'_>, u16)], ip: Ipv4Addr) -> Result<()> {
    let netns = crate::rootless::netns(&dirs.run)?;
    let (ready_r, ready_w) = crate::util::pipe()?;
    let (exit_r, exit_w) = crate::util::pipe()?;
    match os::fork().map_err(crate::sys_err("fork the port forwarder"))? {
        None => {
            drop(ready_r);
            drop(exit_w);
            let code = match serve(ports, ip, netns.as_fd(), exit_r.as_fd(), ready_w) {
                Ok(()) => 0,
                Err(()) => 1,
            };
            // SAFETY: _exit ends the forked child without the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Some(_) => {
            // Reaped by the monitor's supervise (it reaps any child), or by
            // whoever inherits it.
            drop(ready_w);
            drop(exit_r);
            let mut msg = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
            if msg.trim() != "ok" {
                return Err(Error::Other(format!(
                    "forward the published ports: {}",
                    if msg.is_empty() {
                        "the forwarder died"
                    } else {
                        msg.trim()
                    }
                )));
            }
            *EXIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit_w);
            Ok(())
        }
    }
}

/// Ends this monitor's forwarder, if it has one (at the container's end).
pub fn stop() {
    EXIT.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// The forwarder: listen, say "ok" (or why not) on `ready`, then serve
/// until `exit` closes.
fn serve(
    ports: &[(BorrowedFd<'_>, u16)],
    ip: Ipv4Addr,
    netns: BorrowedFd<'_>,
    exit: BorrowedFd<'_>,
    ready: OwnedFd,
) -> std::result::Result<(), ()> {
    let mut ready = std::fs::File::from(ready);
    let setup = || -> std::io::Result<Vec<(TcpListener, u16)>> {
        let mut out = Vec::new();
        for (fd, to) in ports {
            // SO_REUSEADDR, as every server sets it: the connections we
            // accept inherit it, so their TIME_WAIT does not keep the port
            // from the next program after the container (a listening
            // socket still excludes any other).
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a valid int option value and its size;
            // listen(2) on a socket the monitor bound for us.
            let ok = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
                    && libc::listen(fd.as_raw_fd(), 128) == 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            out.push((TcpListener::from(fd.try_clone_to_owned()?), *to));
        }
        os::setns(netns, libc::CLONE_NEWNET)?;
        Ok(out)
    };
    let listeners = match setup() {
        Ok(l) => l,
        Err(e) => {
            let _ = write!(ready, "{e}");
            return Err(());
        }
    };
    keep_only(
        &listeners
            .iter()
            .map(|(l, _)| l.as_raw_fd())
            .chain([exit.as_raw_fd(), ready.as_raw_fd()])
            .collect::<Vec<_>>(),
    );
    let _ = ready.write_all(b"ok");
    drop(ready);
    let mut fds: Vec<libc::pollfd> = std::iter::once(exit.as_raw_fd())
        .chain(listeners.iter().map(|(l, _)| l.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(());
        }
        // The monitor let go (or died): the container has ended.
        if fds[0].revents != 0 {
            return Ok(());
        }
        for (i, (l, to)) in listeners.iter().enumerate() {
            if fds[i + 1].revents & libc::POLLIN == 0 {
                continue;
            }
            if let Ok((client, _)) = l.accept() {
                let to = SocketAddrV4::new(ip, *to);
                std::thread::spawn(move || relay(client, to));
            }
        }
    }
}

/// One connection: to the container, then bytes both ways until each side
/// has closed its half.
fn relay(client: TcpStream, to: SocketAddrV4) {
    let Ok(upstream) = TcpStream::connect_timeout(&to.into(), Duration::from_secs(10)) else {
        return;
    };
    let (Ok(mut c_in), Ok(mut u_out)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let mut u_in = upstream;
        let mut c_out = client;
        let _ = std::io::copy(&mut u_in, &mut c_out);
        let _ = c_out.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut c_in, &mut u_out);
    let _ = u_out.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

/// Closes every descriptor but `keep` (the monitor's terminal, pipes and
/// lock files are not the forwarder's to hold); stdio becomes /dev/null.
fn keep_only(keep: &[RawFd]) {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    crate::util::stdio_to_null();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing a descriptor of ours that nothing here uses
        // (the read_dir above has finished, its own fd is closed).
        unsafe { libc::close(fd) };
    }
}
