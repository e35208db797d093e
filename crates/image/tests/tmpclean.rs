//! A killed import leaves its temp file behind; the next `Store::open`
//! removes it, but never a temp file of an import that is still running.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Tar;

const CHILD_ENV: &str = "HAKO_TEST_IMPORT_CHILD";
const TEST: &str = "killed_import_temp_files_are_removed_on_open";

/// In a child: import the tarball read from a FIFO (so the parent decides
/// how far it gets).
fn child(spec: &str) {
    let mut it = spec.split('\n');
    let (data, fifo, name) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let store = hako_image::Store::open(data).unwrap();
    store.import_rootfs(fifo, name).unwrap();
}

// The test binary runs itself as the child (it is never re-executed from a
// detached mount, so current_exe is its path).
#[allow(clippy::disallowed_methods)]
fn spawn(data: &Path, fifo: &Path, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}\n{}\n{name}", data.display(), fifo.display()),
        )
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens the FIFO for writing once the child has opened it for reading.
fn open_writer(fifo: &Path) -> File {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = None;
    wait_for("the child opens the fifo", || {
        f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(fifo)
            .ok();
        f.is_some()
    });
    let f = f.unwrap();
    let fl = rustix::fs::fcntl_getfl(&f).unwrap();
    rustix::fs::fcntl_setfl(&f, fl - rustix::fs::OFlags::NONBLOCK).unwrap();
    f
}

/// `tmp/` entries whose name has `pid` as the writer.
fn temps_of(tmp: &Path, pid: u32) -> Vec<(PathBuf, u64)> {
    fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter(|e| {
            // WHAT@PID.START.N (older versions: WHAT-PID-N).
            let n = e.file_name().to_string_lossy().into_owned();
            n.contains(&format!("@{pid}.")) || n.contains(&format!("-{pid}-"))
        })
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect()
}

#[test]
fn killed_import_temp_files_are_removed_on_open() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    let data = tempfile::tempdir().unwrap();
    let store = hako_image::Store::open(data.path()).unwrap();
    let tmp = store.root().join("tmp");
    let fifos = tempfile::tempdir().unwrap();
    let (f1, f2) = (fifos.path().join("a"), fifos.path().join("b"));
    for f in [&f1, &f2] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            f,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    // 24 MiB of non-zero data, as a valid tar.
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let tar = Tar::new().file("big", &big).done();
    let half = 20 << 20;

    let mut killed = spawn(data.path(), &f1, "killed:1");
    let mut w1 = open_writer(&f1);
    w1.write_all(&tar[..half]).unwrap();
    let mut running = spawn(data.path(), &f2, "running:1");
    let mut w2 = open_writer(&f2);
    w2.write_all(&tar[..half]).unwrap();
    for c in [&killed, &running] {
        wait_for("the import's temp file grows", || {
            temps_of(&tmp, c.id())
                .iter()
                .any(|(_, n)| *n >= half as u64)
        });
    }

    killed.kill().unwrap();
    killed.wait().unwrap();
    drop(w1);
    assert_eq!(temps_of(&tmp, killed.id()).len(), 1, "left behind");

    hako_image::Store::open(data.path()).unwrap();
    assert!(
        temps_of(&tmp, killed.id()).is_empty(),
        "the killed import's temp file is removed"
    );
    let live = temps_of(&tmp, running.id());
    assert_eq!(live.len(), 1, "the running import's temp file is kept");

    // The running import was not disturbed: it completes.
    w2.write_all(&tar[half..]).unwrap();
    drop(w2);
    assert!(running.wait().unwrap().success());
    let rec = store.resolve("running:1").unwrap();
    let layer = store.layer_path(&rec.layers[0].blob.digest);
    assert_eq!(fs::read(layer.join("big")).unwrap(), big);
    assert!(store.resolve("killed:1").is_err());
    assert!(fs::read_dir(&tmp).unwrap().next().is_none(), "tmp is clean");
}
