//! `hako build`: an image from a Containerfile, step by step, with a
//! layer cache.
//!
//! Each instruction that changes the image (everything but FROM and ARG)
//! makes an image of its own in the store, marked intermediate (hidden
//! from `images`), and the cache maps the step's key to it: the parent
//! image's id, the instruction after expansion with the build arguments
//! in effect, and for COPY/ADD the content digest of the sources. So an
//! unchanged rebuild only hashes its sources, and a changed source
//! rebuilds from that step on.
//!
//! - RUN runs in a container of the engine's (created from the step's
//!   parent image, in the foreground, its output streamed), whose
//!   overlay upper directory becomes the layer;
//! - COPY and ADD write into a build container's root filesystem from a
//!   chrooted child ([`copy`]); WORKDIR creates its directory likewise;
//! - the other instructions change the config only.
//!
//! Nothing of a failed or interrupted step stays: its container, root
//! filesystem and mounts go; the steps that finished stay as cache.

mod context;
mod copy;
pub mod file;
pub mod ignore;
pub mod words;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::dirs::Dirs;
use crate::record::RunOptions;
use crate::{Error, Result};
use file::{Args, Instruction};
use hako_image::{Digest, ImageId, Store};

/// `hako build`'s options (Docker's and podman's flags).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// A directory, `-` (a tar, or a Containerfile alone, on stdin) or a
    /// local tar archive.
    pub context: String,
    pub file: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Pull every FROM image, even one that is here.
    pub pull: bool,
    /// The RUN containers' network (default: the engine's default).
    pub network: Option<String>,
    pub labels: Vec<String>,
    pub iidfile: Option<PathBuf>,
    pub quiet: bool,
}

/// The proxy variables Docker passes to RUN without an ARG for them
/// (and keeps out of the image and the cache key).
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn fail(ins: &Instruction, file: &str, msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{file}:{}: {}: {msg}", ins.line, ins.keyword))
}

/// One stage as it is being built.
struct Stage {
    name: Option<String>,
    /// The image the steps so far made (None: scratch, nothing yet).
    image: Option<ImageId>,
    /// Its whole config (architecture, os, config, history, …).
    config: Value,
    /// The ARGs declared in this stage, with their values.
    args: BTreeMap<String, Option<String>>,
}

impl Stage {
    fn run_config(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"].as_object_mut().expect("an object")
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get(&self, key: &str) -> Option<String> {
        self.config["config"][key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

struct Builder<'a> {
    dirs: &'a Dirs,
    store: Store,
    o: &'a BuildOptions,
    ctx: context::Context,
    escape: char,
    build_args: BTreeMap<String, String>,
    used_args: BTreeSet<String>,
    global_args: BTreeMap<String, Option<String>>,
    /// Finished stages: (name, result).
    done: Vec<(Option<String>, Option<ImageId>)>,
    step: usize,
    steps: usize,
    /// SIGINT, SIGTERM and SIGHUP, held for the checks between steps.
    signals: Option<OwnedFd>,
}

/// Runs the build; returns the image id.
pub fn build(dirs: &Dirs, o: &BuildOptions) -> Result<ImageId> {
    let ctx = context::open(dirs, &o.context, o.file.as_deref())?;
    let cf = file::parse(&ctx.file)
        .map_err(|e| Error::Usage(format!("{}:{}: {}", ctx.file_name, e.line, e.msg)))?;
    let mut build_args = BTreeMap::new();
    for a in &o.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // `--build-arg K`: the value from our environment, if set.
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    // Block the signals that end a build, so a Ctrl-C between steps is
    // seen at the next check and the step's leftovers are removed.
    // (During a RUN the container gets it and the step fails.)
    let _ = hako_runtime::os::block_all_signals();
    let signals = hako_runtime::os::signalfd_all().ok();
    let store = dirs.image_store()?;
    sweep_dead_builds(dirs, &store);
    let mut b = Builder {
        dirs,
        store,
        o,
        escape: cf.escape,
        ctx,
        build_args,
        used_args: BTreeSet::new(),
        global_args: BTreeMap::new(),
        done: Vec::new(),
        step: 0,
        steps: 0,
        signals,
    };
    let id = b.run(&cf)?;
    let unused: Vec<&String> = b
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
        .collect();
    if !unused.is_empty() {
        eprintln!(
            "hako: warning: build arguments not used by any ARG: {}",
            unused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(id)
}

/// The stages as (first instruction index, end), FROM first in each.
fn stages(cf: &file::Containerfile, name: &str) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ins) in cf.instructions.iter().enumerate() {
        match (ins.keyword.as_str(), start) {
            ("FROM", Some(s)) => {
                out.push((s, i));
                start = Some(i);
            }
            ("FROM", None) => start = Some(i),
            ("ARG", None) => {}
            (_, None) => {
                return Err(Error::Usage(format!(
                    "{name}:{}: {} before the first FROM (only ARG may come before it)",
                    ins.line, ins.keyword
                )))
            }
            _ => {}
        }
    }
    match start {
        Some(s) => out.push((s, cf.instructions.len())),
        None => {
            return Err(Error::Usage(format!(
                "{name}: no FROM instruction: nothing to build"
            )))
        }
    }
    Ok(out)
}

fn short(id: &ImageId) -> String {
    id.hex()[..12].to_string()
}

fn key_of(parts: &[&str]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
        .parse()
        .expect("a digest")
}

/// Docker's and podman's scratch: no layers, this platform.
fn scratch_config() -> Value {
    let p = hako_image::manifest::Platform::current();
    json!({
        "architecture": p.architecture,
        "os": p.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

fn now() -> String {
    crate::util::now_rfc3339_nanos()
}

impl Builder<'_> {
    fn interrupted(&self) -> Result<()> {
        if let Some(fd) = &self.signals {
            if hako_runtime::os::poll_in(fd.as_fd(), 0).unwrap_or(false) {
                let sig = crate::monitor::read_siginfo(fd.as_fd()).map_or(0, |s| s.0);
                if matches!(
                    sig,
                    libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
                ) {
                    return Err(Error::Usage("interrupted".into()));
                }
            }
        }
        Ok(())
    }

    fn say(&self, line: &str) {
        if !self.o.quiet {
            eprintln!("{line}");
        }
    }

    fn run(&mut self, cf: &file::Containerfile) -> Result<ImageId> {
        let name = self.ctx.file_name.clone();
        let all = stages(cf, &name)?;
        // Global ARGs: before the first FROM, usable in FROM lines.
        for ins in &cf.instructions[..all[0].0] {
            self.arg(ins, None)?;
        }
        let last = match &self.o.target {
            None => all.len() - 1,
            Some(t) => all
                .iter()
                .position(|(s, _)| {
                    stage_name(&cf.instructions[*s]).is_some_and(|n| n.eq_ignore_ascii_case(t))
                })
                .ok_or_else(|| {
                    Error::Usage(format!("--target {t}: no stage of that name in {name}"))
                })?,
        };
        self.steps = all[..=last].iter().map(|(s, e)| e - s).sum();
        let mut result = None;
        for &(s, e) in &all[..=last] {
            let mut st = self.from(&cf.instructions[s])?;
            for ins in &cf.instructions[s + 1..e] {
                self.interrupted()?;
                self.instruction(&mut st, ins)?;
            }
            let id = self.materialize(&mut st)?;
            self.done.push((st.name.clone(), Some(id.clone())));
            result = Some(id);
        }
        let mut id = result.expect("at least one stage");
        if !self.o.labels.is_empty() {
            let (layers, mut config) = self.store.layers_and_config(&id.to_string())?;
            let labels = config["config"]
                .as_object_mut()
                .map(|c| c.entry("Labels").or_insert_with(|| json!({})));
            if let Some(Value::Object(m)) = labels {
                for l in &self.o.labels {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    m.insert(k.into(), v.into());
                }
            } else {
                config["config"]["Labels"] = json!(self
                    .o
                    .labels
                    .iter()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or((l, ""));
                        (k.to_string(), Value::String(v.to_string()))
                    })
                    .collect::<serde_json::Map<_, _>>());
            }
            id = self.store.compose_image(&layers, &config, &[], true)?;
        }
        self.store.keep(&id)?;
        for t in &self.o.tags {
            self.store.tag(&id.to_string(), t)?;
        }
        Ok(id)
    }

    fn lookup(&self, st: Option<&Stage>) -> impl Fn(&str) -> Option<String> + '_ {
        let env: Vec<(String, String)> = st.map(Stage::env).unwrap_or_default();
        let args: BTreeMap<String, Option<String>> = match st {
            Some(s) => s.args.clone(),
            None => self.global_args.clone(),
        };
        move |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| args.get(k).cloned().flatten())
        }
    }

    fn expand(&self, st: Option<&Stage>, ins: &Instruction, s: &str) -> Result<String> {
        let f = self.lookup(st);
        words::expand(s, &f, self.escape).map_err(|e| self.err(ins, e))
    }

    fn words(&self, st: Option<&Stage>, ins: &Instruction, s: &str) -> Result<Vec<String>> {
        let f = self.lookup(st);
        words::words(s, &f, self.escape).map_err(|e| self.err(ins, e))
    }

    fn err(&self, ins: &Instruction, msg: impl std::fmt::Display) -> Error {
        fail(ins, &self.ctx.file_name, msg)
    }

    /// `ARG NAME[=DEFAULT]…`, globally (`st` None) or in a stage.
    fn arg(&mut self, ins: &Instruction, st: Option<&mut Stage>) -> Result<()> {
        let raw = words::split_raw(&ins.rest(), self.escape);
        let mut decl = Vec::new();
        for w in &raw {
            let (k, default) = match w.split_once('=') {
                Some((k, v)) => {
                    let f = self.lookup(st.as_deref());
                    let v = words::expand(v, &f, self.escape).map_err(|e| self.err(ins, e))?;
                    (k.to_string(), Some(v))
                }
                None => (w.clone(), None),
            };
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.err(ins, format!("{k:?} is not a valid argument name")));
            }
            decl.push((k, default));
        }
        let mut args = Vec::new();
        for (k, default) in decl {
            let value = match self.build_args.get(&k) {
                Some(v) => {
                    self.used_args.insert(k.clone());
                    Some(v.clone())
                }
                // In a stage, a bare ARG takes the global one's value.
                None => default.or_else(|| {
                    st.as_ref()
                        .and_then(|_| self.global_args.get(&k).cloned().flatten())
                }),
            };
            args.push((k, value));
        }
        match st {
            None => self.global_args.extend(args),
            Some(st) => st.args.extend(args),
        }
        Ok(())
    }

    fn begin(&mut self, ins: &Instruction) -> Instant {
        self.step += 1;
        let text = ins.text.lines().next().unwrap_or("");
        self.say(&format!("STEP {}/{}: {text}", self.step, self.steps));
        Instant::now()
    }

    fn from(&mut self, ins: &Instruction) -> Result<Stage> {
        self.begin(ins);
        let mut w = self.words(None, ins, &ins.rest())?;
        let name = match w.len() {
            1 => None,
            3 if w[1].eq_ignore_ascii_case("as") => Some(w.pop().expect("3 words")),
            _ => return Err(self.err(ins, "FROM IMAGE [AS NAME]")),
        };
        if let Some(n) = &name {
            if !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(self.err(ins, format!("{n:?} is not a valid stage name")));
            }
        }
        let base = &w[0];
        let mut st = Stage {
            name: name.clone(),
            image: None,
            config: scratch_config(),
            args: BTreeMap::new(),
        };
        if base == "scratch" {
            return Ok(st);
        }
        let image = match self
            .done
            .iter()
            .rev()
            .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(base)))
        {
            Some((_, Some(id))) => id.clone(),
            Some((_, None)) => return Ok(st),
            None => self.image(ins, base, self.o.pull)?,
        };
        let (_, config) = self.store.layers_and_config(&image.to_string())?;
        st.config = config;
        st.image = Some(image);
        // ONBUILD triggers of the base run now, and are not passed on.
        let triggers: Vec<String> = st.config["config"]["OnBuild"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if !triggers.is_empty() {
            st.run_config().remove("OnBuild");
            self.steps += triggers.len();
            for t in triggers {
                let trig = file::parse_trigger(&t, ins.line)
                    .map_err(|e| self.err(ins, format!("ONBUILD trigger {t:?}: {}", e.msg)))?;
                self.instruction(&mut st, &trig)?;
            }
        }
        Ok(st)
    }

    /// An image by name: here, or pulled (always with --pull).
    fn image(&self, ins: &Instruction, name: &str, pull: bool) -> Result<ImageId> {
        if !pull {
            if let Ok(r) = self.store.resolve(name) {
                return Ok(r.id);
            }
        }
        if !self.o.quiet {
            eprintln!("pulling {name}");
        }
        self.store
            .pull(name, &hako_image::PullOptions::default())
            .map_err(|e| self.err(ins, format!("{name}: {e}")))?;
        Ok(self.store.resolve(name).map_err(|e| self.err(ins, e))?.id)
    }

    /// The stage's current image, made if its config changed since.
    fn materialize(&self, st: &mut Stage) -> Result<ImageId> {
        let layers = match &st.image {
            Some(id) => {
                let (layers, config) = self.store.layers_and_config(&id.to_string())?;
                if config == st.config {
                    return Ok(id.clone());
                }
                layers
            }
            None => Vec::new(),
        };
        let id = self.store.compose_image(&layers, &st.config, &[], true)?;
        st.image = Some(id.clone());
        Ok(id)
    }

    fn parent_key(st: &Stage) -> String {
        st.image
            .as_ref()
            .map_or("scratch".to_string(), |i| i.to_string())
    }

    /// The RUN environment's build arguments (those the stage declared,
    /// not overridden by ENV) and the proxy ones given.
    fn run_args(&self, st: &Stage) -> Vec<String> {
        let env = st.env();
        let mut out: Vec<String> = st
            .args
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == *k))
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        for p in PROXY_ARGS {
            if let Some(v) = self.build_args.get(*p) {
                if !st.args.contains_key(*p) {
                    out.push(format!("{p}={v}"));
                }
            }
        }
        out
    }

    fn instruction(&mut self, st: &mut Stage, ins: &Instruction) -> Result<()> {
        if ins.keyword == "ARG" {
            self.begin(ins);
            return self.arg(ins, Some(st));
        }
        if ins.keyword == "FROM" {
            return Err(self.err(ins, "FROM starts a stage; it cannot be an ONBUILD trigger"));
        }
        let t0 = self.begin(ins);
        // What the step is, for its cache key: the instruction after
        // expansion, and what it depends on besides its parent.
        let (what, extra) = match ins.keyword.as_str() {
            "RUN" => {
                let mut args = self.run_args(st);
                args.sort();
                (
                    format!("RUN {:?} {:?}", ins.args, ins.heredocs),
                    args.join("\n"),
                )
            }
            "COPY" | "ADD" => (String::new(), String::new()),
            _ => (self.meta_key(st, ins)?, String::new()),
        };
        let made = match ins.keyword.as_str() {
            "COPY" | "ADD" => match self.copy(st, ins)? {
                (id, true) => {
                    self.adopt(st, &id)?;
                    self.say(&format!("--> CACHED {}", short(&id)));
                    return Ok(());
                }
                (id, false) => id,
            },
            _ => {
                self.materialize(st)?;
                let key = key_of(&[&Self::parent_key(st), &what, &extra]);
                if let Some(id) = self.cached(&key) {
                    self.adopt(st, &id)?;
                    self.say(&format!("--> CACHED {}", short(&id)));
                    return Ok(());
                }
                let id = if ins.keyword == "RUN" {
                    self.run_step(st, ins)?
                } else {
                    self.meta(st, ins)?
                };
                self.store.cache_put(&key, &id)?;
                id
            }
        };
        self.adopt(st, &made)?;
        self.say(&format!(
            "--> {} ({:.2}s)",
            short(&made),
            t0.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    fn cached(&self, key: &Digest) -> Option<ImageId> {
        (!self.o.no_cache)
            .then(|| self.store.cache_get(key))
            .flatten()
    }

    fn adopt(&self, st: &mut Stage, id: &ImageId) -> Result<()> {
        let (_, config) = self.store.layers_and_config(&id.to_string())?;
        st.config = config;
        st.image = Some(id.clone());
        Ok(())
    }

    /// A metadata instruction's key: its keyword and expanded arguments.
    fn meta_key(&self, st: &Stage, ins: &Instruction) -> Result<String> {
        let expanded = match ins.keyword.as_str() {
            "CMD" | "ENTRYPOINT" | "SHELL" | "HEALTHCHECK" | "ONBUILD" | "MAINTAINER" => {
                format!("{:?} {:?}", ins.flags, ins.args)
            }
            _ => self.words(Some(st), ins, &ins.rest())?.join("\u{0}"),
        };
        Ok(format!("{} {expanded}", ins.keyword))
    }

    /// The history entry of a step.
    fn history(&self, st: &mut Stage, ins: &Instruction, empty: bool) {
        let mut e = json!({
            "created": now(),
            "created_by": ins.text.lines().next().unwrap_or(""),
            "comment": "hako build",
        });
        if empty {
            e["empty_layer"] = json!(true);
        }
        match st.config["history"].as_array_mut() {
            Some(h) => h.push(e),
            None => st.config["history"] = json!([e]),
        }
        st.config["created"] = json!(now());
    }

    fn shell(&self, st: &Stage) -> Vec<String> {
        st.config["config"]["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// CMD/ENTRYPOINT/HEALTHCHECK's command: the exec form, or the shell
    /// form under the stage's SHELL.
    fn command(&self, st: &Stage, args: &Args) -> Vec<String> {
        match args {
            Args::Json(v) => v.clone(),
            Args::Shell(s) => {
                let mut v = self.shell(st);
                v.push(s.clone());
                v
            }
        }
    }

    /// A config-only instruction: the new config, as an image.
    fn meta(&self, st: &mut Stage, ins: &Instruction) -> Result<ImageId> {
        let kw = ins.keyword.as_str();
        match kw {
            "ENV" | "LABEL" => {
                let f = self.lookup(Some(st));
                let pairs = words::pairs(&ins.rest(), &f, self.escape, kw == "ENV")
                    .map_err(|e| self.err(ins, e))?;
                drop(f);
                let c = st.run_config();
                if kw == "ENV" {
                    let env = c.entry("Env").or_insert_with(|| json!([]));
                    if !env.is_array() {
                        *env = json!([]);
                    }
                    let list = env.as_array_mut().expect("an array");
                    for (k, v) in pairs {
                        list.retain(|e| {
                            e.as_str().and_then(|e| e.split_once('=')).map(|x| x.0) != Some(&k)
                        });
                        list.push(Value::String(format!("{k}={v}")));
                    }
                } else {
                    let labels = c.entry("Labels").or_insert_with(|| json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    let m = labels.as_object_mut().expect("an object");
                    for (k, v) in pairs {
                        m.insert(k, Value::String(v));
                    }
                }
            }
            "WORKDIR" => {
                let dir = self.expand(Some(st), ins, ins.rest().trim())?;
                let cur = st.get("WorkingDir").unwrap_or_else(|| "/".into());
                let abs = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", cur.trim_end_matches('/'))
                };
                let abs = format!("/{}", ignore::clean(&abs));
                st.run_config()
                    .insert("WorkingDir".into(), Value::String(abs.clone()));
                // The directory exists in the image, owned by the USER.
                if !self.exists_in_image(st, &abs)? {
                    return self.workdir_layer(st, ins, &abs);
                }
            }
            "USER" => {
                let u = self.expand(Some(st), ins, ins.rest().trim())?;
                st.run_config().insert("User".into(), Value::String(u));
            }
            "EXPOSE" => {
                let ports = self.words(Some(st), ins, &ins.rest())?;
                let mut m = st.config["config"]["ExposedPorts"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for p in ports {
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let ok_port = match port.split_once('-') {
                        Some((a, b)) => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                        None => port.parse::<u16>().is_ok_and(|n| n > 0),
                    };
                    if !ok_port || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(self.err(ins, format!("{p:?} is not PORT[/tcp|/udp|/sctp]")));
                    }
                    m.insert(format!("{port}/{proto}"), json!({}));
                }
                st.run_config()
                    .insert("ExposedPorts".into(), Value::Object(m));
            }
            "VOLUME" => {
                let paths = match &ins.args {
                    Args::Json(v) => v.clone(),
                    Args::Shell(s) => self.words(Some(st), ins, s)?,
                };
                let mut m = st.config["config"]["Volumes"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for p in paths {
                    if p.is_empty() {
                        return Err(self.err(ins, "a volume path cannot be empty"));
                    }
                    m.insert(p, json!({}));
                }
                st.run_config().insert("Volumes".into(), Value::Object(m));
            }
            "STOPSIGNAL" => {
                let s = self.expand(Some(st), ins, ins.rest().trim())?;
                crate::util::parse_signal(&s).map_err(|e| self.err(ins, e))?;
                st.run_config()
                    .insert("StopSignal".into(), Value::String(s));
            }
            "CMD" => {
                let v = self.command(st, &ins.args);
                st.run_config().insert("Cmd".into(), json!(v));
            }
            "ENTRYPOINT" => {
                let v = self.command(st, &ins.args);
                let c = st.run_config();
                c.insert("Entrypoint".into(), json!(v));
                // Docker: an ENTRYPOINT resets the base image's CMD.
                c.insert("Cmd".into(), Value::Null);
            }
            "SHELL" => match &ins.args {
                Args::Json(v) if !v.is_empty() => {
                    st.run_config().insert("Shell".into(), json!(v));
                }
                _ => return Err(self.err(ins, "SHELL takes the JSON form: SHELL [\"sh\", \"-c\"]")),
            },
            "HEALTHCHECK" => {
                let hc = self.healthcheck(ins)?;
                st.run_config().insert("Healthcheck".into(), hc);
            }
            "ONBUILD" => {
                let t = ins.rest();
                file::parse_trigger(&t, ins.line).map_err(|e| self.err(ins, e.msg))?;
                let c = st.run_config();
                let list = c.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut()
                    .expect("an array")
                    .push(Value::String(t));
            }
            "MAINTAINER" => {
                st.config["author"] = Value::String(ins.rest());
            }
            other => return Err(self.err(ins, format!("{other} is not a config instruction"))),
        }
        self.history(st, ins, true);
        let layers = match &st.image {
            Some(id) => self.store.layers_and_config(&id.to_string())?.0,
            None => Vec::new(),
        };
        Ok(self.store.compose_image(&layers, &st.config, &[], true)?)
    }

    fn healthcheck(&self, ins: &Instruction) -> Result<Value> {
        let rest = match &ins.args {
            Args::Shell(s) => s.trim().to_string(),
            Args::Json(_) => return Err(self.err(ins, "HEALTHCHECK [OPTIONS] CMD … or NONE")),
        };
        if rest.eq_ignore_ascii_case("none") {
            return Ok(json!({"Test": ["NONE"]}));
        }
        let (word, cmd) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| self.err(ins, "HEALTHCHECK [OPTIONS] CMD command"))?;
        if !word.eq_ignore_ascii_case("cmd") {
            return Err(self.err(ins, "HEALTHCHECK [OPTIONS] CMD command, or NONE"));
        }
        let test = match serde_json::from_str::<Vec<String>>(cmd.trim()) {
            Ok(v) => {
                let mut t = vec!["CMD".to_string()];
                t.extend(v);
                t
            }
            Err(_) => vec!["CMD-SHELL".to_string(), cmd.trim().to_string()],
        };
        let mut hc = json!({ "Test": test });
        for (k, v) in &ins.flags {
            let field = match k.as_str() {
                "interval" => "Interval",
                "timeout" => "Timeout",
                "start-period" => "StartPeriod",
                "start-interval" => "StartInterval",
                "retries" => {
                    let n: u32 = v
                        .parse()
                        .map_err(|_| self.err(ins, format!("--retries {v:?}: a number")))?;
                    hc["Retries"] = json!(n);
                    continue;
                }
                _ => return Err(self.err(ins, format!("unknown flag --{k}"))),
            };
            let d = crate::util::parse_go_duration(v)
                .ok_or_else(|| self.err(ins, format!("--{k} {v:?}: a duration such as 30s")))?;
            hc[field] = json!(d.as_nanos() as u64);
        }
        Ok(hc)
    }

    /// Whether `path` is in the stage's image (its layers, top first,
    /// deletions honoured).
    fn exists_in_image(&self, st: &Stage, path: &str) -> Result<bool> {
        let Some(id) = &st.image else {
            return Ok(false);
        };
        let (layers, _) = self.store.layers_and_config(&id.to_string())?;
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(true);
        }
        for l in layers.iter().rev() {
            // A layer a build just made is unpacked when a root first
            // uses it: now, then.
            let p = self.store.ensure_layer(l)?.join(rel);
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                return Ok(!(md.file_type().is_char_device() && md.rdev() == 0));
            }
        }
        Ok(false)
    }

    /// The rootfs options the engine's containers get (rootless mount
    /// program, …).
    fn rootfs_options(&self) -> hako_image::RootfsOptions {
        hako_image::rootfs::RootfsOptions {
            mount_program: self.dirs.config.engine.mount_program.clone(),
            ..Default::default()
        }
    }

    /// A scratch root filesystem of the stage's image for a file step,
    /// removed on drop.
    fn scratch_root(&self, st: &mut Stage) -> Result<ScratchRoot<'_>> {
        let image = self.materialize(st)?;
        let id = format!("build-{}-{}", owner_tag(), &crate::util::random_id()?[..12]);
        let m = self
            .store
            .prepare_rootfs_with(&image.to_string(), &id, &self.rootfs_options())?;
        Ok(ScratchRoot {
            store: &self.store,
            id,
            path: m.path().to_path_buf(),
        })
    }

    fn workdir_layer(&self, st: &mut Stage, ins: &Instruction, dir: &str) -> Result<ImageId> {
        let root = self.scratch_root(st)?;
        let attrs = match st.get("User") {
            Some(u) => {
                let a =
                    crate::spec::user_in_rootfs(&root.path, &u).map_err(|e| self.err(ins, e))?;
                copy::Attrs {
                    uid: a.uid,
                    gid: a.gid,
                    mode: None,
                }
            }
            None => copy::Attrs::default(),
        };
        let c = copy::Copy {
            from: copy::From {
                root: &self.ctx.root,
                ignore: Some(&self.ctx.ignore),
            },
            sources: vec![],
            dest: format!("{dir}/"),
            attrs,
            extract_archives: false,
        };
        c.run(&root.path).map_err(|e| self.err(ins, e))?;
        self.commit_layer(st, ins, &root)
    }

    /// The scratch root's changes as a new layer over the stage's image.
    fn commit_layer(
        &self,
        st: &mut Stage,
        ins: &Instruction,
        root: &ScratchRoot,
    ) -> Result<ImageId> {
        let layer = self.store.layer_from_changes(&root.id)?;
        self.push_layer(st, ins, layer)
    }

    fn push_layer(
        &self,
        st: &mut Stage,
        ins: &Instruction,
        layer: hako_image::store::LayerRecord,
    ) -> Result<ImageId> {
        let mut layers = match &st.image {
            Some(id) => self.store.layers_and_config(&id.to_string())?.0,
            None => Vec::new(),
        };
        layers.push(layer);
        self.history(st, ins, false);
        Ok(self.store.compose_image(&layers, &st.config, &[], true)?)
    }

    /// COPY or ADD; the image, and whether it came from the cache.
    fn copy(&mut self, st: &mut Stage, ins: &Instruction) -> Result<(ImageId, bool)> {
        let is_add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            let known = matches!(k.as_str(), "from" | "chown" | "chmod" | "link")
                || (is_add && k == "checksum");
            if !known {
                return Err(self.err(ins, format!("unknown flag --{k}")));
            }
        }
        if is_add && ins.flag("from").is_some() {
            return Err(self.err(ins, "ADD has no --from (use COPY --from)"));
        }
        let mut w = match &ins.args {
            // Each element is one word, its variables expanded.
            Args::Json(v) => v
                .iter()
                .map(|x| self.expand(Some(st), ins, &quoted(x, self.escape)))
                .collect::<Result<Vec<_>>>()?,
            Args::Shell(s) => self.words(Some(st), ins, s)?,
        };
        // Heredoc sources (`COPY <<EOF /dest`) are inline files.
        let mut inline = Vec::new();
        for h in &ins.heredocs {
            let body = if h.expand {
                self.expand(Some(st), ins, &quoted(&h.body, self.escape))?
            } else {
                h.body.clone()
            };
            inline.push(copy::Source::Inline {
                name: h.name.clone(),
                data: body.into_bytes(),
            });
            w.retain(|x| !x.starts_with("<<") || !x.ends_with(&h.name));
        }
        let Some(dest_word) = w.pop() else {
            return Err(self.err(ins, format!("{} SOURCE… DEST", ins.keyword)));
        };
        if w.is_empty() && inline.is_empty() {
            return Err(self.err(ins, format!("{} SOURCE… DEST", ins.keyword)));
        }
        // ADD's URLs: downloaded here (by the builder, whatever the RUN
        // network), the rest from the context.
        let urls: Vec<String> = w
            .iter()
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .cloned()
            .collect();
        if !urls.is_empty() && !is_add {
            return Err(self.err(ins, "COPY takes no URL (ADD does)"));
        }
        w.retain(|s| !urls.contains(s));
        let fetched_dir = match urls.is_empty() {
            true => None,
            false => Some(context::Scratch::new(self.dirs, "fetch")?),
        };
        let checksum = match ins.flag("checksum") {
            Some(c) if urls.len() != 1 => {
                return Err(self.err(ins, format!("--checksum={c} needs exactly one URL source")))
            }
            Some(c) => Some(
                c.parse::<Digest>()
                    .map_err(|e| self.err(ins, format!("--checksum={c}: {e}")))?,
            ),
            None => None,
        };
        for (i, u) in urls.iter().enumerate() {
            let dir = &fetched_dir.as_ref().expect("made above").0;
            let to = dir.join(i.to_string());
            let got = hako_image::fetch::download(u, &to).map_err(|e| self.err(ins, e))?;
            if let Some(want) = &checksum {
                let bytes = std::fs::read(&to).map_err(|e| self.err(ins, e))?;
                let have = Digest::of(&bytes);
                if &have != want {
                    return Err(self.err(ins, format!("{u}: checksum {have}, expected {want}")));
                }
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| self.err(ins, e))?;
            inline.push(copy::Source::Fetched {
                host: to,
                name: got.name,
            });
        }
        let workdir = st.get("WorkingDir").unwrap_or_else(|| "/".into());
        let dest = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            let d = format!("{}/{dest_word}", workdir.trim_end_matches('/'));
            if dest_word.ends_with('/') || dest_word == "." {
                format!("{}/", d.trim_end_matches("/."))
            } else {
                d
            }
        };
        let mode = match ins.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| self.err(ins, format!("--chmod {m:?}: an octal mode")))?,
            ),
            None => None,
        };
        // --from: a finished stage, or an image, mounted read-only.
        let from_image = match ins.flag("from") {
            Some(f) => {
                let f = self.expand(Some(st), ins, f)?;
                let stage = match f.parse::<usize>() {
                    Ok(n) => self.done.get(n).map(|(_, id)| id.clone()),
                    Err(_) => self
                        .done
                        .iter()
                        .rev()
                        .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&f)))
                        .map(|(_, id)| id.clone()),
                };
                match stage {
                    Some(Some(id)) => Some(id),
                    Some(None) => {
                        return Err(
                            self.err(ins, format!("--from={f}: the stage is empty (scratch)"))
                        )
                    }
                    None if st
                        .name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&f)) =>
                    {
                        return Err(
                            self.err(ins, format!("--from={f}: a stage cannot copy from itself"))
                        )
                    }
                    None => Some(self.image(ins, &f, false)?),
                }
            }
            None => None,
        };
        let from_root = match &from_image {
            Some(id) => {
                let rid = format!("build-{}", crate::util::random_id()?);
                let m = self.store.prepare_rootfs_with(
                    &id.to_string(),
                    &rid,
                    &self.rootfs_options(),
                )?;
                Some(ScratchRoot {
                    store: &self.store,
                    id: rid,
                    path: m.path().to_path_buf(),
                })
            }
            None => None,
        };
        let from = match &from_root {
            Some(r) => copy::From {
                root: &r.path,
                ignore: None,
            },
            None => copy::From {
                root: &self.ctx.root,
                ignore: Some(&self.ctx.ignore),
            },
        };
        let mut sources = copy::sources(&from, &w).map_err(|e| self.err(ins, e))?;
        sources.extend(inline);
        let content = match &from_image {
            // An image's content is its id.
            Some(id) => format!("{id} {w:?}"),
            None => copy::digest(&from, &sources).map_err(|e| self.err(ins, e))?,
        };
        self.materialize(st)?;
        let key = key_of(&[
            &Self::parent_key(st),
            &ins.keyword,
            &format!(
                "{:?}",
                ins.flags
                    .iter()
                    .filter(|(k, _)| k != "from")
                    .collect::<Vec<_>>()
            ),
            &dest,
            &content,
        ]);
        if let Some(id) = self.cached(&key) {
            return Ok((id, true));
        }
        let root = self.scratch_root(st)?;
        let attrs = match ins.flag("chown") {
            Some(c) => {
                let c = self.expand(Some(st), ins, c)?;
                // Docker: a user without a group is the same number as
                // the group.
                let spec = if c.contains(':') {
                    c.clone()
                } else {
                    let a = crate::spec::user_in_rootfs(&root.path, &c)
                        .map_err(|e| self.err(ins, format!("--chown={c}: {e}")))?;
                    format!("{}:{}", a.uid, a.uid)
                };
                let a = crate::spec::user_in_rootfs(&root.path, &spec)
                    .map_err(|e| self.err(ins, format!("--chown={c}: {e}")))?;
                copy::Attrs {
                    uid: a.uid,
                    gid: a.gid,
                    mode,
                }
            }
            None => copy::Attrs {
                uid: 0,
                gid: 0,
                mode,
            },
        };
        let c = copy::Copy {
            from,
            sources,
            dest,
            attrs,
            extract_archives: is_add,
        };
        c.run(&root.path).map_err(|e| self.err(ins, e))?;
        self.interrupted()?;
        let id = self.commit_layer(st, ins, &root)?;
        self.store.cache_put(&key, &id)?;
        Ok((id, false))
    }

    fn run_step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<ImageId> {
        for (k, _) in &ins.flags {
            if k != "network" {
                return Err(self.err(ins, format!("RUN --{k} is not supported by hako build")));
            }
        }
        let argv = match (&ins.args, ins.heredocs.as_slice()) {
            (Args::Json(v), []) => v.clone(),
            (Args::Shell(s), []) => {
                let mut v = self.shell(st);
                v.push(s.clone());
                v
            }
            (args, docs) => {
                let text = match args {
                    Args::Shell(s) => s.clone(),
                    Args::Json(v) => v.join(" "),
                };
                let mut v = self.shell(st);
                // `RUN <<EOF` alone: the heredoc is the script.
                let only = text.trim().trim_start_matches("<<").trim_start_matches('-');
                let only = only.trim_matches(|c| c == '"' || c == '\'');
                if docs.len() == 1 && only == docs[0].name {
                    v.push(docs[0].body.clone());
                } else {
                    let mut script = text;
                    script.push('\n');
                    for d in docs {
                        script.push_str(&d.body);
                        script.push_str(&d.name);
                        script.push('\n');
                    }
                    v.push(script);
                }
                v
            }
        };
        let image = self.materialize(st)?;
        let network = match ins.flag("network") {
            Some("default") | None => self.o.network.clone(),
            Some(n) => Some(n.to_string()),
        };
        let opts = RunOptions {
            image: image.to_string(),
            cmd: argv,
            entrypoint: Some(String::new()),
            env: self.run_args(st),
            network,
            no_healthcheck: true,
            name: Some(format!(
                "hako-build-{}-{}",
                owner_tag(),
                &crate::util::random_id()?[..6]
            )),
            ..Default::default()
        };
        let id = crate::ops::create(self.dirs, &opts)?;
        let _gone = BuildContainer {
            dirs: self.dirs,
            id: id.clone(),
        };
        // A Ctrl-C (or SIGTERM) ends the wait at once (the container's
        // init may ignore it, as PID 1 does by default); the container
        // then goes with the step (BuildContainer's drop).
        let fg = crate::monitor::Foreground {
            detach_keys: crate::attach::parse_detach_keys("")?,
            sig_proxy: false,
        };
        let code = if self.o.quiet {
            quietly(|| crate::monitor::foreground(self.dirs, &id, &fg))??
        } else {
            crate::monitor::foreground(self.dirs, &id, &fg)?
        };
        if code != 0 {
            if crate::record::load(self.dirs, &id)
                .is_ok_and(|r| r.phase == crate::record::Phase::Running)
            {
                return Err(self.err(ins, "interrupted"));
            }
            if self.o.quiet {
                let mut out = std::io::stderr();
                let mut err = std::io::stderr();
                let _ = crate::ops::logs(
                    self.dirs,
                    &id,
                    &crate::ops::LogOptions::default(),
                    &mut out,
                    &mut err,
                );
            }
            return Err(self.err(
                ins,
                format!(
                    "`{}` exited with code {code}",
                    ins.rest().lines().next().unwrap_or("")
                ),
            ));
        }
        self.interrupted()?;
        let layer = self.store.layer_from_changes(&id)?;
        self.push_layer(st, ins, layer)
    }
}

/// `s` as one double-quoted word for [`words::expand`]: its variables
/// expand, its quotes stay (escaped with `escape`, the file's escape
/// character).
fn quoted(s: &str, escape: char) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' {
            q.push(escape);
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// FROM's `AS name`, if any.
fn stage_name(ins: &Instruction) -> Option<String> {
    let rest = ins.rest();
    let w: Vec<&str> = rest.split_whitespace().collect();
    (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].to_string())
}

/// A RUN step's container, removed (with its anonymous volumes) on drop.
struct BuildContainer<'a> {
    dirs: &'a Dirs,
    id: String,
}

impl Drop for BuildContainer<'_> {
    fn drop(&mut self) {
        let _ = crate::ops::rm(self.dirs, &self.id, true, true);
    }
}

/// `<pid>.<start time>` of this process: in the names of a build's scratch
/// roots, directories and RUN containers, so that a later build tells the
/// leftovers of a builder that died without its destructors (SIGKILL)
/// from those of one still running (pid reuse included).
pub(super) fn owner_tag() -> String {
    let pid = std::process::id() as i32;
    format!("{pid}.{}", crate::util::proc_start_time(pid))
}

/// Whether the builder whose [`owner_tag`] is in `name` (`…-TAG-RANDOM`)
/// is gone; false for a name without one.
fn owner_gone(name: &str) -> bool {
    let Some((before, _)) = name.rsplit_once('-') else {
        return false;
    };
    let tag = before.rsplit('-').next().unwrap_or_default();
    let Some((pid, start)) = tag.split_once('.') else {
        return false;
    };
    match (pid.parse::<i32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => crate::util::proc_start_time(pid) != start,
        _ => false,
    }
}

/// What builds that died left behind: their scratch roots (mounted
/// overlays nobody lists), their directories in the data dir's tmp/
/// (context, downloads) and their RUN containers (killed if running).
fn sweep_dead_builds(dirs: &Dirs, store: &Store) {
    for id in store.rootfs_ids() {
        if id.starts_with("build-") && owner_gone(&id) {
            let _ = store.remove_rootfs(&id);
        }
    }
    let tmp = dirs.data.join("tmp");
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("build-") && owner_gone(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    for r in crate::record::scan(dirs).0 {
        if r.name.starts_with("hako-build-") && owner_gone(&r.name) {
            let _ = crate::ops::rm(dirs, &r.id, true, true);
        }
    }
}

/// A file step's root filesystem, unmounted and removed on drop.
struct ScratchRoot<'a> {
    store: &'a Store,
    id: String,
    path: PathBuf,
}

impl Drop for ScratchRoot<'_> {
    fn drop(&mut self) {
        let _ = self.store.remove_rootfs(&self.id);
    }
}

/// Runs `f` with our stdout and stderr on /dev/null (`-q`: a RUN step's
/// output is shown only if it fails, from its log).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(crate::io_err("open", Path::new("/dev/null")))?;
    // SAFETY: dup of our own standard descriptors.
    let saved: Vec<i32> = unsafe { vec![libc::dup(1), libc::dup(2)] };
    for fd in [1, 2] {
        let _ = hako_runtime::os::dup2(null.as_raw_fd(), fd);
    }
    let r = f();
    for (i, s) in saved.into_iter().enumerate() {
        if s >= 0 {
            let _ = hako_runtime::os::dup2(s, i as i32 + 1);
            // SAFETY: closing the duplicate we made above.
            unsafe { libc::close(s) };
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_builders_only() {
        let mine = owner_tag();
        assert!(!owner_gone(&format!("build-{mine}-0123456789ab")));
        assert!(!owner_gone(&format!("build-fetch-{mine}-0123456789ab")));
        assert!(!owner_gone(&format!("hako-build-{mine}-012345")));
        // This pid with another start time: the pid was reused.
        let (pid, start) = mine.split_once('.').unwrap();
        let reused = format!("{pid}.{}", start.parse::<u64>().unwrap() + 1);
        assert!(owner_gone(&format!("build-{reused}-0123456789ab")));
        // A pid above any pid_max.
        assert!(owner_gone("build-context-2147483647.5-0123456789ab"));
        // Names of older builds, or not a build's: never taken.
        assert!(!owner_gone("build-0123456789abcdef"));
        assert!(!owner_gone("hako-build-0123456789ab"));
        assert!(!owner_gone("build"));
    }
}
