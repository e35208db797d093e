//! The name server of a user network, as Docker's embedded DNS and
//! podman's aardvark-dns: on the network's gateway address, port 53 (UDP,
//! and TCP for clients that retry there after a truncated answer),
//! it answers A and AAAA queries for the containers attached to the
//! network, by name, network alias or short id, from the network's leases
//! as they are at each query (so a disconnected container is gone at
//! once), and forwards every other query to the host's resolvers. DNS
//! messages are read and written with hickory-proto.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata, RData, Record, RecordType};

use crate::ipam::Lease;

/// Seconds clients may keep an answer: short, as containers come and go.
const TTL: u32 = 5;

/// The addresses `name` has on the network: containers whose name, alias
/// or id (at least 12 characters of it) it is, case-insensitively, with or
/// without a trailing dot.
pub fn lookup(leases: &[Lease], name: &str, kind: RecordType) -> Option<Vec<IpAddr>> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() {
        return None;
    }
    let hits: Vec<&Lease> = leases
        .iter()
        .filter(|l| {
            l.container_name.eq_ignore_ascii_case(&n)
                || l.aliases.iter().any(|a| a.eq_ignore_ascii_case(&n))
                || (n.len() >= 12 && l.container_id.starts_with(&n))
        })
        .collect();
    if hits.is_empty() {
        return None;
    }
    Some(
        hits.iter()
            .flat_map(|l| std::iter::once(l.ipv4).chain(l.ipv6))
            .filter(|ip| match kind {
                RecordType::A => ip.is_ipv4(),
                RecordType::AAAA => ip.is_ipv6(),
                _ => false,
            })
            .collect(),
    )
}

/// The answer to `query` from the network's own names, or `None` when it
/// is for another name (to be forwarded) or not a plain query.
pub fn answer(query: &[u8], leases: &[Lease]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    if msg.message_type() != MessageType::Query || msg.queries().len() != 1 {
        return None;
    }
    let q = &msg.queries()[0];
    let name = q.name().to_ascii();
    let ips = lookup(leases, &name, q.query_type())?;
    let mut resp = Message::new();
    resp.set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_op_code(msg.op_code())
        .set_authoritative(true)
        .set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(q.clone());
    for ip in ips {
        let data = match ip {
            IpAddr::V4(a) => RData::A(rdata::A(a)),
            IpAddr::V6(a) => RData::AAAA(rdata::AAAA(a)),
        };
        resp.add_answer(Record::from_rdata(q.name().clone(), TTL, data));
    }
    resp.to_vec().ok()
}

/// Sends `query` to the first upstream that answers (2 s each); the raw
/// reply.
fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in upstream {
        let bind: SocketAddr = if u.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.send_to(query, u).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == *u {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// As [`forward`], over TCP (RFC 7766: a two-byte length before each
/// message): for a client that asked us over TCP, typically after a
/// truncated UDP answer, so the upstream's full answer is wanted.
fn forward_tcp(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in upstream {
        let Ok(mut s) = TcpStream::connect_timeout(u, Duration::from_secs(2)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if write_framed(&mut s, query).is_err() {
            continue;
        }
        if let Ok(Some(reply)) = read_framed(&mut s) {
            return Some(reply);
        }
    }
    None
}

/// One length-prefixed DNS message from a TCP stream; None at a clean end.
fn read_framed(s: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg)?;
    Ok(Some(msg))
}

fn write_framed(s: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| std::io::Error::other("a DNS message over 65535 bytes"))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out)
}

/// A SERVFAIL for a query no upstream answered.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut resp = Message::new();
    resp.set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_op_code(msg.op_code())
        .set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::ServFail);
    for q in msg.queries() {
        resp.add_query(q.clone());
    }
    resp.to_vec().ok()
}

/// The host's resolvers from a resolv.conf text (loopback ones too: the
/// server runs in the host's network namespace), port 53.
pub fn upstreams(resolv: &str) -> Vec<SocketAddr> {
    resolv
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The network's names, read at each query.
pub type Leases = Arc<dyn Fn() -> Vec<Lease> + Send + Sync>;

/// Serves on `sock` (and, given, on `tcp`) forever: names from `leases()`
/// (read at each query), the rest forwarded to `upstream` (each UDP query
/// and each TCP connection in its own thread, so a slow upstream or
/// client holds up no other).
pub fn serve(
    sock: UdpSocket,
    tcp: Option<TcpListener>,
    leases: Leases,
    upstream: Vec<SocketAddr>,
) -> std::io::Result<()> {
    let sock = Arc::new(sock);
    let upstream = Arc::new(upstream);
    if let Some(l) = tcp {
        let (leases, upstream) = (leases.clone(), upstream.clone());
        std::thread::spawn(move || serve_tcp(l, leases, upstream));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let query = buf[..n].to_vec();
        if let Some(resp) = answer(&query, &leases()) {
            let _ = sock.send_to(&resp, from);
            continue;
        }
        let (sock, upstream) = (sock.clone(), upstream.clone());
        std::thread::spawn(move || {
            if let Some(resp) = forward(&query, &upstream).or_else(|| servfail(&query)) {
                let _ = sock.send_to(&resp, from);
            }
        });
    }
}

/// DNS over TCP: the same answers, queries forwarded over TCP; a
/// connection may carry several queries, and is dropped after 10 s idle.
fn serve_tcp(listener: TcpListener, leases: Leases, upstream: Arc<Vec<SocketAddr>>) {
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let (leases, upstream) = (leases.clone(), upstream.clone());
        std::thread::spawn(move || {
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
            while let Ok(Some(query)) = read_framed(&mut c) {
                let resp = answer(&query, &leases())
                    .or_else(|| forward_tcp(&query, &upstream))
                    .or_else(|| servfail(&query));
                match resp {
                    Some(r) if write_framed(&mut c, &r).is_ok() => {}
                    _ => break,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn lease(name: &str, id: &str, ip: &str, aliases: &[&str]) -> Lease {
        Lease {
            container_id: id.into(),
            container_name: name.into(),
            network: "n".into(),
            ifname: "eth0".into(),
            host_veth: "v".into(),
            ipv4: ip.parse().unwrap(),
            ipv6: None,
            mac: String::new(),
            ports: vec![],
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(77)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn names_aliases_and_ids_resolve() {
        let l = [
            lease("web", "0123456789abcdef", "10.1.0.2", &["www"]),
            lease("db", "fedcba9876543210", "10.1.0.3", &[]),
        ];
        let ip = |n: &str| lookup(&l, n, RecordType::A);
        assert_eq!(ip("web"), Some(vec!["10.1.0.2".parse().unwrap()]));
        assert_eq!(ip("WWW."), Some(vec!["10.1.0.2".parse().unwrap()]));
        assert_eq!(ip("fedcba987654"), Some(vec!["10.1.0.3".parse().unwrap()]));
        assert_eq!(ip("fedcba"), None, "short ids are too ambiguous");
        assert_eq!(ip("example.org"), None);
        assert_eq!(
            lookup(&l, "web", RecordType::AAAA),
            Some(vec![]),
            "no v6: NODATA"
        );
    }

    #[test]
    fn answers_are_dns_messages_and_others_are_left_to_forward() {
        let l = [lease("web", "0123456789abcdef", "10.1.0.2", &[])];
        let r = Message::from_vec(&answer(&query("web.", RecordType::A), &l).unwrap()).unwrap();
        assert_eq!(r.id(), 77);
        assert_eq!(r.message_type(), MessageType::Response);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(
            r.answers()[0].data(),
            &RData::A(rdata::A("10.1.0.2".parse().unwrap()))
        );
        assert!(answer(&query("example.org.", RecordType::A), &l).is_none());
        assert!(answer(b"garbage", &l).is_none());
        let f = Message::from_vec(&servfail(&query("x.", RecordType::A)).unwrap()).unwrap();
        assert_eq!(f.response_code(), ResponseCode::ServFail);
    }

    /// Over TCP (RFC 7766 framing), on one connection: a name of the
    /// network is answered, another query goes to the upstream over TCP.
    #[test]
    fn tcp_answers_names_and_forwards_over_tcp() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = upstream.accept().unwrap();
            let q = Message::from_vec(&read_framed(&mut c).unwrap().unwrap()).unwrap();
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::NXDomain)
                .add_query(q.queries()[0].clone());
            write_framed(&mut c, &r.to_vec().unwrap()).unwrap();
        });
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let leases: Leases = Arc::new(|| vec![lease("web", "0123456789abcdef", "10.1.0.2", &[])]);
        std::thread::spawn(move || serve(udp, Some(tcp), leases, vec![up_addr]));

        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write_framed(&mut c, &query("web.", RecordType::A)).unwrap();
        let r = Message::from_vec(&read_framed(&mut c).unwrap().unwrap()).unwrap();
        assert_eq!(r.id(), 77);
        assert_eq!(
            r.answers()[0].data(),
            &RData::A(rdata::A("10.1.0.2".parse().unwrap()))
        );
        write_framed(&mut c, &query("example.org.", RecordType::A)).unwrap();
        let r = Message::from_vec(&read_framed(&mut c).unwrap().unwrap()).unwrap();
        assert_eq!((r.id(), r.response_code()), (77, ResponseCode::NXDomain));
    }

    #[test]
    fn upstreams_are_the_hosts_nameservers() {
        let u = upstreams("nameserver 127.0.0.53\nsearch x\nnameserver fe80::1%eth0\n");
        assert_eq!(
            u,
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
