//! Store tests that need no registry: import, load of hostile and valid
//! layouts, rmi, gc, copied root filesystems.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{oci_layout, Tar, TestStore};
use hako_image::{ImportError, RootfsKind, RootfsOptions, StoreError};

fn rootfs_dir(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("etc/hostname"), "imported\n").unwrap();
    std::os::unix::fs::symlink("/bin/busybox", dir.join("bin/sh")).unwrap();
}

#[test]
fn import_dir_list_inspect_tag_remove_gc() {
    let store = TestStore::new();
    let src = tempfile::tempdir().unwrap();
    rootfs_dir(src.path());

    let id = store.import_rootfs(src.path(), "imported:v1").unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id.to_string());
    assert_eq!(list[0].repo_tags, ["docker.io/library/imported:v1"]);
    // --format json
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json[0]["RepoTags"][0], "docker.io/library/imported:v1");

    let info = store.inspect("imported:v1").unwrap();
    assert_eq!(info.id, id.to_string());
    assert_eq!(info.rootfs.layers.len(), 1);
    assert_eq!(store.inspect(id.short()).unwrap().id, id.to_string());
    assert!(matches!(
        store.inspect("nope"),
        Err(StoreError::NoSuchImage(_))
    ));

    // The unpacked layer holds the files.
    let rec = store.resolve("imported:v1").unwrap();
    let layer = store.layer_path(&rec.layers[0].blob.digest);
    assert_eq!(
        fs::read_to_string(layer.join("etc/hostname")).unwrap(),
        "imported\n"
    );
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );

    // rmi of one of two names only untags.
    store.tag("imported:v1", "other/name:x").unwrap();
    let r = store.remove("imported:v1", false, &|_| true).unwrap();
    assert_eq!(r.untagged, ["docker.io/library/imported:v1"]);
    assert_eq!(r.deleted, None);
    // The last name of an image a container uses is refused without force.
    let e = store
        .remove("other/name:x", false, &|i| *i == id)
        .unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("other/name:x"));
    let r = store.remove("other/name:x", true, &|_| true).unwrap();
    assert_eq!(r.deleted, Some(id));
    assert!(store.list().unwrap().is_empty());

    let before = store.blobs().unwrap().len();
    assert_eq!(before, 3, "layer, config and manifest");
    let g = store.gc().unwrap();
    assert_eq!(g.blobs_removed, 3);
    assert_eq!(g.layers_removed, 1);
    assert!(store.blobs().unwrap().is_empty());
    assert!(!layer.exists());
}

#[test]
fn import_tarball_and_reimport_moves_the_name() {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let tarball = t.path().join("export.tar");
    fs::write(&tarball, Tar::new().dir("etc").file("etc/a", b"1").done()).unwrap();
    let a = store.import_rootfs(&tarball, "x").unwrap();
    fs::write(&tarball, Tar::new().dir("etc").file("etc/a", b"2").done()).unwrap();
    let b = store.import_rootfs(&tarball, "x").unwrap();
    assert_ne!(a, b);
    assert_eq!(store.resolve("x").unwrap().id, b);
    assert!(store.resolve(&a.to_string()).unwrap().names.is_empty());
}

#[test]
fn load_oci_layout_with_whiteouts_and_copy_rootfs() {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let l1 = Tar::new()
        .dir("etc")
        .file("etc/motd", b"lower")
        .file("etc/keep", b"k")
        .dir("opt/data")
        .file("opt/data/old", b"o")
        .done();
    let l2 = Tar::new()
        .file("etc/.wh.motd", b"")
        .dir("opt/data")
        .file("opt/data/.wh..wh..opq", b"")
        .file("opt/data/new", b"n")
        .done();
    oci_layout(&layout, "example.com/layered:1", &[l1, l2]);
    let loaded = store.load(&layout).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, ["example.com/layered:1"]);

    let m = store
        .prepare_rootfs_with(
            "example.com/layered:1",
            "copy1",
            &RootfsOptions {
                force_copy: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(m.kind(), RootfsKind::Copy);
    let r = m.path().to_owned();
    assert!(!r.join("etc/motd").exists(), "whiteout honoured");
    assert_eq!(fs::read(r.join("etc/keep")).unwrap(), b"k");
    assert!(!r.join("opt/data/old").exists(), "opaque dir honoured");
    assert_eq!(fs::read(r.join("opt/data/new")).unwrap(), b"n");
    // gc keeps layers of a live rootfs even if the image goes.
    store
        .remove("example.com/layered:1", true, &|_| true)
        .unwrap();
    store.gc().unwrap();
    let dir = r.parent().unwrap().to_owned();
    m.unmount_and_remove().unwrap();
    assert!(!dir.exists());
    store.gc().unwrap();
    assert!(fs::read_dir(store.root().join("layers"))
        .unwrap()
        .next()
        .is_none());
}

/// Loads a layout whose only layer is `layer`; must be refused.
fn load_hostile(layer: Vec<u8>, needle: &str) {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    oci_layout(t.path(), "evil/image:1", &[layer]);
    let e = store.load(t.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ImportError::Store(StoreError::Unpack { .. })),
        "unexpected error {msg}"
    );
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(store.list().unwrap().is_empty(), "no image recorded");
    assert!(fs::read_dir(store.root().join("layers"))
        .unwrap()
        .next()
        .is_none());
    assert!(fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    // Nothing escaped to the parent directories.
    assert!(!store.root().join("escape").exists());
    assert!(!store.data_path().join("escape").exists());
}

fn digest_of(path: &str) -> Option<String> {
    fs::read(path).ok().map(|b| common::sha256(&b))
}

#[test]
fn hostile_layers_are_refused() {
    let passwd = digest_of("/etc/passwd");
    let shadow_links = fs::metadata("/etc/shadow").map(|m| m.nlink()).ok();

    load_hostile(Tar::new().file("../escape", b"x").done(), "\"..\"");
    load_hostile(
        Tar::new().file("../../../../../../escape", b"x").done(),
        "\"..\"",
    );
    load_hostile(
        Tar::new()
            .file("/etc/passwd", b"evil::0:0::/:/bin/sh\n")
            .done(),
        "absolute path",
    );
    let marker = format!("/tmp/hako-escape-test-{}", std::process::id());
    load_hostile(
        Tar::new()
            .link(tar::EntryType::Symlink, "root", "/")
            .file(&format!("root{marker}"), b"x")
            .done(),
        "symlink",
    );
    load_hostile(
        Tar::new()
            .link(tar::EntryType::Link, "shadow", "/etc/shadow")
            .done(),
        "absolute path",
    );
    load_hostile(
        Tar::new()
            .link(tar::EntryType::Symlink, "etc", "/etc")
            .link(tar::EntryType::Link, "shadow", "etc/shadow")
            .done(),
        "symlink",
    );

    assert_eq!(digest_of("/etc/passwd"), passwd);
    assert_eq!(
        fs::metadata("/etc/shadow").map(|m| m.nlink()).ok(),
        shadow_links
    );
    assert!(!Path::new(&marker).exists());
}

#[test]
fn corrupt_blob_in_layout_is_refused() {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let layer = Tar::new().file("a", b"hello").done();
    let d = common::sha256(&layer);
    oci_layout(t.path(), "x/y:1", std::slice::from_ref(&layer));
    let mut bad = layer;
    bad[600] ^= 0xff;
    fs::write(t.path().join("blobs/sha256").join(&d[7..]), bad).unwrap();
    let e = store.load(t.path()).unwrap_err().to_string();
    assert!(e.contains(&d), "{e}");
    assert!(!store.blob_path(&d.parse().unwrap()).exists());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn bad_container_ids_are_refused() {
    let store = TestStore::new();
    let src = tempfile::tempdir().unwrap();
    rootfs_dir(src.path());
    store.import_rootfs(src.path(), "img").unwrap();
    let e = store.prepare_rootfs("img", "../../etc").unwrap_err();
    assert!(matches!(e, StoreError::ContainerId(_)), "{e}");
}

/// Overlay where it can be mounted (root, or root of a user namespace with
/// its own mount namespace: `unshare -Urm`), a copy otherwise; the view is
/// the same.
#[test]
fn auto_rootfs_honours_whiteouts() {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let l1 = Tar::new()
        .dir("etc")
        .file("etc/motd", b"lower")
        .dir("opt/data")
        .file("opt/data/old", b"o")
        .done();
    let l2 = Tar::new()
        .file("etc/.wh.motd", b"")
        .dir("opt/data")
        .file("opt/data/.wh..wh..opq", b"")
        .file("opt/data/new", b"n")
        .done();
    oci_layout(t.path(), "example.com/auto:1", &[l1, l2]);
    store.load(t.path()).unwrap();
    let m = store.prepare_rootfs("example.com/auto:1", "auto").unwrap();
    eprintln!("rootfs kind: {:?}", m.kind());
    if hako_image::unpack::privileged() {
        assert_eq!(m.kind(), RootfsKind::Overlay);
    }
    let r = m.path().to_owned();
    assert!(!r.join("etc/motd").exists());
    assert!(!r.join("opt/data/old").exists());
    assert_eq!(fs::read(r.join("opt/data/new")).unwrap(), b"n");
    fs::write(r.join("etc/new"), b"w").unwrap();
    m.unmount_and_remove().unwrap();
    assert!(!r.exists());
}

/// `save` in both formats loads back into another store as the same
/// image, under the name asked for; blobs shared by two images are written
/// once.
#[test]
fn saved_archives_load_back() {
    use hako_image::save::SaveFormat;
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let l1 = Tar::new().dir("etc").file("etc/motd", b"hello").done();
    let l2 = Tar::new().file("etc/more", b"more").done();
    oci_layout(t.path(), "example.com/save:1", std::slice::from_ref(&l1));
    store.load(t.path()).unwrap();
    let t2 = tempfile::tempdir().unwrap();
    oci_layout(t2.path(), "example.com/save:2", &[l1, l2]);
    store.load(t2.path()).unwrap();
    let one = store.inspect("example.com/save:1").unwrap();
    let two = store.inspect("example.com/save:2").unwrap();
    for format in [SaveFormat::DockerArchive, SaveFormat::OciArchive] {
        let archive = t.path().join(format!("{format:?}.tar"));
        let f = fs::File::create(&archive).unwrap();
        store
            .save(
                &["example.com/save:1".into(), "example.com/save:2".into()],
                format,
                f,
            )
            .unwrap();
        // The shared layer is in the archive once.
        let mut names = Vec::new();
        for e in tar::Archive::new(fs::File::open(&archive).unwrap())
            .entries()
            .unwrap()
        {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{format:?}: {names:?}");
        let other = TestStore::new();
        let loaded = other.load(&archive).unwrap();
        assert_eq!(loaded.len(), 2, "{format:?}");
        let got1 = other.inspect("example.com/save:1").unwrap();
        let got2 = other.inspect("example.com/save:2").unwrap();
        assert_eq!(got1.id, one.id, "{format:?}");
        assert_eq!(got2.id, two.id, "{format:?}");
        assert_eq!(got2.rootfs.layers, two.rootfs.layers);
        let m = other.prepare_rootfs("example.com/save:2", "saved").unwrap();
        assert_eq!(fs::read(m.path().join("etc/more")).unwrap(), b"more");
        m.unmount_and_remove().unwrap();
    }
    let e = store
        .save(&["nope".into()], SaveFormat::DockerArchive, Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert!("zip".parse::<SaveFormat>().is_err());
}

/// A container's changes (deletions, an emptied and refilled directory,
/// new files and links) written as a layer and put into a second
/// container of the same image give the same view (the checkpoint
/// archive's root filesystem). On a copied rootfs there is no change set
/// to write, and that is said.
#[test]
fn changes_of_one_container_become_another_s() {
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    let l1 = Tar::new()
        .dir("etc")
        .file("etc/motd", b"lower")
        .file("etc/keep", b"k")
        .dir("opt/data")
        .file("opt/data/old", b"o")
        .done();
    oci_layout(t.path(), "example.com/diff:1", &[l1]);
    store.load(t.path()).unwrap();
    let a = store.prepare_rootfs("example.com/diff:1", "diffa").unwrap();
    let ra = a.path().to_owned();
    if a.kind() == RootfsKind::Copy {
        let e = store.write_changes("diffa", Vec::new()).unwrap_err();
        assert!(e.to_string().contains("is a copy"), "{e}");
        a.unmount_and_remove().unwrap();
        return;
    }
    fs::remove_file(ra.join("etc/motd")).unwrap();
    fs::remove_dir_all(ra.join("opt/data")).unwrap();
    fs::create_dir(ra.join("opt/data")).unwrap();
    fs::write(ra.join("opt/data/new"), b"n").unwrap();
    fs::write(ra.join("etc/new"), b"w").unwrap();
    std::os::unix::fs::symlink("keep", ra.join("etc/link")).unwrap();
    // A hard link stays one file; extended attributes come along (a file
    // capability too, where we may set one).
    fs::hard_link(ra.join("etc/new"), ra.join("etc/hard")).unwrap();
    let xattrs_ok = rustix::fs::setxattr(
        ra.join("etc/new"),
        "user.hako",
        b"v1",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    // VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted+effective.
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cap_ok = rustix::fs::setxattr(
        ra.join("etc/keep"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    // diff: Docker's A/C/D by path.
    let ch: Vec<String> = store
        .changes("diffa")
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.kind, c.path))
        .collect();
    for want in [
        "C /etc",
        "A /etc/link",
        "D /etc/motd",
        "A /etc/new",
        "C /opt/data",
        "A /opt/data/new",
    ] {
        assert!(ch.contains(&want.to_string()), "{want} not in {ch:?}");
    }
    let mut layer = Vec::new();
    store.write_changes("diffa", &mut layer).unwrap();

    let b = store.prepare_rootfs("example.com/diff:1", "diffb").unwrap();
    store.apply_changes("diffb", &layer[..]).unwrap();
    let rb = b.path().to_owned();
    assert!(!rb.join("etc/motd").exists(), "the deletion came along");
    assert!(
        !rb.join("opt/data/old").exists(),
        "the emptied directory too"
    );
    assert_eq!(fs::read(rb.join("opt/data/new")).unwrap(), b"n");
    assert_eq!(fs::read(rb.join("etc/new")).unwrap(), b"w");
    assert_eq!(fs::read(rb.join("etc/keep")).unwrap(), b"k");
    assert_eq!(
        fs::read_link(rb.join("etc/link")).unwrap(),
        Path::new("keep")
    );
    use std::os::unix::fs::MetadataExt;
    let (n, h) = (
        fs::metadata(rb.join("etc/new")).unwrap(),
        fs::metadata(rb.join("etc/hard")).unwrap(),
    );
    assert_eq!(
        (n.ino(), n.nlink()),
        (h.ino(), 2),
        "a hard link, not a copy"
    );
    let get = |f: &str, name: &str| {
        let mut v = [0u8; 64];
        rustix::fs::getxattr(rb.join(f), name, &mut v[..])
            .ok()
            .map(|n| v[..n].to_vec())
    };
    if xattrs_ok {
        assert_eq!(get("etc/new", "user.hako").as_deref(), Some(&b"v1"[..]));
    }
    if cap_ok {
        assert_eq!(
            get("etc/keep", "security.capability").as_deref(),
            Some(&cap[..])
        );
    }
    // commit: the changes become one more layer of a new image, whose
    // containers see what the first one saw.
    let mut config = serde_json::Map::new();
    config.insert("Env".into(), serde_json::json!(["A=1"]));
    let id = store
        .commit_container(
            "diffa",
            "example.com/diff:1",
            Some("example.com/diff:2"),
            &hako_image::diff::CommitOptions {
                config,
                changes: vec!["CMD [\"/bin/sh\"]".into()],
                comment: Some("refilled".into()),
                author: Some("tester".into()),
            },
        )
        .unwrap();
    let info = store.inspect("example.com/diff:2").unwrap();
    assert_eq!(info.id, id.to_string());
    assert_eq!(info.rootfs.layers.len(), 2);
    assert_eq!(info.config["Env"], serde_json::json!(["A=1"]));
    assert_eq!(info.config["Cmd"], serde_json::json!(["/bin/sh"]));
    let h = store.history("example.com/diff:2").unwrap();
    assert_eq!(h[0].created_by, "hako commit");
    assert_eq!(h[0].comment, "refilled");
    // The layer is stored gzip-compressed.
    assert!(
        h[0].size > 0 && h[0].size < layer.len() as u64,
        "{}",
        h[0].size
    );
    let c = store.prepare_rootfs("example.com/diff:2", "diffc").unwrap();
    let rc = c.path().to_owned();
    assert!(!rc.join("etc/motd").exists());
    assert!(!rc.join("opt/data/old").exists());
    assert_eq!(fs::read(rc.join("opt/data/new")).unwrap(), b"n");
    assert_eq!(fs::read(rc.join("etc/keep")).unwrap(), b"k");
    c.unmount_and_remove().unwrap();
    a.unmount_and_remove().unwrap();
    b.unmount_and_remove().unwrap();
}

/// Runs the whiteout, copy and hostile-layer tests again as an unprivileged
/// user (nobody), plain and as root of a user namespace (`unshare -Urm`),
/// so the rootless paths (user.overlay xattrs, overlay with userxattr,
/// copy fallback) are covered too. Needs root to switch users.
#[test]
#[ignore = "needs root"]
fn rootless_variants() {
    use std::process::Command;
    assert!(hako_image::unpack::privileged(), "needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
    assert!(
        Command::new("setpriv").arg("--version").output().is_ok(),
        "setpriv (util-linux) is not installed"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
    // A copy nobody can run, wherever the checkout is.
    #[allow(clippy::disallowed_methods)] // the test binary, never re-executed
    let me = std::env::current_exe().unwrap();
    let exe = tmp.path().join("store-tests");
    std::fs::copy(&me, &exe).unwrap();
    for prefix in [&[][..], &["unshare", "-Urm"][..]] {
        for test in [
            "auto_rootfs_honours_whiteouts",
            "load_oci_layout_with_whiteouts_and_copy_rootfs",
            "hostile_layers_are_refused",
            "import_dir_list_inspect_tag_remove_gc",
        ] {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
                .arg(format!("TMPDIR={}", tmp.path().display()))
                .arg(format!("HOME={}", tmp.path().display()))
                .args(prefix)
                .arg(&exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"]);
            let out = cmd.output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{test} as nobody {prefix:?} failed:\n{text}"
            );
        }
    }
}

/// The overlay the host sees must not honour setuid bits or device nodes
/// from image content: its mount options carry nosuid and nodev.
#[test]
#[ignore = "needs root"]
fn host_overlay_mount_is_nosuid_nodev() {
    assert!(hako_image::unpack::privileged(), "needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
    let store = TestStore::new();
    let t = tempfile::tempdir().unwrap();
    oci_layout(
        t.path(),
        "example.com/flags:1",
        &[Tar::new().file("bin/su", b"x").done()],
    );
    store.load(t.path()).unwrap();
    let m = store
        .prepare_rootfs("example.com/flags:1", "flags")
        .unwrap();
    assert_eq!(
        m.kind(),
        RootfsKind::Overlay,
        "overlayfs is not available here"
    );
    let merged = fs::canonicalize(m.path()).unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // Field 5 is the mount point, field 6 the per-mount options.
    let opts = info
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && Path::new(f[4]) == merged)
        .map(|f| f[5].to_owned());
    m.unmount_and_remove().unwrap();
    let opts = opts.expect("the rootfs is in mountinfo");
    let opts: Vec<&str> = opts.split(',').collect();
    assert!(opts.contains(&"nosuid"), "options {opts:?}");
    assert!(opts.contains(&"nodev"), "options {opts:?}");
}

/// Store directories are owner-only, and a store whose modes an older
/// version loosened (0711 so others could traverse to a rootfs) is
/// repaired when it is opened again. Records and layers.json are 0600.
#[test]
fn store_modes_are_owner_only_and_repaired() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::new();
    let data = store.data_path().to_owned();
    let root = store.root().to_owned();
    let src = tempfile::tempdir().unwrap();
    rootfs_dir(src.path());
    let id = store.import_rootfs(src.path(), "modes:1").unwrap();
    let m = store
        .prepare_rootfs_with(
            "modes:1",
            "c1",
            &RootfsOptions {
                force_copy: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    let dirs = [
        root.clone(),
        root.join("blobs"),
        root.join("blobs/sha256"),
        root.join("layers"),
        root.join("images"),
        root.join("containers"),
        root.join("tmp"),
        root.join("containers/c1"),
    ];
    for d in &dirs {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    let record = root.join("images").join(format!("{}.json", id.hex()));
    assert_eq!(mode(&record), 0o600);
    assert_eq!(mode(&root.join("containers/c1/layers.json")), 0o600);
    // What an older version left behind.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o711)).unwrap();
    for (i, d) in dirs.iter().enumerate() {
        let loose = if i % 2 == 0 { 0o711 } else { 0o755 };
        fs::set_permissions(d, fs::Permissions::from_mode(loose)).unwrap();
    }
    let layer = store.layer_path(&store.resolve("modes:1").unwrap().layers[0].blob.digest);
    let layer_etc = mode(&layer.join("etc"));
    hako_image::Store::open(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
    for d in &dirs {
        assert_eq!(mode(d), 0o700, "{} not repaired", d.display());
    }
    // Image content keeps its own modes.
    assert_eq!(mode(&layer.join("etc")), layer_etc);
    m.unmount_and_remove().unwrap();
}

/// Sparse files in the formats GNU tar writes (old GNU 'S' entries and PAX
/// GNU.sparse 0.0, 0.1, 1.0) come out with the right contents and holes.
#[test]
fn gnu_tar_sparse_files_are_unpacked_with_holes() {
    use std::io::{Seek, SeekFrom, Write};
    use std::process::Command;
    assert!(
        Command::new("tar").arg("--version").output().is_ok(),
        "GNU tar is not installed"
    );
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let size = 10u64 << 20;
    let pieces: [(u64, &[u8]); 4] = [
        (0, b"HEAD"),
        (5_000_000, b"MIDDLE"),
        (8 << 20, b"EIGHT MIB"),
        (size - 4, b"TAIL"),
    ];
    let mut f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(size).unwrap();
    let mut expected = vec![0u8; size as usize];
    for (off, data) in pieces {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(data).unwrap();
        expected[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    drop(f);
    // And one that ends in a hole.
    let f = fs::File::create(src.join("trailing-hole")).unwrap();
    f.set_len(1 << 20).unwrap();
    (&f).write_all(b"x").unwrap();
    drop(f);

    let store = TestStore::new();
    for (i, format) in [
        &["--format=gnu"][..],
        &["--format=posix"],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ]
    .iter()
    .enumerate()
    {
        let tarball = t.path().join(format!("{i}.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("--sparse")
            .args(*format)
            .arg("-cf")
            .arg(&tarball)
            .args(["sparse", "trailing-hole"])
            .status()
            .unwrap();
        assert!(st.success());
        let name = format!("sparse:{i}");
        store
            .import_rootfs(&tarball, &name)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let rec = store.resolve(&name).unwrap();
        let layer = store.layer_path(&rec.layers[0].blob.digest);
        let got = fs::read(layer.join("sparse")).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(got == expected, "{format:?}: wrong contents");
        let md = fs::metadata(layer.join("sparse")).unwrap();
        assert!(
            md.blocks() * 512 < 1 << 20,
            "{format:?}: {} bytes allocated, holes were filled",
            md.blocks() * 512
        );
        let th = fs::read(layer.join("trailing-hole")).unwrap();
        assert_eq!(th.len(), 1 << 20, "{format:?}");
        assert!(
            th[0] == b'x' && th[1..].iter().all(|&b| b == 0),
            "{format:?}"
        );
        // No GNUSparseFile.PID/ directory of the PAX formats' renaming.
        let names: Vec<String> = fs::read_dir(&layer)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with("GNUSparseFile")),
            "{format:?}: {names:?}"
        );
    }
}
