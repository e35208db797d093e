//! End to end against a real docker-registry on 127.0.0.1 (root only): the
//! fixture is scripts/test-registry.sh, stopped by PID when the test ends,
//! however it ends. One test function, so one registry serves all steps.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{chroot_ok, is_mounted, is_root, Registry, TestStore};
use hako_image::{Progress, PullError, PullOptions, RootfsKind, RootfsOptions, Store};

fn opts() -> PullOptions {
    PullOptions {
        progress: Progress::Plain,
        // Never read the real user's credentials in tests.
        auth_file: Some("/nonexistent/hako-test-auth.json".into()),
        ..PullOptions::default()
    }
}

fn blob_inodes(store: &Store) -> BTreeMap<String, u64> {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect()
}

/// The merged view of the layered image (overlay or copy).
fn check_layered_view(root: &Path) {
    assert!(root.join("bin/busybox").is_file(), "lower layer files");
    assert!(
        !root.join("etc/motd").exists(),
        ".wh.motd hides the lower /etc/motd"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/layer2")).unwrap(),
        "added by layer 2\n"
    );
    assert!(
        !root.join("opt/data/old").exists(),
        "opaque /opt/data hides old"
    );
    assert_eq!(
        fs::read_to_string(root.join("opt/data/new")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        chroot_ok(root, &["true"]),
        "chroot {} /bin/busybox true",
        root.display()
    );
}

#[test]
#[ignore = "needs root"]
fn registry_end_to_end() {
    assert!(is_root(), "needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
    let reg = match Registry::start() {
        Ok(r) => r,
        Err(e) => panic!("cannot start the test registry (Debian docker-registry): {e}"),
    };
    let store = TestStore::new();

    // 1. One-layer image, Docker schema 2.
    let busybox = reg.reference("busybox:latest");
    let id = store.pull(&busybox, &opts()).unwrap();
    let info = store.inspect(&busybox).unwrap();
    assert_eq!(info.id, id.to_string());
    assert_eq!(
        info.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(info.repo_digests.len(), 1);
    assert_eq!(store.list().unwrap().len(), 1);

    // 2. Pulling again downloads nothing: every blob is the same file.
    let before = blob_inodes(&store);
    assert_eq!(store.pull(&busybox, &opts()).unwrap(), id);
    assert_eq!(blob_inodes(&store), before);

    // 3. The OCI-format push of the same image has the same config, so the
    //    same ID; only its manifest is new.
    let oci_id = store.pull(&reg.reference("busybox:oci"), &opts()).unwrap();
    assert_eq!(oci_id, id);

    // 4. Multi-layer image with whiteouts, both formats; overlay rootfs.
    for tag in ["layered:latest", "layered:oci"] {
        let r = reg.reference(tag);
        store.pull(&r, &opts()).unwrap();
        let rec = store.resolve(&r).unwrap();
        assert_eq!(rec.layers.len(), 3);
        // Layer 2 on disk: a 0:0 whiteout and an opaque directory.
        let l2 = store.layer_path(&rec.layers[1].blob.digest);
        let wh = fs::symlink_metadata(l2.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        let mut buf = [0u8; 2];
        let n = rustix::fs::lgetxattr(l2.join("opt/data"), "trusted.overlay.opaque", &mut buf[..])
            .unwrap();
        assert_eq!(&buf[..n], b"y");

        let m = store.prepare_rootfs(&r, "ctr-overlay").unwrap();
        assert_eq!(m.kind(), RootfsKind::Overlay);
        let merged = m.path().to_owned();
        assert!(is_mounted(&merged));
        check_layered_view(&merged);
        // Writes go to the container's upper dir, not the shared layers.
        fs::write(merged.join("etc/written"), "w").unwrap();
        let upper = merged.parent().unwrap().join("upper");
        assert!(upper.join("etc/written").is_file());
        assert!(!store
            .layer_path(&rec.layers[0].blob.digest)
            .join("etc/written")
            .exists());
        m.unmount_and_remove().unwrap();
        assert!(!is_mounted(&merged));
        assert!(!merged.exists());
    }

    // 5. The copy fallback gives the same view.
    let m = store
        .prepare_rootfs_with(
            &reg.reference("layered:latest"),
            "ctr-copy",
            &RootfsOptions {
                force_copy: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(m.kind(), RootfsKind::Copy);
    check_layered_view(m.path());
    m.unmount_and_remove().unwrap();

    // 6. load: OCI layout directory and tar, docker save archive; import
    //    of a docker export tarball and of a rootfs directory.
    let lstore = TestStore::new();
    let loaded = lstore.load(reg.path("oci/busybox")).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/busybox:latest"]);
    let loaded_tar = lstore.load(reg.path("busybox-oci.tar")).unwrap();
    assert_eq!(loaded_tar[0].id, loaded[0].id);
    let saved = lstore.load(reg.path("busybox-save.tar")).unwrap();
    assert_eq!(saved[0].names, ["docker.io/saved/busybox:latest"]);
    let imported = lstore
        .import_rootfs(reg.path("busybox-export.tar"), "exported:1")
        .unwrap();
    let imported_dir = lstore
        .import_rootfs(reg.path("rootfs"), "fromdir:1")
        .unwrap();
    for (i, name) in ["busybox", "saved/busybox", "exported:1", "fromdir:1"]
        .iter()
        .enumerate()
    {
        let m = lstore.prepare_rootfs(name, &format!("load{i}")).unwrap();
        assert!(chroot_ok(m.path(), &["true"]), "{name}");
        assert!(
            chroot_ok(m.path(), &["sh", "-c", "test -f /etc/passwd"]),
            "{name}"
        );
        m.unmount_and_remove().unwrap();
    }
    assert_ne!(imported, imported_dir);
    drop(lstore);

    // 7. A blob whose bytes do not match its digest: the pull fails naming
    //    it and leaves no blob under that digest, no temp file, no image.
    let rec = store.resolve(&busybox).unwrap();
    let layer = rec.layers[0].blob.digest.clone();
    let hex = layer.hex();
    let data_file = reg.path(&format!(
        "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let orig = fs::read(&data_file).unwrap();
    let mut bad = orig.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&data_file, &bad).unwrap();
    let fstore = TestStore::new();
    let err = fstore.pull(&busybox, &opts()).unwrap_err();
    fs::write(&data_file, &orig).unwrap();
    let msg = err.to_string();
    assert!(matches!(err, PullError::Verify { .. }), "{msg}");
    assert!(msg.contains(&layer.to_string()), "{msg}");
    assert!(!fstore.blob_path(&layer).exists());
    assert!(fs::read_dir(fstore.root().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    assert!(fstore.list().unwrap().is_empty());
    // With the registry repaired the same store pulls fine.
    fstore.pull(&busybox, &opts()).unwrap();

    // 8. Concurrent pulls sharing blobs and layers into one store (two
    //    threads, each with its own runtime and lock handles).
    let cstore = TestStore::new();
    let ids: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = [
            "layered:latest",
            "layered:oci",
            "busybox:latest",
            "layered:latest",
        ]
        .into_iter()
        .map(|t| {
            let (st, r) = (cstore.clone(), reg.reference(t));
            s.spawn(move || st.pull(&r, &opts()))
        })
        .collect();
        hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert_eq!(ids[0], ids[1]);
    assert_eq!(cstore.list().unwrap().len(), 2);
    assert!(fs::read_dir(cstore.root().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    let m = cstore
        .prepare_rootfs(&reg.reference("layered:oci"), "conc")
        .unwrap();
    check_layered_view(m.path());
    m.unmount_and_remove().unwrap();

    // 9. rmi and gc.
    // busybox:oci is a second name of the same image: only untagged.
    let r = store
        .remove(&reg.reference("busybox:oci"), false, &|_| true)
        .unwrap();
    assert_eq!(r.deleted, None);
    let e = store.remove(&busybox, false, &|i| *i == id).unwrap_err();
    assert!(e.to_string().contains("used by a container"), "{e}");
    let r = store.remove(&busybox, true, &|_| true).unwrap();
    assert_eq!(r.deleted, Some(id.clone()));
    let g = store.gc().unwrap();
    assert!(g.blobs_removed >= 3, "{g:?}");

    // 10. Nothing left mounted under the store.
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&*store.data_path().to_string_lossy()));
}

/// Basic auth: anonymous pulls are refused, `login` credentials from the
/// credentials file work, `logout` removes them, explicit credentials work.
#[test]
#[ignore = "needs root"]
fn registry_basic_auth() {
    assert!(is_root(), "needs root: root tests are #[ignore]d and run as root with --include-ignored (bash scripts/test.sh)");
    let reg = match Registry::start_with_auth("hako", "s3cret") {
        Ok(r) => r,
        Err(e) => panic!("cannot start the test registry (Debian docker-registry): {e}"),
    };
    let store = TestStore::new();
    let auth_file = store.data_path().join("auth.json");
    let registry = format!("127.0.0.1:{}", reg.port);
    let r = reg.reference("busybox:latest");
    let o = PullOptions {
        progress: Progress::Quiet,
        auth_file: Some(auth_file.clone()),
        ..PullOptions::default()
    };

    let e = store.pull(&r, &o).unwrap_err();
    assert!(matches!(e, PullError::Manifest { .. }), "{e}");
    eprintln!("anonymous pull refused: {e}");

    let creds = hako_image::Credentials {
        username: "hako".into(),
        password: "s3cret".into(),
    };
    let wrong = hako_image::Credentials {
        username: "hako".into(),
        password: "wrong".into(),
    };
    hako_image::login(&auth_file, &registry, &wrong).unwrap();
    assert!(store.pull(&r, &o).is_err());
    hako_image::login(&auth_file, &registry, &creds).unwrap();
    let mode = fs::metadata(&auth_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let id = store.pull(&r, &o).unwrap();

    assert!(hako_image::logout(&auth_file, &registry).unwrap());
    let fstore = TestStore::new();
    assert!(fstore.pull(&r, &o).is_err());
    let explicit = PullOptions {
        auth: Some(creds),
        ..o.clone()
    };
    assert_eq!(fstore.pull(&r, &explicit).unwrap(), id);
}
