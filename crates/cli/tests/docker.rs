//! hako-runc under Docker (issue 13): a private dockerd (Debian's docker.io;
//! its own data root, exec root, socket, pid file, bridge and cgroup
//! parent, iptables off; the host's daemon and /etc/docker are never
//! touched) with hako-runc registered as a runtime, running the checks a
//! Docker user would see. The same checks run with runc, so a failure that
//! is Docker's or the harness's shows up on both.
//!
//! Needs root; scripts/clients-setup.sh installs docker.io and builds the
//! busybox image offline.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::host::*;
use common::*;

const IMAGE: &str = "localhost/hako-busybox:latest";
const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's client, which matches its daemon (another docker may come
/// first in PATH).
const DOCKER: &str = "/usr/bin/docker";
const TIMEOUT: Duration = Duration::from_secs(60);

fn ip(args: &[&str]) {
    // The test harness may use iproute2; hako itself never does.
    let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
}

/// A private dockerd; dropping it removes its containers, stops it and
/// removes its directories, mounts, bridge and cgroups.
struct Dockerd {
    dir: PathBuf,
    tag: String,
    bridge: String,
    child: Child,
    failures: Vec<String>,
}

impl Dockerd {
    fn start(tag: &str, subnet: u8) -> Dockerd {
        let tar = client_images().join("busybox.tar");
        let dir = PathBuf::from(format!("/tmp/hako-dockerd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let bridge = format!("hkd{tag}{subnet}");
        ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("10.231.{subnet}.1/24"),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args(["--bridge", &bridge, "--iptables=false", "--ip6tables=false"])
            .args([
                "--ip-masq=false",
                "--cgroup-parent",
                &format!("hako-docker-{tag}"),
            ])
            .args(["--containerd-namespace", &format!("hako-docker-{tag}")])
            .args([
                "--containerd-plugins-namespace",
                &format!("hako-docker-{tag}-p"),
            ])
            .arg("--add-runtime")
            .arg(format!("hako={}", bin()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        set_pdeathsig(&mut cmd);
        let child = cmd.spawn().expect("start dockerd");
        let d = Dockerd {
            dir,
            tag: tag.to_string(),
            bridge,
            child,
            failures: Vec::new(),
        };
        let up = poll(TIMEOUT, || {
            d.docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success()
                .then_some(())
        });
        assert!(up.is_some(), "dockerd did not come up:\n{}", d.log());
        let o = d.docker(&["load", "-i", tar.to_str().unwrap()]);
        assert!(o.status.success(), "docker load: {}", stderr(&o));
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(args), TIMEOUT)
    }

    /// `docker run --rm --runtime RT … IMAGE args`: (exit code, stdout).
    fn run(&self, rt: &str, opts: &[&str], args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["run", "--rm", "--runtime", rt];
        a.extend_from_slice(opts);
        a.push(IMAGE);
        a.extend_from_slice(args);
        let o = self.docker(&a);
        (
            o.status.code().unwrap_or(-1),
            stdout(&o).trim().to_string(),
            stderr(&o),
        )
    }

    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.failures.push(format!("{what}: {detail}"));
        }
    }

    /// Compares one value and records a failure that names the check.
    fn expect_eq(&mut self, what: &str, got: impl std::fmt::Debug + PartialEq<String>, want: &str) {
        let ok = got == want.to_string();
        self.check(what, ok, format!("got {got:?}, want {want:?}"));
    }

    fn inspect(&self, name: &str, fmt: &str) -> String {
        stdout(&self.docker(&["inspect", "-f", fmt, name]))
            .trim()
            .to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = stdout(&self.docker(&["ps", "-aq"]));
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let done = poll(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        if done.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // dockerd's own containerd exits with it; wait for its socket dir.
        let _ = poll(Duration::from_secs(10), || {
            (!self.dir.join("exec/containerd/containerd.pid").exists()).then_some(())
        });
        umount_under(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
        ip(&["link", "del", &self.bridge]);
        // dockerd leaves its (now empty) --cgroup-parent behind.
        remove_cgroups_named(&format!("hako-docker-{}", self.tag));
    }
}

/// The cgroup directory (memory controller on v1, unified on v2) of a pid.
fn cgroup_dir_of(pid: &str) -> Option<PathBuf> {
    let s = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in s.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        if ctl.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')));
        }
    }
    let path = s.lines().find_map(|l| l.strip_prefix("0::"))?;
    let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    Some(Path::new(base).join(path.trim_start_matches('/')))
}

/// Reads a cgroup value inside the container, v1 or v2 file.
const MEM_LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
const PIDS_LIMIT: &str =
    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";
const CPU_QUOTA: &str =
    "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max";

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.contains("200 OK").then_some(body)
}

fn everyday_checks(rt: &str, tag: &str, subnet: u8, port: u16) {
    let mut d = Dockerd::start(tag, subnet);

    // Exit codes, as Docker derives them.
    let (c, out, _) = d.run(rt, &[], &["sh", "-c", "echo hi"]);
    d.expect_eq("run exit 0", format!("{c} {out}"), "0 hi");
    let (c, ..) = d.run(rt, &[], &["sh", "-c", "exit 7"]);
    d.expect_eq("exit 7", c.to_string(), "7");
    let (c, _, err) = d.run(rt, &[], &["no-such-program"]);
    d.check(
        "missing executable gives 127",
        c == 127,
        format!("{c}: {err}"),
    );
    let (c, _, err) = d.run(rt, &[], &["/etc/passwd"]);
    d.check("non-executable gives 126", c == 126, format!("{c}: {err}"));

    // Namespaces, process settings.
    let (_, out, _) = d.run(rt, &["--hostname", "box"], &["hostname"]);
    d.expect_eq("hostname", out, "box");
    let (_, out, _) = d.run(rt, &[], &["sh", "-c", "echo $$"]);
    d.expect_eq("pid namespace", out, "1");
    let (_, out, _) = d.run(
        rt,
        &["-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000"],
        &["sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g)"],
    );
    d.expect_eq("env, workdir, user", out, "bar /tmp 1000:1000");
    let (_, out, _) = d.run(
        rt,
        &["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    d.expect_eq(
        "caps drop ALL + add NET_ADMIN",
        out,
        "CapEff:\t0000000000001000",
    );

    // Volumes and a read-only root.
    let vol = d.dir.join("vol");
    fs::create_dir_all(&vol).unwrap();
    let rw = format!("{}:/data", vol.display());
    let (c, ..) = d.run(rt, &["-v", &rw], &["sh", "-c", "echo w > /data/f"]);
    let written = fs::read_to_string(vol.join("f")).unwrap_or_default();
    d.check(
        "volume rw",
        c == 0 && written == "w\n",
        format!("{c} {written:?}"),
    );
    let ro = format!("{}:/data:ro", vol.display());
    let (c, ..) = d.run(rt, &["-v", &ro], &["sh", "-c", "echo x > /data/g"]);
    d.check(
        "volume ro refuses writes",
        c != 0 && !vol.join("g").exists(),
        c,
    );
    let (c, ..) = d.run(rt, &["--read-only"], &["touch", "/x"]);
    d.check("read-only root", c != 0, c);

    // -i and -t.
    let mut cmd = d.cmd(&["run", "--rm", "-i", "--runtime", rt, IMAGE, "cat"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    d.expect_eq("-i", stdout(&o).trim().to_string(), "through stdin");
    let (_, out, _) = d.run(rt, &["-t"], &["tty"]);
    d.check("-t", out.starts_with("/dev/pts/"), &out);

    // Limits, read inside.
    let (_, out, _) = d.run(rt, &["--memory", "64m"], &["sh", "-c", MEM_LIMIT]);
    d.expect_eq("--memory", out, "67108864");
    let (_, out, _) = d.run(rt, &["--pids-limit", "42"], &["sh", "-c", PIDS_LIMIT]);
    d.expect_eq("--pids-limit", out, "42");
    let (_, out, _) = d.run(rt, &["--cpus", "0.5"], &["sh", "-c", CPU_QUOTA]);
    d.expect_eq("--cpus", out, "50000");

    // Networks.
    let (_, out, _) = d.run(rt, &["--network", "none"], &["ls", "/sys/class/net"]);
    d.expect_eq(
        "--network none",
        out.split_whitespace().collect::<Vec<_>>().join(" "),
        "lo",
    );
    let (_, out, _) = d.run(rt, &[], &["ls", "/sys/class/net"]);
    d.expect_eq(
        "bridge",
        out.split_whitespace().collect::<Vec<_>>().join(" "),
        "eth0 lo",
    );

    // -p: busybox httpd serving /etc, through Docker's userland proxy.
    let name = format!("web-{tag}");
    let publish = format!("127.0.0.1:{port}:80");
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--hostname",
        "webbox",
        "--runtime",
        rt,
        "-p",
        &publish,
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    d.check("run -d -p", o.status.success(), stderr(&o));
    let body = poll(Duration::from_secs(20), || http_get(port, "/hostname"));
    d.check(
        "-p serves",
        body.as_deref().is_some_and(|b| b.contains("webbox")),
        format!("{body:?}"),
    );
    let _ = d.docker(&["rm", "-f", &name]);

    // A long-running container: ps, exec, top, logs, stats, update, pause.
    let name = format!("long-{tag}");
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        rt,
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 0' TERM; echo logged; while :; do sleep 0.1; done",
    ]);
    d.check("run -d", o.status.success(), stderr(&o));
    let status = stdout(&d.docker(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]));
    d.check("ps shows it up", status.starts_with("Up"), &status);
    let o = d.docker(&["exec", &name, "sh", "-c", "exit 3"]);
    d.expect_eq(
        "exec exit code",
        o.status.code().unwrap_or(-1).to_string(),
        "3",
    );
    let o = d.docker(&["exec", "-u", "1000", &name, "id", "-u"]);
    d.expect_eq("exec -u", stdout(&o).trim().to_string(), "1000");
    let o = d.docker(&["exec", "-e", "A=b", &name, "sh", "-c", "echo $A"]);
    d.expect_eq("exec -e", stdout(&o).trim().to_string(), "b");
    let o = d.docker(&["exec", "-t", &name, "tty"]);
    d.check("exec -t", stdout(&o).starts_with("/dev/pts/"), stdout(&o));
    let top = stdout(&d.docker(&["top", &name]));
    d.check(
        "top",
        top.contains("while :") || top.contains("sh -c"),
        &top,
    );
    let logged = poll(Duration::from_secs(10), || {
        stdout(&d.docker(&["logs", &name]))
            .contains("logged")
            .then_some(())
    });
    d.check("logs", logged.is_some(), "no 'logged' line");
    let o = d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &name]);
    d.check(
        "stats",
        o.status.success() && stdout(&o).contains("64MiB"),
        format!("{} {}", stdout(&o), stderr(&o)),
    );
    let o = d.docker(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "192m",
        "--cpus",
        "1.5",
        &name,
    ]);
    d.check("update", o.status.success(), stderr(&o));
    let o = d.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("{MEM_LIMIT}; {CPU_QUOTA}"),
    ]);
    d.expect_eq(
        "update seen inside",
        stdout(&o).split_whitespace().collect::<Vec<_>>().join(" "),
        "100663296 150000",
    );
    let o = d.docker(&["pause", &name]);
    d.check("pause", o.status.success(), stderr(&o));
    d.expect_eq("paused", d.inspect(&name, "{{.State.Status}}"), "paused");
    let o = d.docker(&["unpause", &name]);
    d.check("unpause", o.status.success(), stderr(&o));
    d.expect_eq(
        "running again",
        d.inspect(&name, "{{.State.Status}}"),
        "running",
    );
    let o = d.docker(&["stop", "-t", "20", &name]);
    d.check("stop", o.status.success(), stderr(&o));
    let logs = stdout(&d.docker(&["logs", &name]));
    d.check(
        "stop sends SIGTERM to the process",
        logs.contains("got TERM"),
        &logs,
    );
    d.expect_eq(
        "stop exit code",
        d.inspect(&name, "{{.State.ExitCode}}"),
        "0",
    );
    let o = d.docker(&["restart", "-t", "20", &name]);
    d.check("restart", o.status.success(), stderr(&o));
    d.expect_eq(
        "restarted",
        d.inspect(&name, "{{.State.Status}}"),
        "running",
    );
    let pid = d.inspect(&name, "{{.State.Pid}}");
    let cg = cgroup_dir_of(&pid);
    d.check(
        "container cgroup found",
        cg.as_ref().is_some_and(|p| p.exists()),
        format!("{cg:?}"),
    );
    let o = d.docker(&["kill", &name]);
    d.check("kill", o.status.success(), stderr(&o));
    let o = d.docker(&["wait", &name]);
    d.expect_eq("kill gives 137", stdout(&o).trim().to_string(), "137");
    let o = d.docker(&["rm", &name]);
    d.check("rm", o.status.success(), stderr(&o));
    if let Some(cg) = cg {
        let gone = poll(Duration::from_secs(10), || (!cg.exists()).then_some(()));
        d.check("rm removes the cgroup", gone.is_some(), cg.display());
    }

    let failures = std::mem::take(&mut d.failures);
    let log = if failures.is_empty() {
        String::new()
    } else {
        d.log()
    };
    drop(d);
    assert!(
        failures.is_empty(),
        "{} Docker check(s) failed with runtime {rt}:\n  {}\n--- dockerd log ---\n{log}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
#[ignore = "needs root"]
fn docker_everyday_checks_with_hako_runc() {
    need_root!();
    everyday_checks("hako", "h", 41, 18441);
}

/// The reference: the same checks with Docker's own runc.
#[test]
#[ignore = "needs root"]
fn docker_everyday_checks_with_runc() {
    need_root!();
    everyday_checks("runc", "r", 42, 18442);
}
