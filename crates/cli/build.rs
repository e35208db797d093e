//! Link hako and hako-runc with packed relative relocations (DT_RELR)
//! where the C library can load them (glibc 2.36 and later define
//! GLIBC_ABI_DT_RELR; the linker then also marks the binaries so an older
//! glibc refuses them with a clear error instead of misloading them).
//! Both binaries are PIE with ~10,000 (hako-runc) and ~24,000 (hako)
//! relative relocations: packed, the loader's work per exec drops from
//! ~650k to ~350k cycles and hako-runc's peak RSS by ~0.4 MiB (the
//! relocation table is no longer paged in), docs/benchmarks.md. An engine
//! start execs hako four times. Linked static (.cargo/config.toml), the
//! binaries relocate themselves at start, from the same packed table.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let libc = [
        format!("/lib/{arch}-linux-gnu/libc.so.6"),
        format!("/usr/lib/{arch}-linux-gnu/libc.so.6"),
        "/lib64/libc.so.6".to_string(),
        "/usr/lib64/libc.so.6".to_string(),
    ];
    let knows_relr = libc
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b.windows(17).any(|w| w == b"GLIBC_ABI_DT_RELR")));
    if knows_relr {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    link_order();
}

/// The release binaries' hot code laid out together: crates/cli/order/BIN.txt
/// lists, in the order a start first runs them, the sections (functions)
/// the start paths run, as bench/symbol-order.py traced them; lld places
/// them first in .text. A start touched ~1 MiB of code spread over the whole
/// 4.3 MiB text, and the kernel maps the 64 KiB around every fault: laid out
/// together, hako-runc's peak RSS falls from 4.1 to 1.9 MiB
/// (docs/benchmarks.md, "Link order and deferred verb parsers"). The names
/// carry the compiler's hashes: a stale list (another toolchain or
/// Cargo.lock) only loses the layout, as lld skips names it does not find
/// (--no-warn-symbol-ordering).
///
/// lld is the linker here: Rust links x86_64-unknown-linux-gnu with its
/// own lld since 1.90 (.cargo/config.toml names that target). A build that
/// chooses another linker through RUSTFLAGS gets no ordering.
/// HAKO_LINK_MAP=DIR also writes each binary's link map there, with the
/// symbols as the order files name them (what bench/symbol-order.py reads).
fn link_order() {
    println!("cargo:rerun-if-env-changed=HAKO_LINK_MAP");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
    {
        return;
    }
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("order");
    for bin in ["hako", "hako-runc"] {
        if let Ok(maps) = std::env::var("HAKO_LINK_MAP") {
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,-Map={maps}/{bin}.map,--no-demangle");
        }
        let order = dir.join(format!("{bin}.txt"));
        println!("cargo:rerun-if-changed={}", order.display());
        if std::env::var("PROFILE").as_deref() == Ok("release") && order.exists() {
            println!(
                "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
                order.display()
            );
        }
    }
}
