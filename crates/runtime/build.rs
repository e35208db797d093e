//! Assemble the exec helper ("dmz", see src/dmz.rs) into a tiny static ELF
//! that the runtime embeds. Written in assembly because it must be a few
//! hundred bytes with no libc: it is copied into a sealed memfd per start.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let src = PathBuf::from(format!("dmz/{arch}.S"));
    println!("cargo:rerun-if-changed=dmz");
    if !src.exists() {
        panic!("no exec helper for {arch}: add dmz/{arch}.S");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("dmz");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args([
            "-nostdlib",
            "-static",
            "-s",
            "-Wl,--build-id=none",
            "-Wl,-n",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("run {cc} to assemble {}: {e}", src.display()));
    assert!(st.success(), "{cc} failed to assemble {}", src.display());
}
