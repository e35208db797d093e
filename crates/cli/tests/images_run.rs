//! Images that run: pulled from a loopback registry (with whiteouts), loaded
//! from an OCI layout and from a `docker save` archive, each started as a
//! container by the engine (needs root; the registry is
//! scripts/test-registry.sh on 127.0.0.1, stopped by PID at the end).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-registry.sh")
}

/// Stops the registry and removes every container of this test's engine.
struct Registry {
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_hako"))
            .envs(envs(self.dir.path()))
            .args(["rm", "-f", "img-a", "img-b", "img-c", "img-p"])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn envs(dir: &Path) -> Vec<(String, PathBuf)> {
    vec![
        ("HAKO_DATA_DIR".into(), dir.join("data")),
        ("HAKO_RUN_DIR".into(), dir.join("run")),
    ]
}

fn hako(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hako"))
        .envs(envs(dir))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hako")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn pulled_and_loaded_images_run() {
    if !is_root() {
        panic!("needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let reg = Registry {
        dir: tempfile::Builder::new()
            .prefix("hako-imgrun-")
            .tempdir()
            .unwrap(),
    };
    let d = reg.dir.path();
    let st = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(d)
        .arg(&port)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "test-registry.sh start failed");

    // A multi-layer OCI image from the registry: whiteouts honoured in the
    // running container (motd deleted, /opt/data opaque, layer 3 added).
    let image = format!("127.0.0.1:{port}/layered:oci");
    // A host without CA certificates: one line saying so, not a panic.
    let o = Command::new(env!("CARGO_BIN_EXE_hako"))
        .envs(envs(d))
        .env("SSL_CERT_FILE", "/nonexistent")
        .env("SSL_CERT_DIR", "/nonexistent")
        .args(["pull", &image])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("No CA certificates") && err.lines().count() == 1,
        "{err}"
    );
    // -q: the id alone, no progress.
    let o = hako(d, &["pull", "-q", &image]);
    let id = ok(&o);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(id.lines().count(), 1, "{id}");
    let shown = ok(&hako(
        d,
        &["image", "inspect", "--format", "{{.Id}}", &image],
    ));
    assert!(
        shown
            .trim()
            .ends_with(id.trim().trim_start_matches("sha256:")),
        "{id} / {shown}"
    );
    let o = hako(d, &["pull", &image]);
    assert_eq!(ok(&o), id, "a second pull names the same image");
    assert!(!o.stderr.is_empty(), "without -q, progress goes to stderr");
    let out = ok(&hako(
        d,
        &[
            "run",
            "--rm",
            "--name",
            "img-a",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "cat /hello.txt; ls /etc/motd 2>/dev/null || echo no-motd; ls /opt/data",
        ],
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["hello", "no-motd", "new"],
        "{out}"
    );
    // run -q pulls without a word (Docker's), run alone shows progress.
    let base = ["run", "--rm", "--network", "none", "--pull", "always"];
    let loud = hako(d, &[&base[..], &[&image, "true"]].concat());
    assert!(loud.status.success() && !loud.stderr.is_empty(), "{loud:?}");
    let quiet = hako(d, &[&base[..], &["-q", &image, "true"]].concat());
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "", "run -q");

    // An OCI image layout directory.
    let out = ok(&hako(
        d,
        &["load", "-i", &d.join("oci/busybox").to_string_lossy()],
    ));
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .expect("load names the image")
        .to_string();
    let out = ok(&hako(
        d,
        &[
            "run",
            "--rm",
            "--name",
            "img-b",
            "--network",
            "none",
            &name,
            "echo",
            "from-oci-layout",
        ],
    ));
    assert_eq!(out.trim(), "from-oci-layout");

    // A `docker save` archive.
    let out = ok(&hako(
        d,
        &["load", "-i", &d.join("busybox-save.tar").to_string_lossy()],
    ));
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .expect("load names the image")
        .to_string();
    let out = ok(&hako(
        d,
        &[
            "run",
            "--rm",
            "--name",
            "img-c",
            "--network",
            "none",
            &name,
            "echo",
            "from-docker-save",
        ],
    ));
    assert_eq!(out.trim(), "from-docker-save");

    // commit, then push to the registry: skopeo and podman see the image,
    // and another engine pulls it back and runs it.
    ok(&hako(
        d,
        &[
            "run",
            "--name",
            "img-p",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "echo pushed > /pushed",
        ],
    ));
    ok(&hako(d, &["commit", "img-p", "localhost/pushed:1"]));
    let dest = format!("127.0.0.1:{port}/pushed:1");
    let digest = ok(&hako(d, &["push", "localhost/pushed:1", &dest]));
    let digest = digest.trim();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // Again: the registry has every blob.
    let again = hako(d, &["push", "localhost/pushed:1", &dest]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{dest}")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ok(&inspect).into_bytes()).unwrap();
    assert_eq!(v["Digest"], digest);
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(4), "{v}");
    let pd = d.join("podman");
    let podman = Command::new("podman")
        .arg("--root")
        .arg(pd.join("root"))
        .arg("--runroot")
        .arg(pd.join("runroot"))
        .args([
            "--storage-driver",
            "vfs",
            "pull",
            "--tls-verify=false",
            &dest,
        ])
        .output()
        .unwrap();
    ok(&podman);
    let fresh = d.join("fresh");
    let hako2 = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .env("HAKO_DATA_DIR", fresh.join("data"))
            .env("HAKO_RUN_DIR", fresh.join("run"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    ok(&hako2(&["pull", &dest]));
    let out = ok(&hako2(&[
        "run",
        "--rm",
        "--network",
        "none",
        &dest,
        "cat",
        "/pushed",
    ]));
    assert_eq!(out.trim(), "pushed");
    // Bad input: an image that is not here, one line and 125.
    let o = hako(d, &["push", "nope:1", &dest]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    drop(reg);
}
