//! Whether CRIU works here, for the checkpoint tests of hako-runc
//! (checkpoint.rs) and of the engine (engine.rs, which includes this file
//! by path).

use std::process::{Command, Stdio};

/// `criu check` passes here (the VM stage's kernel); where it does not
/// (Debian's CRIU 3.17 on the development machine's 6.18), a checkpoint
/// must fail with one clear line instead. HAKO_TEST_CRIU=required (set by
/// the VM stage) turns a broken CRIU into a failure.
pub fn criu_works() -> bool {
    let works = Command::new("criu")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works && std::env::var("HAKO_TEST_CRIU").as_deref() == Ok("required") {
        panic!("HAKO_TEST_CRIU=required but `criu check` fails here");
    }
    works
}
