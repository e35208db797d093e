//! hako: the daemonless engine CLI (work in progress).

fn main() -> std::process::ExitCode {
    eprintln!("hako: the engine CLI is not built yet; use hako-runc");
    std::process::ExitCode::from(2)
}
