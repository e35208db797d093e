//! The D-Bus wire format, as much of it as the driver's calls use: messages
//! (header fields, serials, reply serials, error names) and the marshalling
//! of the basic types, arrays, structs and variants by signature.
//!
//! Why by hand: the driver makes six calls with a dozen value types. The
//! blocking D-Bus crate (`dbus`, libdbus linked statically) made every
//! hako-runc start 0.26 ms slower on hosts that never use it (its relocated
//! data is touched by the loader at each exec; docs/benchmarks.md), and
//! zbus runs an async executor even behind its blocking API. This module is
//! the D-Bus specification's "Message Protocol" chapter for those types,
//! with a unit test per rule.

use super::props::Value;

/// Message types.
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// Header field codes.
const F_PATH: u8 = 1;
const F_INTERFACE: u8 = 2;
const F_MEMBER: u8 = 3;
const F_ERROR_NAME: u8 = 4;
const F_REPLY_SERIAL: u8 = 5;
const F_DESTINATION: u8 = 6;
const F_SENDER: u8 = 7;
const F_SIGNATURE: u8 = 8;

/// The longest message the specification allows (128 MiB).
pub const MAX_MESSAGE: usize = 1 << 27;

/// Little-endian marshalling. Offsets are from the start of the buffer,
/// which is where alignment counts from: a message header starts a buffer,
/// and a body starts at an 8-aligned offset, so it can have its own.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn align(&mut self, n: usize) {
        while self.buf.len() % n != 0 {
            self.buf.push(0);
        }
    }
    pub fn byte(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.u32(v as u32);
    }
    /// `s` and `o`.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// `g`.
    pub fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements align to `elem_align`: the length counts the
    /// elements' bytes only, not the padding before the first one.
    pub fn array(&mut self, elem_align: usize, elems: impl FnOnce(&mut Writer)) {
        self.align(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.align(elem_align);
        let start = self.buf.len();
        elems(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    /// A struct or dict entry starts 8-aligned.
    pub fn strukt(&mut self, fields: impl FnOnce(&mut Writer)) {
        self.align(8);
        fields(self);
    }
    /// `v` holding `v`.
    pub fn variant(&mut self, v: &Value) {
        self.sig(signature(v));
        self.value(v);
    }
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Bool(b) => self.bool(*b),
            Value::Byte(n) => self.byte(*n),
            Value::I16(n) => self.u16(*n as u16),
            Value::U16(n) => self.u16(*n),
            Value::I32(n) => self.u32(*n as u32),
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => self.u64(*n as u64),
            Value::U64(n) => self.u64(*n),
            Value::Double(n) => self.u64(n.to_bits()),
            Value::Str(s) => self.str(s),
            Value::Bytes(b) => self.array(1, |w| w.buf.extend_from_slice(b)),
            Value::U32s(v) => self.array(4, |w| v.iter().for_each(|n| w.u32(*n))),
            Value::Strs(v) => self.array(4, |w| v.iter().for_each(|s| w.str(s))),
        }
    }
    /// `a(sv)`: unit properties.
    pub fn properties(&mut self, props: &[(String, Value)]) {
        self.array(8, |w| {
            for (name, v) in props {
                w.strukt(|w| {
                    w.str(name);
                    w.variant(v);
                })
            }
        })
    }
}

pub fn signature(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "b",
        Value::Byte(_) => "y",
        Value::I16(_) => "n",
        Value::U16(_) => "q",
        Value::I32(_) => "i",
        Value::U32(_) => "u",
        Value::I64(_) => "x",
        Value::U64(_) => "t",
        Value::Double(_) => "d",
        Value::Str(_) => "s",
        Value::Bytes(_) => "ay",
        Value::U32s(_) => "au",
        Value::Strs(_) => "as",
    }
}

/// A value read from a message: just enough structure to pick out what a
/// reply carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Every unsigned integer and boolean.
    U(u64),
    /// Every signed integer.
    I(i64),
    D(f64),
    /// `s`, `o` and `g`.
    S(String),
    Array(Vec<Arg>),
    Struct(Vec<Arg>),
    Variant(Box<Arg>),
}

impl Arg {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Arg::S(s) => Some(s),
            Arg::Variant(v) => v.as_str(),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Arg::U(n) => Some(*n),
            Arg::Variant(v) => v.as_u64(),
            _ => None,
        }
    }
}

/// Reads a buffer in either byte order (a bus relays messages in their
/// sender's).
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

fn bad(what: &str) -> String {
    format!("malformed D-Bus message: {what}")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize, big: bool) -> Self {
        Reader { buf, pos, big }
    }
    fn align(&mut self, n: usize) -> Result<(), String> {
        let p = self.pos.div_ceil(n) * n;
        if p > self.buf.len() {
            return Err(bad("padding past the end"));
        }
        self.pos = p;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| bad("value past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.align(N)?;
        let mut b: [u8; N] = self.take(N)?.try_into().expect("N bytes");
        if self.big {
            b.reverse();
        }
        Ok(b)
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }
    fn string(&mut self, len: usize) -> Result<String, String> {
        let b = self.take(len + 1)?;
        if b[len] != 0 {
            return Err(bad("string without its nul"));
        }
        String::from_utf8(b[..len].to_vec()).map_err(|_| bad("string not UTF-8"))
    }

    /// One complete type from the front of `sig`; returns the rest.
    pub fn read<'s>(&mut self, sig: &'s str) -> Result<(Arg, &'s str), String> {
        let c = *sig
            .as_bytes()
            .first()
            .ok_or_else(|| bad("empty signature"))?;
        let rest = &sig[1..];
        let arg = match c {
            b'y' => Arg::U(self.take(1)?[0] as u64),
            b'b' | b'u' | b'h' => Arg::U(self.u32()? as u64),
            b'q' => Arg::U(u16::from_le_bytes(self.fixed()?) as u64),
            b'n' => Arg::I(i16::from_le_bytes(self.fixed()?) as i64),
            b'i' => Arg::I(i32::from_le_bytes(self.fixed()?) as i64),
            b't' => Arg::U(u64::from_le_bytes(self.fixed()?)),
            b'x' => Arg::I(i64::from_le_bytes(self.fixed()?)),
            b'd' => Arg::D(f64::from_bits(u64::from_le_bytes(self.fixed()?))),
            b's' | b'o' => {
                let n = self.u32()? as usize;
                Arg::S(self.string(n)?)
            }
            b'g' => {
                let n = self.take(1)?[0] as usize;
                Arg::S(self.string(n)?)
            }
            b'v' => {
                let n = self.take(1)?[0] as usize;
                let inner = self.string(n)?;
                let (v, left) = self.read(&inner)?;
                if !left.is_empty() {
                    return Err(bad("a variant of more than one type"));
                }
                Arg::Variant(Box::new(v))
            }
            b'a' => {
                let n = self.u32()? as usize;
                let elem = one_type(rest)?;
                self.align(alignment(elem.as_bytes()[0]))?;
                let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
                let end = end.ok_or_else(|| bad("array past the end"))?;
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.read(elem)?.0);
                }
                if self.pos != end {
                    return Err(bad("array length"));
                }
                return Ok((Arg::Array(items), &rest[elem.len()..]));
            }
            b'(' | b'{' => {
                self.align(8)?;
                let whole = one_type(sig)?;
                let mut inner = &whole[1..whole.len() - 1];
                let mut fields = Vec::new();
                while !inner.is_empty() {
                    let (v, left) = self.read(inner)?;
                    fields.push(v);
                    inner = left;
                }
                return Ok((Arg::Struct(fields), &sig[whole.len()..]));
            }
            _ => return Err(bad(&format!("type {:?}", c as char))),
        };
        Ok((arg, rest))
    }

    /// Every value of a body with signature `sig`.
    pub fn read_all(&mut self, mut sig: &str) -> Result<Vec<Arg>, String> {
        let mut out = Vec::new();
        while !sig.is_empty() {
            let (v, rest) = self.read(sig)?;
            out.push(v);
            sig = rest;
        }
        Ok(out)
    }
}

fn alignment(c: u8) -> usize {
    match c {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b't' | b'x' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// The first complete type of `sig` (`a{sv}`, `(so)`, `u`…).
fn one_type(sig: &str) -> Result<&str, String> {
    let b = sig.as_bytes();
    let mut depth = 0i32;
    for (i, c) in b.iter().enumerate() {
        match c {
            b'a' => continue,
            b'(' | b'{' => depth += 1,
            b')' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return Ok(&sig[..=i]);
        }
        if depth < 0 {
            break;
        }
    }
    Err(bad(&format!("signature {sig:?}")))
}

/// A message as read from the bus.
#[derive(Debug, Default)]
pub struct Message {
    pub kind: u8,
    /// What a reply to it names (only the tests' fake systemd replies).
    #[cfg_attr(not(test), allow(dead_code))]
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<Arg>,
}

impl Message {
    /// An error's text: its message argument, or its name.
    pub fn error_text(&self) -> String {
        match self.body.first().and_then(Arg::as_str) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self
                .error_name
                .clone()
                .unwrap_or_else(|| "D-Bus error".into()),
        }
    }
}

/// A method call (or, with `kind` SIGNAL, a signal), ready to send.
pub struct Call<'a> {
    pub kind: u8,
    pub destination: Option<&'a str>,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub signature: &'a str,
    /// An ERROR's name.
    pub error_name: Option<&'a str>,
    pub body: Vec<u8>,
}

impl Call<'_> {
    pub fn encode(&self, serial: u32) -> Vec<u8> {
        self.encode_reply(serial, None)
    }

    pub fn encode_reply(&self, serial: u32, reply_to: Option<u32>) -> Vec<u8> {
        let mut w = Writer::default();
        w.byte(b'l');
        w.byte(self.kind);
        w.byte(0);
        w.byte(1);
        w.u32(self.body.len() as u32);
        w.u32(serial);
        let field = |w: &mut Writer, code: u8, sig: &str, v: &str| {
            w.strukt(|w| {
                w.byte(code);
                w.sig(sig);
                if sig == "g" {
                    w.sig(v)
                } else {
                    w.str(v)
                }
            })
        };
        w.array(8, |w| {
            if !self.path.is_empty() {
                field(w, F_PATH, "o", self.path);
            }
            if !self.interface.is_empty() {
                field(w, F_INTERFACE, "s", self.interface);
            }
            if !self.member.is_empty() {
                field(w, F_MEMBER, "s", self.member);
            }
            if let Some(e) = self.error_name {
                field(w, F_ERROR_NAME, "s", e);
            }
            if let Some(d) = self.destination {
                field(w, F_DESTINATION, "s", d);
            }
            if let Some(r) = reply_to {
                w.strukt(|w| {
                    w.byte(F_REPLY_SERIAL);
                    w.sig("u");
                    w.u32(r);
                });
            }
            if !self.signature.is_empty() {
                field(w, F_SIGNATURE, "g", self.signature);
            }
        });
        w.align(8);
        w.buf.extend_from_slice(&self.body);
        w.buf
    }
}

/// How many bytes the whole message takes, from its first 16 bytes.
pub fn message_len(head: &[u8; 16]) -> Result<usize, String> {
    let big = match head[0] {
        b'l' => false,
        b'B' => true,
        _ => return Err(bad("byte order")),
    };
    let mut r = Reader::new(head, 4, big);
    let body = r.u32()? as usize;
    let _serial = r.u32()?;
    let fields = r.u32()? as usize;
    let total = (16 + fields).div_ceil(8) * 8 + body;
    if total > MAX_MESSAGE {
        return Err(bad("longer than 128 MiB"));
    }
    Ok(total)
}

/// Parse one whole message (`message_len` bytes).
pub fn decode(buf: &[u8]) -> Result<Message, String> {
    let big = buf.first() == Some(&b'B');
    let mut r = Reader::new(buf, 1, big);
    let kind = r.take(1)?[0];
    r.take(2)?;
    let body_len = r.u32()? as usize;
    let serial = r.u32()?;
    let mut m = Message {
        kind,
        serial,
        ..Default::default()
    };
    let mut sig = String::new();
    let (fields, _) = r.read("a(yv)")?;
    let Arg::Array(fields) = fields else {
        unreachable!("read gives an array for a")
    };
    for f in fields {
        let Arg::Struct(kv) = f else { continue };
        let (Some(Arg::U(code)), Some(v)) = (kv.first(), kv.get(1)) else {
            continue;
        };
        let s = v.as_str().map(str::to_string);
        match *code as u8 {
            F_PATH => m.path = s,
            F_INTERFACE => m.interface = s,
            F_MEMBER => m.member = s,
            F_ERROR_NAME => m.error_name = s,
            F_REPLY_SERIAL => m.reply_serial = v.as_u64().map(|n| n as u32),
            F_SENDER => m.sender = s,
            F_SIGNATURE => sig = s.unwrap_or_default(),
            _ => {}
        }
    }
    r.align(8)?;
    let start = r.pos;
    if buf.len() - start != body_len {
        return Err(bad("body length"));
    }
    // The body aligns from its own start, which is 8-aligned.
    let mut b = Reader::new(&buf[start..], 0, big);
    m.body = b.read_all(&sig)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.buf
    }

    #[test]
    fn basic_types_align_as_the_specification_says() {
        // y then u: three bytes of padding; y then t: seven.
        assert_eq!(
            body(|w| {
                w.byte(1);
                w.u32(2)
            }),
            [1, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(
            body(|w| {
                w.byte(1);
                w.u64(2)
            }),
            [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        // A string: length, bytes, nul; a signature: one length byte.
        assert_eq!(body(|w| w.str("ab")), [2, 0, 0, 0, b'a', b'b', 0]);
        assert_eq!(body(|w| w.sig("as")), [2, b'a', b's', 0]);
        assert_eq!(body(|w| w.bool(true)), [1, 0, 0, 0]);
    }

    #[test]
    fn array_length_leaves_out_the_padding_before_the_first_element() {
        // at(u64) after a byte: length 4 bytes at 4, padding to 8, element.
        let b = body(|w| {
            w.byte(9);
            w.value(&Value::Bytes(vec![]));
        });
        assert_eq!(b, [9, 0, 0, 0, 0, 0, 0, 0]);
        let b = body(|w| {
            w.u32(7);
            w.array(8, |w| w.u64(5))
        });
        assert_eq!(b, [7, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        // An empty array of structs still pads to the struct's alignment.
        let b = body(|w| w.array(8, |_| {}));
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_property_value_reads_back_as_written() {
        let props: Vec<(String, Value)> = vec![
            ("A".into(), Value::Bool(true)),
            ("B".into(), Value::Byte(7)),
            ("C".into(), Value::I16(-2)),
            ("D".into(), Value::U16(3)),
            ("E".into(), Value::I32(-4)),
            ("F".into(), Value::U32(5)),
            ("G".into(), Value::I64(-6)),
            ("H".into(), Value::U64(u64::MAX)),
            ("I".into(), Value::Double(1.5)),
            ("J".into(), Value::Str("x.scope".into())),
            ("K".into(), Value::Bytes(vec![0b111, 2])),
            ("L".into(), Value::U32s(vec![1, 2])),
            ("M".into(), Value::Strs(vec!["a".into(), "bc".into()])),
        ];
        let b = body(|w| {
            w.str("u.scope");
            w.properties(&props);
        });
        let got = Reader::new(&b, 0, false).read_all("sa(sv)").unwrap();
        assert_eq!(got[0], Arg::S("u.scope".into()));
        let Arg::Array(items) = &got[1] else { panic!() };
        let v = |i: usize| match &items[i] {
            Arg::Struct(f) => f[1].clone(),
            _ => panic!(),
        };
        let var = |a: Arg| Arg::Variant(Box::new(a));
        assert_eq!(v(0), var(Arg::U(1)));
        assert_eq!(v(1), var(Arg::U(7)));
        assert_eq!(v(2), var(Arg::I(-2)));
        assert_eq!(v(3), var(Arg::U(3)));
        assert_eq!(v(4), var(Arg::I(-4)));
        assert_eq!(v(5), var(Arg::U(5)));
        assert_eq!(v(6), var(Arg::I(-6)));
        assert_eq!(v(7), var(Arg::U(u64::MAX)));
        assert_eq!(v(8), var(Arg::D(1.5)));
        assert_eq!(v(9), var(Arg::S("x.scope".into())));
        assert_eq!(v(10), var(Arg::Array(vec![Arg::U(7), Arg::U(2)])));
        assert_eq!(v(11), var(Arg::Array(vec![Arg::U(1), Arg::U(2)])));
        assert_eq!(
            v(12),
            var(Arg::Array(vec![Arg::S("a".into()), Arg::S("bc".into())]))
        );
    }

    #[test]
    fn a_call_encodes_and_decodes_with_its_header_fields() {
        let call = Call {
            kind: METHOD_CALL,
            destination: Some("org.freedesktop.systemd1"),
            path: "/org/freedesktop/systemd1",
            interface: "org.freedesktop.systemd1.Manager",
            member: "StopUnit",
            signature: "ss",
            error_name: None,
            body: body(|w| {
                w.str("hako-c1.scope");
                w.str("replace")
            }),
        };
        let bytes = call.encode(42);
        assert_eq!(&bytes[..4], b"l\x01\x00\x01");
        let head: [u8; 16] = bytes[..16].try_into().unwrap();
        assert_eq!(message_len(&head).unwrap(), bytes.len());
        let m = decode(&bytes).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.serial, 42);
        assert_eq!(m.path.as_deref(), Some("/org/freedesktop/systemd1"));
        assert_eq!(m.member.as_deref(), Some("StopUnit"));
        assert_eq!(
            m.body,
            vec![Arg::S("hako-c1.scope".into()), Arg::S("replace".into())]
        );
        let reply = Call {
            kind: ERROR,
            destination: None,
            path: "",
            interface: "",
            member: "",
            signature: "",
            error_name: Some("org.example.Failed"),
            body: vec![],
        }
        .encode_reply(43, Some(42));
        let m = decode(&reply).unwrap();
        assert_eq!(m.reply_serial, Some(42));
        assert_eq!(m.error_name.as_deref(), Some("org.example.Failed"));
        assert_eq!(m.error_text(), "org.example.Failed");
    }

    #[test]
    fn a_big_endian_message_reads_the_same() {
        // Header of a big-endian signal with body "u" = 7 and no fields but
        // the signature: built by hand as a sender on such a host would.
        let mut b = vec![b'B', SIGNAL, 0, 1, 0, 0, 0, 4, 0, 0, 0, 9, 0, 0, 0, 7];
        b.extend_from_slice(&[F_SIGNATURE, 1, b'g', 0, 1, b'u', 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 7]);
        let head: [u8; 16] = b[..16].try_into().unwrap();
        assert_eq!(message_len(&head).unwrap(), b.len());
        let m = decode(&b).unwrap();
        assert_eq!((m.kind, m.serial), (SIGNAL, 9));
        assert_eq!(m.body, vec![Arg::U(7)]);
    }

    #[test]
    fn truncated_or_lying_messages_are_errors_not_panics() {
        let call = Call {
            kind: METHOD_CALL,
            destination: None,
            path: "/a",
            interface: "i.f",
            member: "M",
            signature: "as",
            error_name: None,
            body: body(|w| w.value(&Value::Strs(vec!["x".into()]))),
        };
        let bytes = call.encode(1);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut lying = bytes.clone();
        let at = lying.len() - 10; // the array's length
        lying[at] = 0xff;
        assert!(decode(&lying).is_err());
        assert!(one_type("a(s").is_err());
        assert_eq!(one_type("a{sv}u").unwrap(), "a{sv}");
    }
}
