//! Passing the seccomp user-notification listener around:
//! child -> runtime over the sync socket ([`send_fd`] / [`recv_fd`]), and
//! runtime -> seccomp agent at `linux.seccomp.listenerPath`
//! ([`send_listener`]), as runtime-spec `config-linux.md#seccomp` describes:
//! the container process state as JSON payload, the listener as SCM_RIGHTS.

use std::io::{self, Write};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use oci_spec::runtime::{ContainerProcessState, State, SECCOMP_FD_NAME};

use crate::error::SeccompError;

/// Room for one `cmsghdr` carrying one fd; 8-aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Send `payload` with `fd` attached as SCM_RIGHTS on a connected unix
/// socket. Returns how many payload bytes went out (a stream socket may take
/// fewer; the fd travels with the first byte).
///
/// No allocation: usable in the container child after fork, e.g. to hand
/// the listener from [`crate::CompiledFilter::load`] to the runtime. `payload`
/// must not be empty (a stream socket carries ancillary data only with data).
/// Sent with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<usize> {
    if payload.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    let fd_len = mem::size_of::<RawFd>() as libc::c_uint;
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    debug_assert!(space <= cbuf.0.len());
    // SAFETY: an all-zero msghdr is a valid "empty" header (null pointers,
    // zero lengths); the fields used are set below.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to `space` bytes of `cbuf`, 8-aligned and
    // large enough for one header (checked above), so CMSG_FIRSTHDR returns a
    // valid, writable, aligned pointer into `cbuf`, and CMSG_DATA of it has
    // room for one RawFd (CMSG_SPACE(fd_len) includes the data). The
    // unaligned write is used because CMSG_DATA need not be int-aligned in
    // general. sendmsg reads `msg`, `iov`, `payload` and `cbuf`, which all
    // outlive the call, and writes none of them.
    let ret = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as _;
        libc::CMSG_DATA(cmsg)
            .cast::<RawFd>()
            .write_unaligned(fd.as_raw_fd());
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// Receive data into `buf` and at most one fd sent by [`send_fd`]
/// (close-on-exec). Returns the byte count and the fd, if one came.
/// Extra fds (a misbehaving peer) are closed; a truncated control message
/// is an error (EMSGSIZE) after closing what did arrive.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header; fields set below.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    // SAFETY: recvmsg writes at most iov_len bytes into `buf` and at most
    // msg_controllen bytes into `cbuf`, both live and exclusively borrowed
    // for the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut received: Option<OwnedFd> = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk only within that length and return null at the end.
    // For SCM_RIGHTS headers the data holds (cmsg_len - CMSG_LEN(0)) / 4
    // fds that are now ours; each is read unaligned and wrapped in OwnedFd
    // exactly once, so it is closed exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / mem::size_of::<RawFd>() {
                    let fd = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((n as usize, received))
}

/// The runtime-spec "container process state" sent to a seccomp agent:
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`.
/// `metadata` is `linux.seccomp.listenerMetadata`; `pid` the container
/// process as the runtime sees it.
pub fn process_state_json(state: &State, pid: i32, metadata: Option<&str>) -> Vec<u8> {
    let mut ps = ContainerProcessState::default();
    ps.set_version(state.version().clone());
    ps.set_fds(vec![SECCOMP_FD_NAME.to_string()]);
    ps.set_pid(pid);
    ps.set_metadata(metadata.map(str::to_string));
    ps.set_state(state.clone());
    // Serializing plain strings/ints/maps into a Vec cannot fail.
    serde_json::to_vec(&ps).expect("ContainerProcessState serializes")
}

/// Hand the seccomp listener to the agent listening on `path`
/// (`linux.seccomp.listenerPath`): connect a SOCK_STREAM unix socket, send
/// `state_json` (see [`process_state_json`]) with `listener` as SCM_RIGHTS,
/// then close. Runs in the runtime parent; the caller keeps (and should
/// then close) its copy of `listener`.
pub fn send_listener(
    path: &Path,
    listener: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let mut stream = UnixStream::connect(path).map_err(|source| SeccompError::ListenerConnect {
        path: path.to_path_buf(),
        source,
    })?;
    let send_err = |source| SeccompError::ListenerSend {
        path: path.to_path_buf(),
        source,
    };
    let mut sent = loop {
        match send_fd(stream.as_fd(), listener, state_json) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other.map_err(send_err)?,
        }
    };
    sent = sent.min(state_json.len());
    stream.write_all(&state_json[sent..]).map_err(send_err)?;
    stream.flush().map_err(send_err)?;
    Ok(())
}
