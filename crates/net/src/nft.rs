//! Outbound NAT and published ports as nf_tables rules, spoken over
//! nfnetlink directly.
//!
//! Why no crate: `nftnl` binds libnftnl (a C library hako would have to
//! ship), and `rustables` needs bindgen at build time and has seen little
//! maintenance; the messages hako needs are few (table, three NAT base
//! chains, rules made of payload/bitwise/cmp/meta/fib/immediate/nat/masq
//! expressions, rule dump and delete), so they are built here on the shared
//! netlink encoder (`nl.rs`).
//!
//! Everything lives in one table of hako's own (family `inet`, so IPv4 and
//! IPv6 rules share it; default name `hako`), so hako never edits rules it
//! did not create:
//!
//! ```text
//! table inet hako {
//!   chain prerouting  { type nat hook prerouting priority dstnat; }  # -p DNAT from outside
//!   chain output      { type nat hook output priority -100; }        # -p DNAT from the host itself
//!   chain postrouting { type nat hook postrouting priority srcnat; } # masquerade
//! }
//! ```
//!
//! Each rule carries a comment (nft's userdata TLV, so `nft list ruleset`
//! shows it) naming its owner: `hako:net:<network>` or `hako:ctr:<id>`.
//! Removing a network or a container dumps the table and deletes the rules
//! with its comment, by handle.

use std::io;
use std::net::Ipv4Addr;

use crate::nl::{self, Msg, Socket, NLM_F_APPEND, NLM_F_CREATE};
use crate::ports::PortMapping;
use crate::subnet::Subnet;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
/// nftnl's userdata TLV type for a rule comment.
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;

const REG1: u32 = 1;
const REG2: u32 = 2;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const META_OIFNAME: u32 = 7;
const CT_STATUS: u32 = 2;
const IPS_DST_NAT: u32 = 1 << 5;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const NAT_DNAT: u32 = 1;
const IFNAMSIZ: usize = 16;

pub(crate) const CHAIN_PREROUTING: &str = "prerouting";
pub(crate) const CHAIN_OUTPUT: &str = "output";
pub(crate) const CHAIN_POSTROUTING: &str = "postrouting";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("open nfnetlink socket")]
    Socket(#[source] io::Error),
    #[error("create nftables table inet {table} and its chains")]
    Setup { table: String, source: io::Error },
    #[error("add nftables rules {tag} to table inet {table}")]
    AddRules {
        table: String,
        tag: String,
        source: io::Error,
    },
    #[error("list rules of table inet {table}")]
    List { table: String, source: io::Error },
    #[error("delete rules {tag} from table inet {table}")]
    DeleteRules {
        table: String,
        tag: String,
        source: io::Error,
    },
    #[error("delete table inet {table}")]
    DeleteTable { table: String, source: io::Error },
}

/// A rule as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

fn ty(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn nfgen(m: &mut Msg) {
    m.header(&[NFPROTO_INET, 0, 0, 0]);
}

/// A rule's expression list under construction.
struct Exprs<'m> {
    m: &'m mut Msg,
}

impl Exprs<'_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Msg)) -> &mut Self {
        self.m.nest(NFTA_LIST_ELEM).attr_str(NFTA_EXPR_NAME, name);
        self.m.nest(NFTA_EXPR_DATA);
        body(self.m);
        self.m.end_nest().end_nest();
        self
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) -> &mut Self {
        self.expr("payload", |m| {
            m.attr_be32(1, REG1) // NFTA_PAYLOAD_DREG
                .attr_be32(2, base)
                .attr_be32(3, offset)
                .attr_be32(4, len);
        })
    }

    fn cmp(&mut self, op: u32, data: &[u8]) -> &mut Self {
        self.expr("cmp", |m| {
            m.attr_be32(1, REG1).attr_be32(2, op); // SREG, OP
            m.nest(3).attr(NFTA_DATA_VALUE, data).end_nest(); // DATA
        })
    }

    fn bitwise(&mut self, mask: &[u8]) -> &mut Self {
        let zero = vec![0u8; mask.len()];
        self.expr("bitwise", |m| {
            m.attr_be32(1, REG1) // SREG
                .attr_be32(2, REG1) // DREG
                .attr_be32(3, mask.len() as u32); // LEN
            m.nest(4).attr(NFTA_DATA_VALUE, mask).end_nest(); // MASK
            m.nest(5).attr(NFTA_DATA_VALUE, &zero).end_nest(); // XOR
        })
    }

    fn meta(&mut self, key: u32) -> &mut Self {
        self.expr("meta", |m| {
            m.attr_be32(1, REG1).attr_be32(2, key); // DREG, KEY
        })
    }

    /// `ct status & dnat != 0`: the connection was DNATed.
    fn ct_dnat(&mut self) -> &mut Self {
        self.expr("ct", |m| {
            m.attr_be32(1, REG1).attr_be32(2, CT_STATUS); // DREG, KEY
        })
        .bitwise(&IPS_DST_NAT.to_ne_bytes())
        .cmp(CMP_NEQ, &0u32.to_ne_bytes())
    }

    /// `fib daddr type` into reg 1.
    fn fib_daddr_type(&mut self) -> &mut Self {
        self.expr("fib", |m| {
            m.attr_be32(1, REG1) // DREG
                .attr_be32(2, FIB_RESULT_ADDRTYPE)
                .attr_be32(3, FIB_F_DADDR);
        })
    }

    fn immediate(&mut self, reg: u32, data: &[u8]) -> &mut Self {
        self.expr("immediate", |m| {
            m.attr_be32(1, reg);
            m.nest(2).attr(NFTA_DATA_VALUE, data).end_nest();
        })
    }

    /// `meta nfproto ipv4|ipv6`: an inet table sees both families, and
    /// header offsets only mean something once the family is known.
    fn family(&mut self, v6: bool) -> &mut Self {
        let f = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
        self.meta(META_NFPROTO).cmp(CMP_EQ, &[f])
    }

    /// `ip[6] saddr|daddr` matched against a subnet (after [`Self::family`]).
    fn addr_in(&mut self, src: bool, net: &Subnet) -> &mut Self {
        let (offset, bytes) = match (net.addr(), src) {
            (std::net::IpAddr::V4(a), true) => (12, a.octets().to_vec()),
            (std::net::IpAddr::V4(a), false) => (16, a.octets().to_vec()),
            (std::net::IpAddr::V6(a), true) => (8, a.octets().to_vec()),
            (std::net::IpAddr::V6(a), false) => (24, a.octets().to_vec()),
        };
        let width = bytes.len() * 8;
        self.payload(PAYLOAD_NETWORK, offset, bytes.len() as u32);
        let prefix = usize::from(net.prefix());
        if prefix < width {
            let mask: Vec<u8> = (0..bytes.len())
                .map(|i| {
                    let bits = prefix.saturating_sub(i * 8).min(8);
                    (0xffu16 << (8 - bits)) as u8
                })
                .collect();
            self.bitwise(&mask);
        }
        self.cmp(CMP_EQ, &bytes)
    }

    fn oifname(&mut self, op: u32, name: &str) -> &mut Self {
        let mut v = name.as_bytes().to_vec();
        v.resize(IFNAMSIZ, 0);
        self.meta(META_OIFNAME).cmp(op, &v)
    }
}

fn comment(tag: &str) -> Vec<u8> {
    let mut v = vec![NFTNL_UDATA_RULE_COMMENT, 0];
    v.extend_from_slice(tag.as_bytes());
    v.push(0);
    v[1] = u8::try_from(v.len() - 2).unwrap_or(u8::MAX);
    v
}

fn parse_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (t, l) = (rest[0], usize::from(rest[1]));
        let val = rest.get(2..2 + l)?;
        if t == NFTNL_UDATA_RULE_COMMENT {
            return Some(nl::attr_string(val));
        }
        rest = &rest[2 + l..];
    }
    None
}

pub(crate) struct Nft {
    sock: Socket,
    table: String,
}

impl Nft {
    /// An nfnetlink socket in the calling thread's namespace for `table`.
    pub(crate) fn new(table: &str) -> Result<Self, NftError> {
        Ok(Nft {
            sock: Socket::netfilter().map_err(NftError::Socket)?,
            table: table.to_owned(),
        })
    }

    fn rule(&self, chain: &str, tag: &str, body: impl FnOnce(&mut Exprs<'_>)) -> Msg {
        let mut m = Msg::new(ty(NFT_MSG_NEWRULE), NLM_F_CREATE | NLM_F_APPEND);
        nfgen(&mut m);
        m.attr_str(NFTA_RULE_TABLE, &self.table)
            .attr_str(NFTA_RULE_CHAIN, chain);
        m.nest(NFTA_RULE_EXPRESSIONS);
        body(&mut Exprs { m: &mut m });
        m.end_nest();
        m.attr(NFTA_RULE_USERDATA, &comment(tag));
        m
    }

    /// Creates the table and its base chains; existing ones are kept.
    pub(crate) fn ensure_table(&mut self) -> Result<(), NftError> {
        let mut msgs = Vec::new();
        let mut t = Msg::new(ty(NFT_MSG_NEWTABLE), NLM_F_CREATE);
        nfgen(&mut t);
        t.attr_str(NFTA_TABLE_NAME, &self.table);
        msgs.push(t);
        for (name, hook, prio) in [
            (CHAIN_PREROUTING, NF_INET_PRE_ROUTING, -100i32),
            (CHAIN_OUTPUT, NF_INET_LOCAL_OUT, -100),
            (CHAIN_POSTROUTING, NF_INET_POST_ROUTING, 100),
        ] {
            let mut c = Msg::new(ty(NFT_MSG_NEWCHAIN), NLM_F_CREATE);
            nfgen(&mut c);
            c.attr_str(NFTA_CHAIN_TABLE, &self.table)
                .attr_str(NFTA_CHAIN_NAME, name);
            c.nest(NFTA_CHAIN_HOOK)
                .attr_be32(NFTA_HOOK_HOOKNUM, hook)
                .attr_be32(NFTA_HOOK_PRIORITY, prio as u32)
                .end_nest();
            c.attr_str(NFTA_CHAIN_TYPE, "nat");
            msgs.push(c);
        }
        self.sock
            .batch(msgs, NFNL_SUBSYS_NFTABLES)
            .map_err(|source| NftError::Setup {
                table: self.table.clone(),
                source,
            })
    }

    /// Masquerade for a network:
    /// - `ip saddr SUBNET oifname != BRIDGE masquerade` (and the same with
    ///   `ip6 saddr SUBNET6` on a dual-stack network): containers leaving
    ///   the host appear with the host's address;
    /// - `oifname BRIDGE ip saddr 127.0.0.0/8 masquerade`: host-local
    ///   connections to a port published on 127.0.0.1 were DNATed to the
    ///   container but still carry source 127.0.0.1, which the container
    ///   could not answer; they leave with the bridge's gateway address
    ///   (the bridge's `route_localnet` lets them be routed at all);
    /// - `oifname BRIDGE ip saddr SUBNET ct status dnat masquerade`:
    ///   hairpin, a container reaching a published port of a container on
    ///   the same bridge through a host address; without it the answer
    ///   would go straight back over the bridge from an unexpected source.
    pub(crate) fn add_network_rules(
        &mut self,
        tag: &str,
        subnet: &Subnet,
        subnet6: Option<&Subnet>,
        bridge: &str,
        masquerade: bool,
    ) -> Result<(), NftError> {
        let loopback: Subnet = "127.0.0.0/8".parse().expect("valid literal");
        let mut msgs = vec![self.rule(CHAIN_POSTROUTING, tag, |e| {
            e.family(false)
                .oifname(CMP_EQ, bridge)
                .addr_in(true, &loopback)
                .expr("masq", |_| {});
        })];
        msgs.push(self.rule(CHAIN_POSTROUTING, tag, |e| {
            e.family(false)
                .oifname(CMP_EQ, bridge)
                .addr_in(true, subnet)
                .ct_dnat()
                .expr("masq", |_| {});
        }));
        if masquerade {
            for net in std::iter::once(subnet).chain(subnet6) {
                msgs.push(self.rule(CHAIN_POSTROUTING, tag, |e| {
                    e.family(net.is_ipv6())
                        .addr_in(true, net)
                        .oifname(CMP_NEQ, bridge)
                        .expr("masq", |_| {});
                }));
            }
        }
        self.commit(msgs, tag)
    }

    /// DNAT rules for published ports of one container, in prerouting (from
    /// outside) and output (from the host itself).
    pub(crate) fn add_port_rules(
        &mut self,
        tag: &str,
        container_ip: Ipv4Addr,
        ports: &[PortMapping],
    ) -> Result<(), NftError> {
        let mut msgs = Vec::new();
        for p in ports {
            for chain in [CHAIN_PREROUTING, CHAIN_OUTPUT] {
                msgs.push(self.rule(chain, tag, |e| {
                    e.family(false);
                    match p.host_ip {
                        Some(ip) => {
                            e.payload(PAYLOAD_NETWORK, 16, 4).cmp(CMP_EQ, &ip.octets());
                        }
                        None => {
                            e.fib_daddr_type().cmp(CMP_EQ, &RTN_LOCAL.to_ne_bytes());
                        }
                    }
                    e.meta(META_L4PROTO)
                        .cmp(CMP_EQ, &[p.proto.number()])
                        .payload(PAYLOAD_TRANSPORT, 2, 2)
                        .cmp(CMP_EQ, &p.host_port.to_be_bytes())
                        .immediate(REG1, &container_ip.octets())
                        .immediate(REG2, &p.container_port.to_be_bytes())
                        .expr("nat", |m| {
                            m.attr_be32(1, NAT_DNAT) // TYPE
                                .attr_be32(2, u32::from(NFPROTO_IPV4)) // FAMILY
                                .attr_be32(3, REG1) // REG_ADDR_MIN
                                .attr_be32(5, REG2); // REG_PROTO_MIN
                        });
                }));
            }
        }
        if msgs.is_empty() {
            return Ok(());
        }
        self.commit(msgs, tag)
    }

    fn commit(&mut self, msgs: Vec<Msg>, tag: &str) -> Result<(), NftError> {
        self.sock
            .batch(msgs, NFNL_SUBSYS_NFTABLES)
            .map_err(|source| NftError::AddRules {
                table: self.table.clone(),
                tag: tag.to_owned(),
                source,
            })
    }

    /// Every rule of the table; empty when the table does not exist.
    pub(crate) fn rules(&mut self) -> Result<Vec<RuleInfo>, NftError> {
        let mut m = Msg::new(ty(NFT_MSG_GETRULE), 0);
        nfgen(&mut m);
        m.attr_str(NFTA_RULE_TABLE, &self.table);
        let replies = match self.sock.dump(m) {
            Ok(r) => r,
            Err(e) if nl::errno(&e) == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(source) => {
                return Err(NftError::List {
                    table: self.table.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for (t, p) in replies {
            if t != ty(NFT_MSG_NEWRULE) || p.len() < 4 {
                continue;
            }
            let (mut table, mut chain, mut handle, mut comment) = (None, None, None, None);
            for (a, data) in nl::attrs(&p[4..]) {
                match a {
                    NFTA_RULE_TABLE => table = Some(nl::attr_string(data)),
                    NFTA_RULE_CHAIN => chain = Some(nl::attr_string(data)),
                    NFTA_RULE_HANDLE if data.len() == 8 => {
                        handle = Some(u64::from_be_bytes(data.try_into().unwrap()))
                    }
                    NFTA_RULE_USERDATA => comment = parse_comment(data),
                    _ => {}
                }
            }
            if let (Some(table), Some(chain), Some(handle)) = (table, chain, handle) {
                if table == self.table {
                    out.push(RuleInfo {
                        chain,
                        handle,
                        comment,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Deletes every rule whose comment is `tag`; returns how many.
    pub(crate) fn delete_tagged(&mut self, tag: &str) -> Result<usize, NftError> {
        let doomed: Vec<RuleInfo> = self
            .rules()?
            .into_iter()
            .filter(|r| r.comment.as_deref() == Some(tag))
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let msgs = doomed
            .iter()
            .map(|r| {
                let mut m = Msg::new(ty(NFT_MSG_DELRULE), 0);
                nfgen(&mut m);
                m.attr_str(NFTA_RULE_TABLE, &self.table)
                    .attr_str(NFTA_RULE_CHAIN, &r.chain)
                    .attr_be64(NFTA_RULE_HANDLE, r.handle);
                m
            })
            .collect();
        self.sock
            .batch(msgs, NFNL_SUBSYS_NFTABLES)
            .map_err(|source| NftError::DeleteRules {
                table: self.table.clone(),
                tag: tag.to_owned(),
                source,
            })?;
        Ok(doomed.len())
    }

    /// Deletes the whole table; Ok when it was already gone.
    pub(crate) fn delete_table(&mut self) -> Result<(), NftError> {
        let mut m = Msg::new(ty(NFT_MSG_DELTABLE), 0);
        nfgen(&mut m);
        m.attr_str(NFTA_TABLE_NAME, &self.table);
        match self.sock.batch(vec![m], NFNL_SUBSYS_NFTABLES) {
            Ok(()) => Ok(()),
            Err(e) if nl::errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(source) => Err(NftError::DeleteTable {
                table: self.table.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_tlv_round_trip() {
        let c = comment("hako:ctr:abc");
        assert_eq!(c[0], 0);
        assert_eq!(usize::from(c[1]), c.len() - 2);
        assert_eq!(parse_comment(&c).as_deref(), Some("hako:ctr:abc"));
        assert_eq!(parse_comment(&[0, 9, 1]), None);
    }
}
