//! Size and free-space limits on unpacking (gzip/zstd bombs). One test per
//! binary on purpose: it sets the process-wide override variables.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::{oci_layout, Tar, TestStore};
use hako_image::{ImportError, StoreError};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

/// Nothing of a refused layer is left: no layer directory, no temp files,
/// no image record.
fn assert_nothing_left(store: &TestStore) {
    assert!(empty(&store.root().join("layers")), "partial layer left");
    assert!(empty(&store.root().join("tmp")), "temp files left");
    assert!(store.list().unwrap().is_empty(), "image recorded");
}

#[test]
fn bombs_stop_at_the_limit_and_leave_nothing() {
    // 16 MiB of zeros: a tar of ~16 MiB that gzips to ~16 KiB.
    let zeros = vec![0u8; 16 << 20];
    let tar = Tar::new().file("zeros", &zeros).done();
    let bomb = gzip(&tar);
    let zbomb = zstd::encode_all(&tar[..], 19).unwrap();
    assert!(bomb.len() < 64 << 10 && zbomb.len() < 64 << 10);
    let t = tempfile::tempdir().unwrap();
    let bomb_path = t.path().join("bomb.tar.gz");
    fs::write(&bomb_path, &bomb).unwrap();

    std::env::set_var("HAKO_MAX_LAYER_BYTES", (1u64 << 20).to_string());

    // import of a compressed rootfs tarball: the decompressing copy stops.
    let store = TestStore::new();
    let e = store.import_rootfs(&bomb_path, "bomb:1").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ImportError::Store(StoreError::Limit { .. })),
        "{msg}"
    );
    assert!(msg.contains("bomb.tar.gz"), "names the tarball: {msg}");
    assert!(msg.contains("1048576"), "says the limit: {msg}");
    assert_nothing_left(&store);
    assert!(store.blobs().unwrap().is_empty());

    // A layer of an image (gzip and zstd): unpacking stops, the error names
    // the layer, and the half-unpacked layer directory is gone.
    for layer in [bomb.clone(), zbomb] {
        let store = TestStore::new();
        let t = tempfile::tempdir().unwrap();
        oci_layout(t.path(), "example.com/bomb:1", std::slice::from_ref(&layer));
        let e = store.load(t.path()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                ImportError::Store(StoreError::Unpack {
                    source: hako_image::unpack::UnpackError::Limit(_),
                    ..
                })
            ),
            "{msg}"
        );
        assert!(
            msg.contains(&common::sha256(&layer)),
            "names the layer: {msg}"
        );
        assert_nothing_left(&store);
    }

    // The same layers are fine under the default policy (1 GiB floor).
    std::env::remove_var("HAKO_MAX_LAYER_BYTES");
    let store = TestStore::new();
    store.import_rootfs(&bomb_path, "bomb:1").unwrap();
    let rec = store.resolve("bomb:1").unwrap();
    let layer = store.layer_path(&rec.layers[0].blob.digest);
    assert_eq!(fs::metadata(layer.join("zeros")).unwrap().len(), 16 << 20);

    // Free space: with a reserve larger than any disk, nothing is written.
    std::env::set_var("HAKO_STORE_RESERVE_BYTES", (u64::MAX / 2).to_string());
    let store = TestStore::new();
    let e = store.import_rootfs(&bomb_path, "bomb:1").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("free"), "{msg}");
    assert_nothing_left(&store);
    let t = tempfile::tempdir().unwrap();
    oci_layout(t.path(), "example.com/bomb:1", &[bomb]);
    let e = store.load(t.path()).unwrap_err();
    assert!(e.to_string().contains("must stay free"), "{e}");
    assert_nothing_left(&store);
    std::env::remove_var("HAKO_STORE_RESERVE_BYTES");
}
