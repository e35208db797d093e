//! The few calls of systemd's D-Bus API the driver makes, over a blocking
//! Unix socket: connect, authenticate (EXTERNAL), `Hello`, then method
//! calls matched to their replies by serial. The message format is in
//! [`super::wire`] (why by hand is said there). No thread, no async
//! runtime: every wait is a read with a deadline.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

use super::props::Property;
use super::wire::{self, Arg, Call, Message, Writer};
use crate::error::{Error, Result};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a systemd job may take (runc waits as long).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a plain method call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Systemd {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Why a call failed: the connection, or the peer's D-Bus error.
#[derive(Debug)]
pub enum CallError {
    Io(String),
    Dbus { name: String, text: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => f.write_str(e),
            CallError::Dbus { text, .. } => f.write_str(text),
        }
    }
}

impl CallError {
    fn is(&self, error_name: &str) -> bool {
        matches!(self, CallError::Dbus { name, .. } if name == error_name)
    }
}

/// A socket address of a D-Bus address string (`unix:path=…` or
/// `unix:abstract=…`, the first usable of a `;` list, `%xx` escapes).
fn socket_addr(address: &str) -> std::result::Result<SocketAddr, String> {
    for one in address.split(';') {
        let Some(kv) = one.strip_prefix("unix:") else {
            continue;
        };
        for pair in kv.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = unescape(v)?;
            match k {
                "path" => return SocketAddr::from_pathname(v).map_err(|e| e.to_string()),
                "abstract" => {
                    use std::os::linux::net::SocketAddrExt;
                    return SocketAddr::from_abstract_name(v.as_bytes()).map_err(|e| e.to_string());
                }
                _ => {}
            }
        }
    }
    Err(format!(
        "no unix:path= or unix:abstract= in the bus address {address:?}"
    ))
}

fn unescape(v: &str) -> std::result::Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .ok_or("a cut %-escape in the bus address")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad %-escape in the bus address")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a bus address that is not UTF-8".into())
}

/// One connection to a message bus.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    /// Bytes read but not yet a whole message.
    inbuf: Vec<u8>,
    /// Signals that arrived while waiting for a reply.
    signals: Vec<Message>,
}

impl Conn {
    /// Connect, authenticate, and say Hello (sent together with `then`, so
    /// the calls a connection always starts with cost one round trip).
    pub fn open(address: &str, then: &[Call<'_>]) -> std::result::Result<Conn, CallError> {
        let io = |e: std::io::Error| CallError::Io(e.to_string());
        let addr = socket_addr(address).map_err(CallError::Io)?;
        let sock = UnixStream::connect_addr(&addr).map_err(io)?;
        sock.set_read_timeout(Some(CALL_TIMEOUT)).map_err(io)?;
        let mut c = Conn {
            sock,
            serial: 0,
            inbuf: Vec::new(),
            signals: Vec::new(),
        };
        // EXTERNAL without an identity: the bus takes the one the kernel
        // gives it for the socket (SO_PEERCRED), which is right also inside
        // a user namespace, where our own uid is not the one it sees.
        c.sock.write_all(b"\0AUTH EXTERNAL\r\n").map_err(io)?;
        let line = c.auth_line()?;
        if line != "DATA" {
            return Err(CallError::Io(format!("the bus refused EXTERNAL: {line}")));
        }
        c.sock.write_all(b"DATA\r\n").map_err(io)?;
        let line = c.auth_line()?;
        if !line.starts_with("OK") {
            return Err(CallError::Io(format!("the bus refused us: {line}")));
        }
        let mut out = b"BEGIN\r\n".to_vec();
        let hello = Call::method(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
        );
        let mut serials = Vec::new();
        for call in std::iter::once(&hello).chain(then) {
            c.serial += 1;
            out.extend(call.encode(c.serial));
            serials.push(c.serial);
        }
        c.sock.write_all(&out).map_err(io)?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        for s in serials {
            c.reply(s, deadline)?;
        }
        Ok(c)
    }

    fn auth_line(&mut self) -> std::result::Result<String, CallError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            if let Some(end) = self.inbuf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
                self.inbuf.drain(..end + 2);
                return Ok(line);
            }
            if self.inbuf.len() > 4096 {
                return Err(CallError::Io("the bus sent an endless line".into()));
            }
            self.fill(deadline)?;
        }
    }

    /// Read more bytes, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> std::result::Result<(), CallError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::Io("no answer in time".into()));
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| CallError::Io(e.to_string()))?;
        let mut buf = [0u8; 4096];
        match self.sock.read(&mut buf) {
            Ok(0) => Err(CallError::Io("the bus closed the connection".into())),
            Ok(n) => {
                self.inbuf.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(CallError::Io("no answer in time".into()))
            }
            Err(e) => Err(CallError::Io(e.to_string())),
        }
    }

    /// The next whole message.
    pub fn next_message(&mut self, deadline: Instant) -> std::result::Result<Message, CallError> {
        loop {
            if self.inbuf.len() >= 16 {
                let head: [u8; 16] = self.inbuf[..16].try_into().expect("16 bytes");
                let len = wire::message_len(&head).map_err(CallError::Io)?;
                if self.inbuf.len() >= len {
                    let m = wire::decode(&self.inbuf[..len]).map_err(CallError::Io);
                    self.inbuf.drain(..len);
                    return m;
                }
            }
            self.fill(deadline)?;
        }
    }

    pub fn send(
        &mut self,
        call: &Call<'_>,
        reply_to: Option<u32>,
    ) -> std::result::Result<u32, CallError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.sock
            .write_all(&call.encode_reply(self.serial, reply_to))
            .map_err(|e| CallError::Io(e.to_string()))?;
        Ok(self.serial)
    }

    /// Wait for the reply to `serial`; signals meanwhile are kept.
    fn reply(
        &mut self,
        serial: u32,
        deadline: Instant,
    ) -> std::result::Result<Vec<Arg>, CallError> {
        loop {
            let m = self.next_message(deadline)?;
            match m.kind {
                wire::SIGNAL => self.signals.push(m),
                wire::METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m.body),
                wire::ERROR if m.reply_serial == Some(serial) => {
                    return Err(CallError::Dbus {
                        text: m.error_text(),
                        name: m.error_name.unwrap_or_default(),
                    })
                }
                // Calls to us (nobody should) and stray replies.
                _ => {}
            }
        }
    }

    pub fn call(&mut self, call: &Call<'_>) -> std::result::Result<Vec<Arg>, CallError> {
        let serial = self.send(call, None)?;
        self.reply(serial, Instant::now() + CALL_TIMEOUT)
    }
}

impl<'a> Call<'a> {
    pub fn method(
        destination: &'a str,
        path: &'a str,
        interface: &'a str,
        member: &'a str,
    ) -> Self {
        Call {
            kind: wire::METHOD_CALL,
            destination: Some(destination),
            path,
            interface,
            member,
            signature: "",
            error_name: None,
            body: Vec::new(),
        }
    }

    /// The arguments, written by `body`, of signature `signature`.
    pub fn args(mut self, signature: &'a str, body: impl FnOnce(&mut Writer)) -> Self {
        let mut w = Writer::default();
        body(&mut w);
        self.signature = signature;
        self.body = w.buf;
        self
    }
}

fn manager(member: &str) -> Call<'_> {
    Call::method(DEST, PATH, MANAGER, member)
}

/// A connection to the system's systemd, or the user's (rootless).
pub struct Bus {
    conn: Conn,
    /// Results of the jobs that ended since we subscribed (job → result).
    jobs: HashMap<String, String>,
    user: bool,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("user", &self.user).finish()
    }
}

impl Bus {
    pub fn connect(user: bool) -> Result<Bus> {
        let address = if user {
            match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
                Ok(a) if !a.is_empty() => a,
                _ => {
                    let dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
                    format!("unix:path={dir}/bus")
                }
            }
        } else {
            match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
                Ok(a) if !a.is_empty() => a,
                _ => "unix:path=/run/dbus/system_bus_socket".into(),
            }
        };
        Bus::connect_to(&address, user)
    }

    pub fn connect_to(address: &str, user: bool) -> Result<Bus> {
        let which = if user {
            "the user bus"
        } else {
            "the system bus"
        };
        // Watch job ends before any job starts, so none can be missed; then
        // Subscribe (systemd sends job signals only once someone did).
        let rule = format!(
            "type='signal',sender='{DEST}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
        );
        let add_match = Call::method(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
        )
        .args("s", |w| w.str(&rule));
        let conn =
            Conn::open(address, &[add_match, manager("Subscribe")]).map_err(|e| match e {
                CallError::Dbus { .. } => err(format!("reach systemd on {which}"), e),
                CallError::Io(_) => err(format!("connect to {which} ({address})"), e),
            })?;
        Ok(Bus {
            conn,
            jobs: HashMap::new(),
            user,
        })
    }

    /// The manager's own cgroup: "" for the system instance, the user
    /// manager's (`/user.slice/user-1000.slice/user@1000.service`) for a user.
    pub fn manager_cgroup(&mut self) -> Result<String> {
        if !self.user {
            return Ok(String::new());
        }
        let what = "read the user manager's cgroup";
        let get =
            Call::method(DEST, PATH, "org.freedesktop.DBus.Properties", "Get").args("ss", |w| {
                w.str(MANAGER);
                w.str("ControlGroup")
            });
        let body = self.conn.call(&get).map_err(|e| err(what, e))?;
        body.first()
            .and_then(Arg::as_str)
            .map(str::to_string)
            .ok_or_else(|| err(what, "the reply is not a string"))
    }

    fn take_signals(&mut self) {
        for m in self.conn.signals.drain(..) {
            if m.member.as_deref() != Some("JobRemoved") || m.interface.as_deref() != Some(MANAGER)
            {
                continue;
            }
            // (id u, job o, unit s, result s)
            if let (Some(job), Some(result)) = (
                m.body.get(1).and_then(Arg::as_str),
                m.body.get(3).and_then(Arg::as_str),
            ) {
                self.jobs.insert(job.to_string(), result.to_string());
            }
        }
    }

    /// Wait for `job` to end; Ok when it did its work.
    fn wait_job(&mut self, what: &str, job: &str) -> Result<()> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            self.take_signals();
            if let Some(result) = self.jobs.remove(job) {
                return match result.as_str() {
                    "done" => Ok(()),
                    r => Err(err(what, format!("the job ended as {r:?}"))),
                };
            }
            let m = self.conn.next_message(deadline).map_err(|e| match e {
                CallError::Io(e) if e == "no answer in time" => {
                    err(what, "systemd did not finish the job in 30 s")
                }
                e => err(what, e),
            })?;
            if m.kind == wire::SIGNAL {
                self.conn.signals.push(m);
            }
        }
    }

    /// Call, and return the job object path of the reply.
    fn job_call(&mut self, call: &Call<'_>) -> std::result::Result<String, CallError> {
        let body = self.conn.call(call)?;
        body.first()
            .and_then(Arg::as_str)
            .map(str::to_string)
            .ok_or_else(|| CallError::Io("the reply carries no job".into()))
    }

    /// StartTransientUnit, waiting for its job.
    pub fn start_unit(&mut self, unit: &str, props: &[Property]) -> Result<()> {
        let what = format!("start unit {unit}");
        let call = manager("StartTransientUnit").args("ssa(sv)a(sa(sv))", |w| {
            w.str(unit);
            w.str("replace");
            w.properties(props);
            // No auxiliary units.
            w.array(8, |_| {});
        });
        let job = match self.job_call(&call) {
            Ok(j) => j,
            // A failed unit of an earlier container of that name: reset it
            // and try once more.
            Err(e) if e.is("org.freedesktop.systemd1.UnitExists") => {
                self.reset_failed(unit);
                self.job_call(&call).map_err(|e| err(&what, e))?
            }
            Err(e) => return Err(err(&what, e)),
        };
        self.wait_job(&what, &job)
    }

    /// SetUnitProperties (runtime only: gone with the unit).
    pub fn set_properties(&mut self, unit: &str, props: &[Property]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let call = manager("SetUnitProperties").args("sba(sv)", |w| {
            w.str(unit);
            w.bool(true);
            w.properties(props);
        });
        self.conn
            .call(&call)
            .map(drop)
            .map_err(|e| err(format!("set properties of unit {unit}"), e))
    }

    /// StopUnit, waiting for its job; a unit that is gone already is fine.
    pub fn stop_unit(&mut self, unit: &str) -> Result<()> {
        let what = format!("stop unit {unit}");
        let call = manager("StopUnit").args("ss", |w| {
            w.str(unit);
            w.str("replace");
        });
        match self.job_call(&call) {
            Ok(job) => self.wait_job(&what, &job),
            Err(e) if e.is("org.freedesktop.systemd1.NoSuchUnit") => Ok(()),
            Err(e) => Err(err(what, e)),
        }
    }

    /// ResetFailedUnit, so the name can be used again; errors do not matter.
    pub fn reset_failed(&mut self, unit: &str) {
        let call = manager("ResetFailedUnit").args("s", |w| w.str(unit));
        let _ = self.conn.call(&call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::props::Value;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

    #[test]
    fn bus_addresses_parse_as_dbus_writes_them() {
        let a = socket_addr("unix:path=/run/user/1000/bus,guid=abc").unwrap();
        assert_eq!(
            a.as_pathname().unwrap().to_str(),
            Some("/run/user/1000/bus")
        );
        let a = socket_addr("tcp:host=x;unix:path=/tmp/a%20b").unwrap();
        assert_eq!(a.as_pathname().unwrap().to_str(), Some("/tmp/a b"));
        {
            use std::os::linux::net::SocketAddrExt;
            let a = socket_addr("unix:abstract=/tmp/dbus-X").unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"/tmp/dbus-X"[..]));
        }
        assert!(socket_addr("tcp:host=localhost,port=1").is_err());
        assert!(socket_addr("unix:path=/a%2").is_err());
    }

    #[test]
    fn a_missing_bus_is_one_line_naming_it() {
        let e = Bus::connect_to("unix:path=/nonexistent/hako-bus", false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("the system bus") && e.contains("/nonexistent/hako-bus"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    /// A private dbus-daemon, stopped when dropped.
    struct Daemon {
        child: Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn daemon() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}/bus", dir.path().display());
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian's dbus-daemon package; scripts/setup.sh installs it)");
        // It prints its address once it listens.
        let mut line = [0u8; 1];
        let mut out = child.stdout.take().unwrap();
        while out.read(&mut line).unwrap() == 1 && line[0] != b'\n' {}
        Daemon {
            child,
            address,
            _dir: dir,
        }
    }

    /// What the fake systemd saw: (method, unit, properties' names).
    type Seen = (String, String, Vec<String>);

    /// A fake systemd on the private bus: it owns systemd's name and
    /// answers the driver's calls as systemd does, job signals included.
    fn fake_systemd(address: &str, seen: mpsc::Sender<Seen>) {
        let mut c = Conn::open(address, &[]).unwrap();
        let req = Call::method(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
        )
        .args("su", |w| {
            w.str(DEST);
            w.u32(4)
        });
        c.call(&req).unwrap();
        let mut job = 0u32;
        std::thread::spawn(move || loop {
            let Ok(m) = c.next_message(Instant::now() + Duration::from_secs(60)) else {
                return;
            };
            if m.kind != wire::METHOD_CALL {
                continue;
            }
            let member = m.member.clone().unwrap_or_default();
            let unit = m
                .body
                .first()
                .and_then(Arg::as_str)
                .unwrap_or("")
                .to_string();
            let names: Vec<String> = match m.body.get(2) {
                Some(Arg::Array(ps)) => ps
                    .iter()
                    .filter_map(|p| match p {
                        Arg::Struct(f) => f[0].as_str().map(str::to_string),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let _ = seen.send((member.clone(), unit.clone(), names));
            let mut w = Writer::default();
            let (kind, sig, error_name, result) = match member.as_str() {
                "Subscribe" | "ResetFailedUnit" | "SetUnitProperties" => {
                    (wire::METHOD_RETURN, "", None, None)
                }
                "Get" => {
                    w.variant(&Value::Str("/user.slice/fake@1.service".into()));
                    (wire::METHOD_RETURN, "v", None, None)
                }
                "StopUnit" if unit == "gone.scope" => {
                    w.str("Unit gone.scope not loaded.");
                    (
                        wire::ERROR,
                        "s",
                        Some("org.freedesktop.systemd1.NoSuchUnit"),
                        None,
                    )
                }
                "StartTransientUnit" | "StopUnit" => {
                    job += 1;
                    w.str(&format!("{PATH}/job/{job}"));
                    let r = if unit == "fails.scope" {
                        "failed"
                    } else {
                        "done"
                    };
                    (wire::METHOD_RETURN, "o", None, Some(r))
                }
                _ => continue,
            };
            let reply = Call {
                kind,
                destination: m.sender.as_deref(),
                path: "",
                interface: "",
                member: "",
                signature: sig,
                error_name,
                body: w.buf,
            };
            if c.send(&reply, Some(m.serial)).is_err() {
                return;
            }
            if let Some(result) = result {
                let sig = Call {
                    kind: wire::SIGNAL,
                    destination: None,
                    path: PATH,
                    interface: MANAGER,
                    member: "JobRemoved",
                    signature: "uoss",
                    error_name: None,
                    body: {
                        let mut w = Writer::default();
                        w.u32(job);
                        w.str(&format!("{PATH}/job/{job}"));
                        w.str(&unit);
                        w.str(result);
                        w.buf
                    },
                };
                let _ = c.send(&sig, None);
            }
        });
    }

    #[test]
    #[ignore = "needs dbus-daemon (scripts/setup.sh installs it)"]
    fn the_driver_calls_work_against_a_real_bus() {
        let d = daemon();
        let (tx, rx) = mpsc::channel();
        fake_systemd(&d.address, tx);
        let mut bus = Bus::connect_to(&d.address, true).unwrap();
        assert_eq!(rx.recv().unwrap().0, "Subscribe");
        assert_eq!(bus.manager_cgroup().unwrap(), "/user.slice/fake@1.service");
        rx.recv().unwrap();
        let props = vec![
            ("Delegate".to_string(), Value::Bool(true)),
            ("PIDs".to_string(), Value::U32s(vec![1])),
            ("MemoryMax".to_string(), Value::U64(1 << 26)),
        ];
        bus.start_unit("hako-c1.scope", &props).unwrap();
        let (m, unit, names) = rx.recv().unwrap();
        assert_eq!(
            (m.as_str(), unit.as_str()),
            ("StartTransientUnit", "hako-c1.scope")
        );
        assert_eq!(names, ["Delegate", "PIDs", "MemoryMax"]);
        let e = bus
            .start_unit("fails.scope", &props)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("start unit fails.scope") && e.contains("\"failed\""),
            "{e}"
        );
        rx.recv().unwrap();
        bus.set_properties("hako-c1.scope", &props[2..]).unwrap();
        assert_eq!(rx.recv().unwrap().2, ["MemoryMax"]);
        bus.stop_unit("hako-c1.scope").unwrap();
        rx.recv().unwrap();
        // A unit that is gone already is stopped.
        bus.stop_unit("gone.scope").unwrap();
        rx.recv().unwrap();
        bus.reset_failed("hako-c1.scope");
        assert_eq!(rx.recv().unwrap().0, "ResetFailedUnit");
        // A call nobody answers is a D-Bus error from the bus, by name.
        let e = bus
            .conn
            .call(&Call::method(
                "org.example.None",
                "/",
                "org.example.None",
                "X",
            ))
            .unwrap_err();
        assert!(e.is("org.freedesktop.DBus.Error.ServiceUnknown"), "{e:?}");
    }

    #[test]
    #[ignore = "needs dbus-daemon (scripts/setup.sh installs it)"]
    fn no_systemd_on_the_bus_is_one_line() {
        let d = daemon();
        let e = Bus::connect_to(&d.address, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("reach systemd on the system bus"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
