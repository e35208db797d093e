//! hako-runc's command line: runc's names, flags and output shapes, because
//! containerd (go-runc) and podman drive runtimes through exactly these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "hako-runc",
    version,
    about = "hako's OCI runtime, with runc's command line"
)]
pub struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/hako-runc")]
    pub root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use the systemd cgroup driver.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (auto-detected).
    #[arg(
        long = "rootless",
        id = "global_rootless",
        value_name = "true|false|auto"
    )]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master of a terminal container.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Write the init's host pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for ramdisk roots).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many fds (from 3 on) into the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container (the process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM).
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped container (or, with --force, any container).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after starting instead of waiting for the container.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for runc compatibility.
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
        /// Accepted for runc compatibility.
        #[arg(long = "keep")]
        keep: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for running without root.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the runtime's features (runtime-spec features.md).
    Features,
}
