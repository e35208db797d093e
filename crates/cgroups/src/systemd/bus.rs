//! The few calls of systemd's D-Bus API the driver makes.
//!
//! Why the `dbus` crate (libdbus, linked statically through its `vendored`
//! feature): it is a blocking client, so hako-runc's start path stays free
//! of any async runtime (zbus runs an executor even behind its blocking
//! API), and nothing of it runs unless the systemd driver is chosen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbus::arg::{RefArg, Variant};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::Connection;
use dbus::message::MatchRule;
use dbus::Path;

use super::props::{Property, Value};
use crate::error::{Error, Result};

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a systemd job may take (runc waits as long).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Systemd {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn dbus_err(what: impl Into<String>, e: &dbus::Error) -> Error {
    err(
        what,
        e.message().unwrap_or(e.name().unwrap_or("D-Bus error")),
    )
}

fn variant(v: &Value) -> Variant<Box<dyn RefArg>> {
    Variant(match v {
        Value::Bool(b) => Box::new(*b),
        Value::Byte(n) => Box::new(*n),
        Value::I16(n) => Box::new(*n),
        Value::U16(n) => Box::new(*n),
        Value::I32(n) => Box::new(*n),
        Value::U32(n) => Box::new(*n),
        Value::I64(n) => Box::new(*n),
        Value::U64(n) => Box::new(*n),
        Value::Double(n) => Box::new(*n),
        Value::Str(s) => Box::new(s.clone()),
        Value::Bytes(b) => Box::new(b.clone()),
        Value::U32s(v) => Box::new(v.clone()),
        Value::Strs(v) => Box::new(v.clone()),
    })
}

/// `a(sv)`: properties as D-Bus takes them.
type PropArgs<'a> = Vec<(&'a str, Variant<Box<dyn RefArg>>)>;

fn args(props: &[Property]) -> PropArgs<'_> {
    props
        .iter()
        .map(|(n, v)| (n.as_str(), variant(v)))
        .collect()
}

/// A connection to the system's systemd, or the user's (rootless).
pub struct Bus {
    conn: Connection,
    /// Results of the jobs that ended since we subscribed (job → result).
    jobs: Arc<Mutex<HashMap<String, String>>>,
    user: bool,
}

impl Bus {
    pub fn connect(user: bool) -> Result<Bus> {
        let which = if user {
            "the user bus"
        } else {
            "the system bus"
        };
        let conn = if user {
            match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
                Ok(a) if !a.is_empty() => Connection::new_address(&a),
                _ => {
                    let dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
                    Connection::new_address(&format!("unix:path={dir}/bus"))
                }
            }
        } else {
            Connection::new_system()
        }
        .map_err(|e| dbus_err(format!("connect to {which}"), &e))?;
        let jobs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let seen = jobs.clone();
        // Before any job starts, so none of their ends can be missed.
        conn.add_match(
            MatchRule::new_signal(MANAGER, "JobRemoved"),
            move |(_, job, _, result): (u32, Path<'static>, String, String), _, _| {
                if let Ok(mut m) = seen.lock() {
                    m.insert(job.to_string(), result);
                }
                true
            },
        )
        .map_err(|e| dbus_err("watch systemd's jobs", &e))?;
        let bus = Bus { conn, jobs, user };
        // systemd sends job signals only once someone subscribed.
        bus.manager()
            .method_call::<(), _, _, _>(MANAGER, "Subscribe", ())
            .map_err(|e| dbus_err(format!("reach systemd on {which}"), &e))?;
        Ok(bus)
    }

    fn manager(&self) -> dbus::blocking::Proxy<'_, &Connection> {
        self.conn
            .with_proxy(DEST, "/org/freedesktop/systemd1", JOB_TIMEOUT)
    }

    /// The manager's own cgroup: "" for the system instance, the user
    /// manager's (`/user.slice/user-1000.slice/user@1000.service`) for a user.
    pub fn manager_cgroup(&self) -> Result<String> {
        if !self.user {
            return Ok(String::new());
        }
        self.manager()
            .get::<String>(MANAGER, "ControlGroup")
            .map_err(|e| dbus_err("read the user manager's cgroup", &e))
    }

    /// Wait for `job` to end; Ok when it did its work.
    fn wait_job(&self, what: &str, job: &Path<'_>) -> Result<()> {
        let key = job.to_string();
        let t0 = Instant::now();
        loop {
            if let Some(result) = self.jobs.lock().ok().and_then(|mut m| m.remove(&key)) {
                return match result.as_str() {
                    "done" => Ok(()),
                    r => Err(err(what, format!("the job ended as {r:?}"))),
                };
            }
            let left = JOB_TIMEOUT.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return Err(err(what, "systemd did not finish the job in 30 s"));
            }
            self.conn
                .process(left.min(Duration::from_millis(500)))
                .map_err(|e| dbus_err(what, &e))?;
        }
    }

    /// StartTransientUnit, waiting for its job.
    pub fn start_unit(&self, unit: &str, props: &[Property]) -> Result<()> {
        let what = format!("start unit {unit}");
        let call = |this: &Bus| -> std::result::Result<(Path<'static>,), dbus::Error> {
            // No auxiliary units.
            let aux: Vec<(&str, PropArgs<'_>)> = Vec::new();
            this.manager().method_call(
                MANAGER,
                "StartTransientUnit",
                (unit, "replace", args(props), aux),
            )
        };
        let (job,) = match call(self) {
            Ok(j) => j,
            // A failed unit of an earlier container of that name: reset it
            // and try once more.
            Err(e) if e.name() == Some("org.freedesktop.systemd1.UnitExists") => {
                self.reset_failed(unit);
                call(self).map_err(|e| dbus_err(&what, &e))?
            }
            Err(e) => return Err(dbus_err(&what, &e)),
        };
        self.wait_job(&what, &job)
    }

    /// SetUnitProperties (runtime only: gone with the unit).
    pub fn set_properties(&self, unit: &str, props: &[Property]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        self.manager()
            .method_call::<(), _, _, _>(MANAGER, "SetUnitProperties", (unit, true, args(props)))
            .map_err(|e| dbus_err(format!("set properties of unit {unit}"), &e))
    }

    /// StopUnit, waiting for its job; a unit that is gone already is fine.
    pub fn stop_unit(&self, unit: &str) -> Result<()> {
        let what = format!("stop unit {unit}");
        let r: std::result::Result<(Path<'static>,), _> =
            self.manager()
                .method_call(MANAGER, "StopUnit", (unit, "replace"));
        match r {
            Ok((job,)) => self.wait_job(&what, &job),
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => Ok(()),
            Err(e) => Err(dbus_err(what, &e)),
        }
    }

    /// ResetFailedUnit, so the name can be used again; errors do not matter.
    pub fn reset_failed(&self, unit: &str) {
        let _: std::result::Result<(), _> =
            self.manager()
                .method_call(MANAGER, "ResetFailedUnit", (unit,));
    }
}
