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
}
