//! `hako build` as root, offline: a multi-stage Containerfile from a base
//! image in a loopback registry (scripts/test-registry.sh), its cache, the
//! image pushed and read by skopeo, umoci and podman, buildah's build of
//! the same file run by hako, and hostile or failing builds that say
//! where and leave nothing behind (also after a Ctrl-C).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::*;
use serde_json::Value;

macro_rules! need_root {
    () => {
        if !is_root() {
            panic!("needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
        }
    };
}

/// One test's engine state (under the registry's directory).
struct Hako {
    dir: PathBuf,
}

impl Hako {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.args(args)
            .env("HAKO_DATA_DIR", self.dir.join("data"))
            .env("HAKO_RUN_DIR", self.dir.join("run"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(args), Duration::from_secs(120))
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args))
    }

    /// A build that must fail: exit 1 and one `hako: build:` line that
    /// contains `want`.
    fn fails(&self, ctx: &Path, want: &str) -> String {
        let o = self.run(&["build", "--network", "none", ctx.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let line: Vec<&str> = err.lines().filter(|l| l.starts_with("hako:")).collect();
        assert_eq!(line.len(), 1, "{err}");
        assert!(line[0].contains(want), "want {want:?} in: {err}");
        err
    }

    fn images(&self) -> String {
        self.ok(&["images", "-q"])
    }

    /// Nothing of a build is left: no container, no mount, no scratch
    /// root or context directory.
    fn assert_clean(&self) {
        assert_eq!(
            self.ok(&["ps", "-a", "-q"]),
            "",
            "a build container is left"
        );
        assert_no_mounts_under(&self.dir);
        for d in ["data/image/containers", "data/containers", "data/tmp"] {
            let left: Vec<_> = std::fs::read_dir(self.dir.join(d))
                .map(|r| {
                    r.flatten()
                        .map(|e| e.file_name())
                        .filter(|n| !n.to_string_lossy().starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            assert!(left.is_empty(), "{d}: {left:?}");
        }
    }
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

const CONTAINERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG REGISTRY
FROM ${REGISTRY}/busybox:latest AS build
ARG GREETING=hello
ENV OUT=/out
WORKDIR /src
COPY src/ ./
RUN test ! -e /src/secret.txt && test -e /src/keep.txt \
 && mkdir -p $OUT && printf '#!/bin/sh\necho "%s from $(id -u):$(id -g) in $(pwd): $(cat /app/msg.txt)"\n' "$GREETING" > $OUT/greet \
 && chmod 755 $OUT/greet
RUN echo "made in stage one" > /out/made.txt

FROM ${REGISTRY}/busybox:latest
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group
COPY --from=build --chown=app /out/greet /usr/local/bin/greet
COPY --chown=1234:5 --chmod=640 src/msg.txt /app/
COPY --from=build /out/made.txt /app/
LABEL org.example.built-by=hako
EXPOSE 8080/tcp
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --retries=2 CMD test -e /app/msg.txt
USER app
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/greet"]
CMD ["ignored"]
"#;

/// The image's config, as inspect shows it.
fn config(h: &Hako, image: &str) -> Value {
    let v: Value = serde_json::from_str(&h.ok(&["image", "inspect", image])).unwrap();
    v[0]["Config"].clone()
}

#[test]
#[ignore = "needs root"]
fn a_multi_stage_build_runs_caches_and_is_read_by_other_tools() {
    need_root!();
    let st = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh"))
        .args(["buildah", "umoci", "podman", "skopeo"])
        .status()
        .unwrap();
    assert!(st.success(), "setup.sh buildah umoci podman skopeo");
    let reg = Registry::start();
    let h = Hako {
        dir: reg.dir.path().join("hako"),
    };
    let registry = format!("127.0.0.1:{}", reg.port);
    let ctx = reg.dir.path().join("ctx");
    write(
        &ctx,
        &[
            ("Containerfile", CONTAINERFILE),
            ("src/msg.txt", "the message\n"),
            ("src/keep.txt", "kept\n"),
            ("src/secret.txt", "must not reach the build\n"),
            (".dockerignore", "# secrets stay here\n**/secret*\n"),
        ],
    );
    let reg_arg = format!("REGISTRY={registry}");
    let base_args = [
        "build",
        "--network",
        "none",
        "--build-arg",
        "GREETING=hi there",
        "--build-arg",
        reg_arg.as_str(),
    ];
    let build = |extra: &[&str]| {
        let mut args = base_args.to_vec();
        args.extend_from_slice(extra);
        let c = ctx.to_string_lossy().into_owned();
        args.push(&c);
        let o = h.run(&args);
        let out = ok(&o);
        (out.trim().to_string(), stderr(&o))
    };
    let (id, log) = build(&["-t", "localhost/greet:1"]);
    assert!(id.starts_with("sha256:"), "{id}\n{log}");
    assert!(!log.contains("CACHED"), "{log}");
    // The result runs as the right user, in the right directory.
    let out = h.ok(&["run", "--rm", "--network", "none", "localhost/greet:1"]);
    assert_eq!(out.trim(), "hi there from 1234:1234 in /app: the message");
    let ls = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "localhost/greet:1",
        "-c",
        "stat -c '%n %u:%g %a' /app/msg.txt /usr/local/bin/greet; cat /app/made.txt",
    ]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        [
            "/app/msg.txt 1234:5 640",
            "/usr/local/bin/greet 1234:1234 755",
            "made in stage one",
        ],
        "{ls}"
    );
    let c = config(&h, "localhost/greet:1");
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/greet"]));
    assert_eq!(c["Labels"]["org.example.built-by"], "hako");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -e /app/msg.txt"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert!(
        !c["Env"].to_string().contains("GREETING"),
        "an ARG is not in the image: {c}"
    );
    // History: busybox's entry and one per instruction of the final
    // stage but FROM.
    let hist = h.ok(&["history", "-q", "localhost/greet:1"]);
    assert_eq!(hist.lines().count(), 1 + 12, "{hist}");
    // Heredocs (BuildKit's; Debian's buildah has none): a RUN script and
    // inline files, expanded or literal as the delimiter is quoted.
    let hd = reg.dir.path().join("heredocs");
    write(
        &hd,
        &[(
            "Containerfile",
            &format!(
                "FROM {registry}/busybox:latest\nARG WHO=world\nRUN <<EOF\nset -e\necho \"hello $WHO\" > /a\necho second line >> /a\nEOF\nCOPY <<-\"NOTE\" <<PLAIN /notes/\n\tliteral $WHO\n\tNOTE\nexpanded $WHO\nPLAIN\n"
            ),
        )],
    );
    let id_hd = h.ok(&["build", "-q", "--network", "none", hd.to_str().unwrap()]);
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        id_hd.trim(),
        "cat",
        "/a",
        "/notes/NOTE",
        "/notes/PLAIN",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "hello world",
            "second line",
            "literal $WHO",
            "expanded world"
        ],
        "{out}"
    );
    // ADD: a local tar is unpacked, a URL fetched (0600); ONBUILD
    // triggers run in the next build, which does not inherit them.
    let more = reg.dir.path().join("more");
    write(&more, &[("t/inner.txt", "inner\n")]);
    ok(&Command::new("tar")
        .arg("-C")
        .arg(&more)
        .args(["-czf", "arch.tar.gz", "t"])
        .current_dir(&more)
        .output()
        .unwrap());
    std::fs::remove_dir_all(more.join("t")).unwrap();
    write(
        &more,
        &[(
            "Containerfile",
            &format!(
                "FROM {registry}/busybox:latest\nADD arch.tar.gz /x/\nADD http://{registry}/v2/busybox/tags/list /tags/\nONBUILD RUN echo triggered > /t\n"
            ),
        )],
    );
    let parent = h.ok(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "localhost/parent:1",
        more.to_str().unwrap(),
    ]);
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        parent.trim(),
        "sh",
        "-c",
        "cat /x/t/inner.txt /tags/list; stat -c %a /tags/list; test -e /t || echo untriggered",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "inner",
            r#"{"name":"busybox","tags":["latest","oci"]}"#,
            "600",
            "untriggered"
        ],
        "{out}"
    );
    // The child: its Containerfile on stdin (`-`, no context), --label,
    // --iidfile.
    let iid = reg.dir.path().join("iid");
    let mut c = h.cmd(&[
        "build",
        "--network",
        "none",
        "--label",
        "k=v",
        "--iidfile",
        iid.to_str().unwrap(),
        "-",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"FROM localhost/parent:1\nCMD [\"cat\", \"/t\"]\n",
    )
    .unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let child_id = ok(&o).trim().to_string();
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), child_id);
    let out = h.ok(&["run", "--rm", "--network", "none", &child_id]);
    assert_eq!(out.trim(), "triggered");
    let c = config(&h, &child_id);
    assert!(c["OnBuild"].is_null(), "{c}");
    assert_eq!(c["Labels"]["k"], "v", "{c}");
    // --target: the first stage alone; a tar of the context on stdin is
    // the same context (every step cached, the same image).
    let target = {
        let (id, _) = build(&["--target", "build"]);
        id
    };
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &target,
        "cat",
        "/out/made.txt",
    ]);
    assert_eq!(out.trim(), "made in stage one");
    let tar = reg.dir.path().join("ctx.tar");
    ok(&Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap());
    let mut c = h.cmd(&[&base_args[..], &["-"]].concat());
    let o = c
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert_eq!(ok(&o).trim(), id, "{}", stderr(&o));
    assert!(
        !stderr(&o).contains(" ("),
        "every step cached: {}",
        stderr(&o)
    );
    // Only the results are listed, not the steps.
    assert_eq!(h.images().lines().count(), 6, "{}", h.images());

    // No change: every step CACHED, the same image.
    let (again, log) = build(&["-t", "localhost/greet:1"]);
    assert_eq!(again, id, "{log}");
    let steps = log.lines().filter(|l| l.starts_with("STEP ")).count();
    let cached = log.lines().filter(|l| l.starts_with("--> CACHED")).count();
    let no_image = log
        .lines()
        .filter(|l| l.contains(": FROM ") || l.contains(": ARG "))
        .count();
    assert_eq!(cached, steps - no_image, "{log}");
    // An ignored file never changes the cache key.
    std::fs::write(ctx.join("src/secret.txt"), "changed, and still ignored\n").unwrap();
    let (same, log) = build(&["-t", "localhost/greet:1"]);
    assert_eq!(same, id, "{log}");
    // A changed COPY source: the steps before it CACHED, from it on not.
    std::fs::write(ctx.join("src/msg.txt"), "a new message\n").unwrap();
    let (changed, log) = build(&["-q"]);
    assert_ne!(changed, id);
    assert_eq!(log, "", "-q prints nothing but the id");
    let (_, log) = build(&[]);
    let lines: Vec<&str> = log.lines().collect();
    let copy_at = lines
        .iter()
        .position(|l| l.contains("COPY src/ ./"))
        .unwrap();
    assert!(lines[copy_at + 1].starts_with("--> CACHED"), "{log}");
    let msg_at = lines
        .iter()
        .position(|l| l.contains("COPY --chown=1234:5"))
        .unwrap();
    assert!(lines[msg_at + 1].starts_with("--> CACHED"), "{log}");
    // (the first stage's COPY of src/ sees the change: it and its RUNs
    // are rebuilt, and so is everything after the stage's first use.)
    let out = h.ok(&["run", "--rm", "--network", "none", &changed]);
    assert_eq!(out.trim(), "hi there from 1234:1234 in /app: a new message");
    // --no-cache runs everything again.
    let (_, log) = build(&["--no-cache"]);
    assert!(!log.contains("CACHED"), "{log}");
    // An unknown --build-arg is said, not fatal.
    let (_, log) = build(&["--build-arg", "UNUSED=1"]);
    assert!(log.contains("not used by any ARG: UNUSED"), "{log}");
    h.assert_clean();

    // Pushed: skopeo, umoci and podman read it; podman runs it.
    let dest = format!("{registry}/greet:1");
    h.ok(&["push", "localhost/greet:1", &dest]);
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{dest}")])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&inspect)).unwrap();
    // busybox's layer, then the final stage's RUN and three COPYs (its
    // WORKDIR /app exists by then: no layer).
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1 + 4), "{v}");
    assert_eq!(v["Labels"]["org.example.built-by"], "hako");
    let oci = reg.dir.path().join("oci-greet");
    ok(&Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("oci:{}:greet", oci.display()),
        ])
        .output()
        .unwrap());
    let bundle = reg.dir.path().join("umoci-bundle");
    ok(&Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:greet", oci.display()))
        .arg(&bundle)
        .output()
        .unwrap());
    let greet = std::fs::read_to_string(bundle.join("rootfs/usr/local/bin/greet")).unwrap();
    assert!(greet.contains("hi there"), "{greet}");
    let podman = |args: &[&str]| {
        let mut c = containers_tool("podman", &reg.dir.path().join("podman"));
        // crun refuses this hybrid host (cgroup2 holding hugetlb): podman
        // drives hako-runc, which also shows it runs the image.
        c.args(["--cgroup-manager", "cgroupfs", "--runtime", bin()])
            .args(args);
        run_with_timeout(c, Duration::from_secs(120))
    };
    ok(&podman(&["pull", "--tls-verify=false", &dest]));
    // (This host's bounding set lacks CAP_SYS_RESOURCE: podman's default
    // nofile and nproc limits would be refused, so ask for usual ones.)
    // Its cgroups under a parent of this test's, removed after.
    let parent = format!("hako-build-test-{}", std::process::id());
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &format!("/{parent}"),
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        &dest,
    ]);
    let _ = podman(&["rmi", "-a", "-f"]);
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        rmdir_tree(&h.path().join(&parent));
    }
    assert_eq!(
        ok(&out).trim(),
        "hi there from 1234:1234 in /app: the message"
    );

    // buildah's build of the same Containerfile runs under hako alike.
    let buildah = |args: &[&str]| {
        let mut c = containers_tool("buildah", &reg.dir.path().join("buildah"));
        c.args(args);
        run_with_timeout(c, Duration::from_secs(300))
    };
    std::fs::write(ctx.join("src/msg.txt"), "the message\n").unwrap();
    ok(&buildah(&[
        "bud",
        "--tls-verify=false",
        // (chroot: crun refuses this hybrid host; its RUN steps share the
        // host's network, which they do not use.)
        "--isolation",
        "chroot",
        "--build-arg",
        "GREETING=hi there",
        "--build-arg",
        &format!("REGISTRY={registry}"),
        "-t",
        "localhost/by-buildah:1",
        ctx.to_str().unwrap(),
    ]));
    let archive = reg.dir.path().join("by-buildah.tar");
    ok(&buildah(&[
        "push",
        "localhost/by-buildah:1",
        &format!("oci-archive:{}:localhost/by-buildah:1", archive.display()),
    ]));
    let _ = buildah(&["rmi", "-a", "-f"]);
    h.ok(&["load", "-i", archive.to_str().unwrap()]);
    let out = h.ok(&["run", "--rm", "--network", "none", "localhost/by-buildah:1"]);
    assert_eq!(out.trim(), "hi there from 1234:1234 in /app: the message");
    h.assert_clean();
    drop(reg);
}

#[test]
#[ignore = "needs root"]
fn hostile_or_failing_builds_say_where_and_leave_nothing() {
    need_root!();
    let reg = Registry::start();
    let h = Hako {
        dir: reg.dir.path().join("hako"),
    };
    let base = format!("127.0.0.1:{}/busybox:latest", reg.port);
    h.ok(&["pull", &base]);
    let before = h.images();
    let outside = reg.dir.path().join("outside");
    write(&outside, &[("x", "outside the context\n")]);
    let ctx = reg.dir.path().join("ctx");
    let cases: Vec<(String, &str)> = vec![
        (format!("FROM {base}\nCOPY ../outside/x /x\n"), "Containerfile:2: COPY: ../outside/x is outside the build context"),
        (format!("FROM {base}\nCOPY link/x /x\n"), "Containerfile:2: COPY: link/x is a symlink to /"),
        (format!("FROM {base}\nCOPY missing.txt /x\n"), "Containerfile:2: COPY: missing.txt: not found in the build context"),
        (format!("FROM {base}\nCOPY secret.txt /x\n"), "Containerfile:2: COPY: secret.txt: not found in the build context (or excluded by .dockerignore)"),
        (format!("FROM {base}\n\nFROBNICATE x\n"), "Containerfile:3: unknown instruction: FROBNICATE"),
        (format!("FROM {base}\nRUN echo before\nRUN exit 7\nRUN echo never\n"), "Containerfile:3: RUN: `exit 7` exited with code 7"),
        (format!("FROM {base}\nCOPY --from=nowhere /x /x\n"), "Containerfile:2: COPY: nowhere"),
        (format!("FROM {base} AS a\nFROM {base}\nCOPY --from=a /nope /x\n"), "Containerfile:3: COPY: /nope: no such file or directory"),
        (format!("RUN true\nFROM {base}\n"), "Containerfile:1: RUN before the first FROM"),
        (format!("FROM {base}\nCOPY <<EOF /x\nno end\n"), "Containerfile:2: the heredoc <<EOF is not closed"),
        (format!("FROM {base}\nENV\n"), "Containerfile:2: ENV requires at least one argument"),
        (format!("FROM {base}\nADD --checksum=sha256:{} http://127.0.0.1:{}/v2/ /x\n", "0".repeat(64), reg.port), "Containerfile:2: ADD: http://127.0.0.1"),
        (format!("FROM {base}\nCOPY --parents a /x\n"), "Containerfile:2: COPY: unknown flag --parents"),
    ];
    for (file, want) in &cases {
        let _ = std::fs::remove_dir_all(&ctx);
        write(
            &ctx,
            &[
                ("Containerfile", file),
                ("secret.txt", "no"),
                (".dockerignore", "secret.txt\n"),
            ],
        );
        std::os::unix::fs::symlink("/", ctx.join("link")).unwrap();
        h.fails(&ctx, want);
        h.assert_clean();
        assert_eq!(h.images(), before, "{file}");
    }
    // Nothing was written outside the store and the context.
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "the outside directory is untouched"
    );
    // --target names a stage that is not there; a context that is not.
    let o = h.run(&["build", "--target", "nope", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = h.run(&["build", "/nonexistent-context"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent-context"),
        "{}",
        stderr(&o)
    );

    // Ctrl-C during a RUN: the build ends promptly (PID 1 of the step
    // ignores SIGINT) and leaves nothing.
    let _ = std::fs::remove_dir_all(&ctx);
    write(
        &ctx,
        &[(
            "Containerfile",
            &format!("FROM {base}\nRUN echo started; sleep 600\nRUN echo never\n"),
        )],
    );
    let mut c = h.cmd(&["build", "--network", "none", ctx.to_str().unwrap()]);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h
        .ok(&["ps", "--format", "{{.Names}}"])
        .contains("hako-build-")
    {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill with integers (a terminal's Ctrl-C: the whole group).
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    // (Had the build waited for the step, this would time out.)
    let o = run_with_timeout_child(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    h.assert_clean();
    assert_eq!(h.images(), before);

    // A build killed outright (SIGKILL: no destructor runs) during a RUN,
    // and another during an ADD's download (a server that never answers):
    // the next build removes what they left (the running step, the
    // download's directory).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/f", silent.local_addr().unwrap().port());
    let tmp = h.dir.join("data/tmp");
    let kill_when = |file: String, started: &dyn Fn() -> bool| {
        let _ = std::fs::remove_dir_all(&ctx);
        write(&ctx, &[("Containerfile", &file)]);
        let mut child = h
            .cmd(&["build", "--network", "none", ctx.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !started() {
            assert!(Instant::now() < deadline, "the step never started: {file}");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    };
    let running = || {
        h.ok(&["ps", "--format", "{{.Names}}"])
            .contains("hako-build-")
    };
    let fetching = || {
        std::fs::read_dir(&tmp).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("build-fetch-")))
        })
    };
    kill_when(format!("FROM {base}\nRUN sleep 600\n"), &running);
    assert!(running(), "the killed build's step runs on");
    // (The next build, at its start, removes that step.)
    kill_when(format!("FROM {base}\nADD {url} /f\n"), &fetching);
    assert!(!running(), "the dead build's step was removed");
    assert!(fetching(), "the killed build's download directory is left");
    let _ = std::fs::remove_dir_all(&ctx);
    write(
        &ctx,
        &[("Containerfile", &format!("FROM {base}\nENV A=1\n"))],
    );
    h.ok(&["build", "--network", "none", ctx.to_str().unwrap()]);
    h.assert_clean();
    drop(silent);
    drop(reg);
}

/// Removes the cgroup directory `p` and those under it (conmon's),
/// deepest first; what still holds a process stays.
fn rmdir_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

/// podman or buildah with a store of its own under `dir` (vfs).
fn containers_tool(tool: &str, dir: &Path) -> Command {
    let mut c = Command::new(tool);
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs"])
        .stdin(Stdio::null());
    c
}

fn run_with_timeout_child(child: std::process::Child, t: Duration) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(t) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill with integers.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("timed out");
        }
    }
}
