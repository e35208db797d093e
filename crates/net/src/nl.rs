//! A minimal synchronous netlink transport shared by rtnetlink (`link`) and
//! nf_tables (`nft`).
//!
//! Why hand-rolled rather than `netlink-packet-route` + `rtnetlink`: the
//! nf_tables side has no maintained pure-Rust crate we want to depend on
//! (`nftnl` wraps libnftnl's C library, `rustables` pulls a large API surface
//! and build-time bindgen), so we have to encode nf_tables messages ourselves
//! anyway. Once that encoder exists, the handful of rtnetlink messages hako
//! needs (a dozen attribute types) cost less code than the typed crates'
//! frequently changing APIs, and keep the CLI free of an async runtime.
//!
//! Every request is built with [`Msg`], sent on a [`Socket`] that was created
//! in the network namespace it should act on (a netlink socket stays bound to
//! the namespace it was created in), and answered with an ack or a dump.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const HDR_LEN: usize = 16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message under construction: header, family header, attributes.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    pub(crate) fn new(ty: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; HDR_LEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    pub(crate) fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// Appends a fixed family header (ifinfomsg, nfgenmsg, …), padded to 4.
    pub(crate) fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    pub(crate) fn attr_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    pub(crate) fn attr_be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    pub(crate) fn nest(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.attr(ty | NLA_F_NESTED, &[])
    }

    pub(crate) fn end_nest(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("end_nest without nest");
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        assert!(self.nests.is_empty(), "unclosed netlink nest");
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// Iterates over the attributes in `buf` as (type without flags, payload).
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, data))
    })
}

/// A NUL-terminated string attribute payload.
pub(crate) fn attr_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// One message received from the kernel.
struct Reply {
    ty: u16,
    seq: u32,
    payload: Vec<u8>,
}

/// A netlink socket of one protocol, bound in the namespace it was created in.
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub(crate) fn new(protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Bounded waits: a kernel that never answers must not hang `hako run`.
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval that outlives the call and its size
        // is passed alongside it.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Ask for the kernel's error strings, and not to echo our request
        // back in errors. Both are best effort (old kernels lack them).
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `one` is a valid c_int that outlives the call and its
            // size is passed alongside it.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value
        // (kernel-assigned port id, no groups).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl and its exact size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd, seq: 1 })
    }

    pub(crate) fn route() -> io::Result<Self> {
        Self::new(libc::NETLINK_ROUTE)
    }

    pub(crate) fn netfilter() -> io::Result<Self> {
        Self::new(libc::NETLINK_NETFILTER)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl all-zero with the family set addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `buf` is valid for `buf.len()` bytes and `addr` for its size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram and returns its messages.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Vec<Reply>> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut data = &buf[..n as usize];
        let mut out = Vec::new();
        while data.len() >= HDR_LEN {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            if len < HDR_LEN || len > data.len() {
                break;
            }
            let ty = u16::from_ne_bytes([data[4], data[5]]);
            let seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
            out.push(Reply {
                ty,
                seq,
                payload: data[HDR_LEN..len].to_vec(),
            });
            data = &data[align4(len).min(data.len())..];
        }
        Ok(out)
    }

    /// Sends one request with NLM_F_ACK and waits for its ack or error.
    pub(crate) fn request(&mut self, mut msg: Msg) -> io::Result<()> {
        let seq = self.next_seq();
        let flags = msg.flags() | NLM_F_ACK;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.send(msg.finish(seq))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            for Reply {
                ty,
                seq: rseq,
                payload,
            } in self.recv(&mut buf)?
            {
                if rseq != seq || ty != NLMSG_ERROR {
                    continue;
                }
                return errno_of(&payload);
            }
        }
    }

    /// Sends a GET request with NLM_F_ACK and returns the first answer's
    /// payload (None when the kernel only acked).
    pub(crate) fn dump_one(&mut self, mut msg: Msg) -> io::Result<Option<Vec<u8>>> {
        let seq = self.next_seq();
        let flags = msg.flags() | NLM_F_ACK;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.send(msg.finish(seq))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut first = None;
        loop {
            for Reply {
                ty,
                seq: rseq,
                payload,
            } in self.recv(&mut buf)?
            {
                if rseq != seq {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    errno_of(&payload)?;
                    return Ok(first);
                }
                first.get_or_insert(payload);
            }
        }
    }

    /// Sends a dump request and returns the payload of every answer.
    pub(crate) fn dump(&mut self, mut msg: Msg) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.next_seq();
        let flags = msg.flags() | NLM_F_DUMP;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.send(msg.finish(seq))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut out = Vec::new();
        loop {
            for Reply {
                ty,
                seq: rseq,
                payload,
            } in self.recv(&mut buf)?
            {
                if rseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        errno_of(&payload)?;
                        return Ok(out);
                    }
                    _ => out.push((ty, payload)),
                }
            }
        }
    }

    /// Sends `msgs` framed by nfnetlink batch begin/end in one datagram and
    /// waits for every message's ack: the kernel applies all or none.
    pub(crate) fn batch(&mut self, msgs: Vec<Msg>, subsys: u16) -> io::Result<()> {
        const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
        const NFNL_MSG_BATCH_END: u16 = 0x11;
        let nfgen = |m: &mut Msg| {
            let mut h = [0u8; 4];
            h[2..4].copy_from_slice(&subsys.to_be_bytes());
            m.header(&h);
        };
        let mut begin = Msg::new(NFNL_MSG_BATCH_BEGIN, 0);
        nfgen(&mut begin);
        let mut end = Msg::new(NFNL_MSG_BATCH_END, 0);
        nfgen(&mut end);
        let mut wire = Vec::new();
        let seq = self.next_seq();
        wire.extend_from_slice(begin.finish(seq));
        let mut pending = Vec::new();
        for mut m in msgs {
            let seq = self.next_seq();
            let flags = m.flags() | NLM_F_ACK;
            m.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
            wire.extend_from_slice(m.finish(seq));
            pending.push(seq);
        }
        let seq = self.next_seq();
        wire.extend_from_slice(end.finish(seq));
        self.send(&wire)?;
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            for Reply {
                ty,
                seq: rseq,
                payload,
            } in self.recv(&mut buf)?
            {
                if ty != NLMSG_ERROR {
                    continue;
                }
                // The first error aborts the whole batch; report it.
                errno_of(&payload)?;
                pending.retain(|&s| s != rseq);
            }
        }
        Ok(())
    }
}

/// A kernel error with the extended-ack message explaining it, e.g.
/// "Invalid argument (kernel: Unknown device type)".
#[derive(Debug)]
pub(crate) struct KernelError {
    pub errno: i32,
    pub msg: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = io::Error::from_raw_os_error(self.errno);
        write!(f, "{base} (kernel: {})", self.msg)
    }
}

impl std::error::Error for KernelError {}

/// The errno of a netlink error, with or without an extended-ack message.
pub(crate) fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<KernelError>())
            .map(|k| k.errno)
    })
}

/// Turns an NLMSG_ERROR payload into Ok (ack) or the errno it carries.
/// With NETLINK_CAP_ACK the original request is not echoed, so any
/// extended-ack attributes follow the 4-byte errno and 16-byte header.
fn errno_of(payload: &[u8]) -> io::Result<()> {
    if payload.len() < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink error message",
        ));
    }
    let err = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
    if err == 0 {
        Ok(())
    } else {
        let msg = payload
            .get(4 + HDR_LEN..)
            .into_iter()
            .flat_map(attrs)
            .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
            .map(|(_, d)| attr_string(d));
        Err(match msg {
            Some(msg) if !msg.is_empty() => io::Error::new(
                io::Error::from_raw_os_error(-err).kind(),
                KernelError { errno: -err, msg },
            ),
            _ => io::Error::from_raw_os_error(-err),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut m = Msg::new(16, 0);
        m.header(&[0u8; 16]);
        m.attr_str(3, "hako0");
        m.nest(18).attr_str(1, "bridge").end_nest();
        let wire = m.finish(7).to_vec();
        assert_eq!(
            u32::from_ne_bytes(wire[0..4].try_into().unwrap()) as usize,
            wire.len()
        );
        let got: Vec<_> = attrs(&wire[32..]).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 3);
        assert_eq!(attr_string(got[0].1), "hako0");
        assert_eq!(got[1].0, 18);
        let inner: Vec<_> = attrs(got[1].1).collect();
        assert_eq!(attr_string(inner[0].1), "bridge");
    }
}
