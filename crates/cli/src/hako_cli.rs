//! The `hako` command line: clap structs only (see bin/hako.rs for dispatch).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hako_engine::RunOptions;

/// hako: a daemonless container engine.
#[derive(Parser, Debug)]
#[command(
    name = "hako",
    version,
    about = "hako: a daemonless container engine (Docker-like commands, no daemon)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Engine data directory (default /var/lib/hako, or $XDG_DATA_HOME/hako).
    #[arg(long, global = true)]
    pub data_root: Option<PathBuf>,
    /// Per-boot state directory (default /run/hako, or $XDG_RUNTIME_DIR/hako).
    #[arg(long, global = true)]
    pub run_root: Option<PathBuf>,
    /// Who makes new containers' cgroups: systemd (a transient scope) or
    /// cgroupfs. Default, as podman: systemd where systemd is PID 1 on a
    /// cgroup2-only host (and, rootless, with a user session), else
    /// cgroupfs; the settings file's [engine] cgroup_manager changes it.
    #[arg(long, global = true, value_name = "MANAGER")]
    pub cgroup_manager: Option<hako_engine::config::CgroupManager>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Each verb's flags are built only when that verb runs (`defer`): clap
/// otherwise builds the parser of every verb at every start (in hako-runc,
/// the same, 56 of its ~100 heap page faults per start).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Cmd {
    /// Create and start a container.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// List containers.
    Ps {
        /// Show all containers (default: running only).
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
        /// KEY=VALUE: id, name, label (KEY or KEY=VALUE), status (created,
        /// running, paused, exited), ancestor (image), exited (code),
        /// health (starting, healthy, unhealthy, none), network, volume
        /// (name or mount point), before and since (a container: created
        /// before or after it). Values of one key are alternatives;
        /// different keys must all match.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Only the N last created containers, of every state.
        #[arg(short = 'n', long, value_name = "N")]
        last: Option<usize>,
        /// Only the last created container, of any state (-n 1).
        #[arg(short, long, conflicts_with = "last")]
        latest: bool,
        /// Full ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// The bytes each container wrote, and with its image's.
        #[arg(short, long)]
        size: bool,
    },
    /// Start stopped containers (detached, or attached with -a).
    Start {
        /// Attach: stream output (and stdin with -i) and return the exit code.
        #[arg(short, long)]
        attach: bool,
        /// With -a: the container reads our stdin (as created with -i).
        #[arg(short, long)]
        interactive: bool,
        /// With -a: the keys that detach and leave it running (default
        /// ctrl-p,ctrl-q).
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// Start what a boot brings back (for a systemd unit or a boot
        /// script): every container with --restart always, or
        /// unless-stopped and not stopped by the user.
        #[arg(long, conflicts_with_all = ["attach", "containers"])]
        all: bool,
        #[arg(required_unless_present = "all")]
        containers: Vec<String>,
    },
    /// Connect to a running container's output, and its stdin if it keeps
    /// one open (-i); the detach keys leave it running. Exits with the
    /// container's code, or 1 after detaching (as Docker).
    Attach {
        /// The keys that detach (default ctrl-p,ctrl-q): ctrl-<c> or single
        /// characters, comma-separated.
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// Do not pass our stdin on.
        #[arg(long)]
        no_stdin: bool,
        /// Pass the signals we get on to the container (default true; only
        /// without a terminal, as Docker).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
              default_missing_value = "true")]
        sig_proxy: Option<bool>,
        container: String,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers.
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal (default KILL).
    Kill {
        /// The signal (name or number; default KILL).
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove the container's anonymous volumes too (named ones stay).
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Print a container's logs.
    Logs {
        #[command(flatten)]
        args: LogsArgs,
        container: String,
    },
    /// Details of containers as JSON.
    Inspect {
        /// Look only for this kind of object: container, image, volume or
        /// network (default: each, in that order, as Docker).
        #[arg(long = "type", value_parser = ["container", "image", "volume", "network"])]
        kind: Option<String>,
        /// A Go template for each object (`{{.State.Status}}`,
        /// `{{json .Config}}`), or `json` for one object per line.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// The processes of a container.
    Top { container: String },
    /// Resource usage of containers (all running ones by default),
    /// redrawn every second until interrupted or they all stop.
    Stats {
        containers: Vec<String>,
        /// Print one sample and exit.
        #[arg(long)]
        no_stream: bool,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Container commands: prune, checkpoint, restore, and every container
    /// verb in Docker's form (`container ls` is `ps`, `container rm` is `rm`).
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Health check commands.
    #[command(subcommand)]
    Healthcheck(HealthCmd),
    /// Disk use, pruning and information about the engine.
    #[command(subcommand)]
    System(SystemCmd),
    /// What happens to containers, images, networks and volumes: the past
    /// (--since) and what comes (until --until, or interrupted).
    Events {
        /// From this time: RFC 3339, seconds since the epoch, or a duration
        /// ago (10m) [default: only new events].
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms); then exit.
        #[arg(long)]
        until: Option<String>,
        /// KEY=VALUE: type, event, container, image, network, volume.
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` for one JSON object per line, or a Go template
        /// (`{{.Action}} {{.Actor.Attributes.name}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Information about the engine and the host (as `system info`).
    Info {
        /// `json`, or a Go template (`{{.ContainersRunning}}`).
        #[arg(short, long)]
        format: Option<String>,
    },
    /// A shell completion script (`hako completion bash >
    /// /etc/bash_completion.d/hako`), or with `man DIR` the manual pages.
    Completion {
        /// bash, zsh, fish, elvish, powershell; or man.
        shell: String,
        /// For `man`: the directory to write hako.1 and hako-VERB.1 in.
        dir: Option<PathBuf>,
    },
    /// Versions of hako and of what it runs on.
    Version {
        /// `json`: one JSON object.
        #[arg(long)]
        format: Option<String>,
    },
    /// Rename a container (running or not).
    Rename { container: String, new_name: String },
    /// A container's published ports (`80/tcp -> 0.0.0.0:32768`), or the
    /// host address of one (`port C 80`).
    Port {
        container: String,
        /// PORT[/PROTO] inside the container.
        private: Option<String>,
    },
    /// Change containers' limits (the running cgroup and the stored
    /// configuration) or restart policy, as `docker update`.
    Update {
        #[command(flatten)]
        limits: hako_engine::Limits,
        /// The restart policy: no, on-failure[:N], always or
        /// unless-stopped (applies from the container's next exit).
        #[arg(long)]
        restart: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Freeze all processes of containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Block until containers stop; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Namespace tools.
    #[command(subcommand)]
    Ns(NsCmd),
    /// Pull an image from a registry; its id goes to stdout, progress to
    /// stderr.
    Pull {
        image: String,
        /// OS/ARCH (Docker's form): this host's platform only, as hako
        /// runs no emulator.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        /// Allow plain HTTP.
        #[arg(long)]
        insecure: bool,
        /// No progress, only the image id (as podman; Docker prints the
        /// image's name instead).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Push an image to a registry (credentials from `login`).
    Push {
        /// Allow plain HTTP (loopback registries always may).
        #[arg(long)]
        insecure: bool,
        image: String,
        /// Where to push it, REGISTRY/REPOSITORY[:TAG] [default: the
        /// image's name].
        destination: Option<String>,
    },
    /// List images.
    Images {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// KEY=VALUE, all must hold: dangling (true: untagged images;
        /// false: tagged ones), reference (a pattern of repository[:tag],
        /// `*` within a path element, as Docker's).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Image commands: ls, inspect, rm, prune, and every image verb in
    /// Docker's form (`image pull` is `pull`, `image history` is `history`).
    #[command(subcommand)]
    Image(ImageCmd),
    /// Remove images.
    Rmi {
        /// Remove it even if a container was made from it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Build an image from a Containerfile (or Dockerfile) and a context:
    /// a directory, `-` (a tar, or a Containerfile alone, on stdin) or a
    /// tar archive. Every step is cached (`--no-cache` to rebuild). The
    /// image id goes to stdout, the steps to stderr; a failure exits 1
    /// (Docker's code, for bad input and failed steps alike).
    Build {
        /// OS/ARCH (Docker's form): this host's platform only, as hako
        /// runs no emulator.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        /// NAME[:TAG] for the image (repeatable).
        #[arg(short, long = "tag")]
        tag: Vec<String>,
        /// The Containerfile (default: Containerfile, else Dockerfile, in
        /// the context; `-` reads it from stdin).
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// KEY=VALUE for an ARG (KEY alone: from the environment).
        #[arg(long)]
        build_arg: Vec<String>,
        /// Build up to this stage (by its AS name).
        #[arg(long)]
        target: Option<String>,
        /// Run every step again, ignoring the cache.
        #[arg(long)]
        no_cache: bool,
        /// Pull every FROM image, even those already here.
        #[arg(long)]
        pull: bool,
        /// The network of RUN steps (default: the default network).
        #[arg(long)]
        network: Option<String>,
        /// KEY=VALUE label on the image.
        #[arg(long)]
        label: Vec<String>,
        /// Write the image id to this file.
        #[arg(long)]
        iidfile: Option<PathBuf>,
        /// Print only the image id (a failing RUN's output is still shown).
        #[arg(short, long)]
        quiet: bool,
        /// The build context.
        context: String,
    },
    /// A new image from a container's changes.
    Commit {
        /// The author in the image's history.
        #[arg(short, long)]
        author: Option<String>,
        /// The commit message (the history entry's comment).
        #[arg(short, long)]
        message: Option<String>,
        /// A Dockerfile instruction for the image's config (CMD,
        /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, STOPSIGNAL, VOLUME).
        #[arg(short, long)]
        change: Vec<String>,
        /// Freeze a running container while it is committed (as Docker;
        /// --pause=false to not).
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        pause: bool,
        container: String,
        /// REPOSITORY[:TAG] for the new image (none: untagged).
        repository: Option<String>,
    },
    /// Copy files between a container and the host: `cp CONTAINER:SRC
    /// DEST` or `cp SRC CONTAINER:DEST`; `-` is a tar stream on stdout or
    /// stdin. Also for stopped containers.
    Cp { source: String, destination: String },
    /// List the files a container added (A), changed (C) and deleted (D).
    Diff { container: String },
    /// Write a container's root filesystem as a tar (to stdout, or -o).
    Export {
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Write images to an archive (to stdout, or -o) that `load`, `docker
    /// load` and `podman load` read.
    Save {
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// docker-archive (docker save's format, the default) or
        /// oci-archive (an OCI image layout in a tar).
        #[arg(long, default_value = "docker-archive")]
        format: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// An image's history: what made each layer, newest first.
    History {
        /// Do not shorten the CREATED BY column.
        #[arg(long)]
        no_trunc: bool,
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
    /// Import a root filesystem (a directory, or a tarball as `docker export` writes).
    Import {
        /// A Dockerfile instruction for the image's config (CMD, ENTRYPOINT,
        /// ENV, EXPOSE, LABEL, USER, WORKDIR, STOPSIGNAL, VOLUME).
        #[arg(short, long)]
        change: Vec<String>,
        source: PathBuf,
        name: String,
    },
    /// Load a `docker save` archive or an OCI layout.
    Load {
        /// The archive (a `docker save` tar, an OCI layout directory or tar).
        #[arg(short, long)]
        input: PathBuf,
    },
    /// Store registry credentials.
    Login {
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: String,
        /// The password (better: --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget registry credentials.
    Logout { registry: String },
    /// Volume commands.
    #[command(subcommand)]
    Volume(VolCmd),
    /// Network commands.
    #[command(subcommand)]
    Network(NetCmd),
    #[command(name = "__dns", hide = true)]
    Dns { network: String },
    /// The rootless namespace's holder (see hako_engine::rootless).
    #[command(name = "__pause", hide = true)]
    PauseNs {
        #[arg(long)]
        single_id: bool,
    },
    #[command(name = "__init", hide = true, disable_help_flag = true)]
    Init {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

/// `run`/`create`: the engine's [`RunOptions`] (their one definition)
/// plus a long-only --help, since -h is --hostname as in Docker.
#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub opts: RunOptions,
    /// The image, then the container's command and its arguments (default:
    /// the image's). Everything after the image is the command's, words
    /// that look like flags included (`run IMG -c x`), as in Docker.
    #[arg(
        value_name = "IMAGE [COMMAND [ARG]...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

impl RunArgs {
    /// The options with the image and command in place; an unknown flag
    /// before the image is said as such (not taken for an image name).
    pub fn options(&self) -> hako_engine::Result<RunOptions> {
        let mut o = self.opts.clone();
        let mut w = self.image_and_command.iter().cloned();
        o.image = w.next().unwrap_or_default();
        if o.image.starts_with('-') {
            return Err(hako_engine::Error::Usage(format!(
                "unknown flag {} (see --help)",
                o.image
            )));
        }
        o.cmd = w.collect();
        Ok(o)
    }
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// With -it: the keys that detach and leave the process running
    /// (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// USER[:GROUP] (names or numbers) to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// KEY=VALUE to add to the environment.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

/// `logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new lines until the container ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything).
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Prefix each line with its time (RFC 3339).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Lines logged since: an RFC 3339 time, seconds since the epoch, or
    /// a duration ago (10m, 1h30m).
    #[arg(long)]
    pub since: Option<String>,
    /// Lines logged before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Space used by images, containers and volumes, and what is reclaimable.
    Df {
        /// `json` for one JSON object per line, or a Go template.
        #[arg(long)]
        format: Option<String>,
    },
    /// Information about the engine and the host.
    Info {
        /// `json`, or a Go template (`{{.ContainersRunning}}`).
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove stopped containers, unused networks and images without a
    /// name (-a: every unused image); with --volumes unused anonymous
    /// volumes (with -a every unused volume).
    Prune {
        /// Every unused image (and with --volumes every unused volume).
        #[arg(short, long)]
        all: bool,
        /// Also volumes.
        #[arg(long)]
        volumes: bool,
        /// Do not ask (hako never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum HealthCmd {
    /// Run a container's health check now: prints healthy, unhealthy or
    /// starting; exit 0 when healthy, 1 otherwise.
    Run { container: String },
}

/// `container VERB`: Docker's management form of every container verb
/// (`container ls` is `ps`, `container rm` is `rm`, …), and these.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove every container that is not running.
    Prune {
        /// Do not ask (hako never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// Checkpoint running containers with CRIU (they then show as exited,
    /// to be restored); as podman's.
    Checkpoint {
        /// Leave the containers running after the checkpoint.
        #[arg(short = 'R', long = "leave-running")]
        leave_running: bool,
        /// Checkpoint open TCP connections too.
        #[arg(long = "tcp-established")]
        tcp_established: bool,
        /// Also write the checkpoint, the settings and the root
        /// filesystem's changes to this archive (for restore --import).
        #[arg(short = 'e', long = "export", value_name = "FILE")]
        export: Option<PathBuf>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restore checkpointed containers: they run on from their checkpoint.
    /// With --import, a new container from a checkpoint archive.
    Restore {
        /// A new container from this archive (container checkpoint
        /// --export), its image already here, restored.
        #[arg(
            short = 'i',
            long = "import",
            value_name = "FILE",
            conflicts_with = "containers"
        )]
        import: Option<PathBuf>,
        /// The imported container's name [default: the exported one].
        #[arg(short = 'n', long, requires = "import")]
        name: Option<String>,
        #[arg(required_unless_present = "import")]
        containers: Vec<String>,
    },
    /// Any other verb: the top-level one of that name (`ls` and `list`
    /// are `ps`).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Subcommand, Debug)]
pub enum NsCmd {
    /// Namespaces of one or all running containers, with what shares them.
    Ls {
        container: Option<String>,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Bind-mount a container's namespace file so it outlives the container.
    Keep {
        container: String,
        /// cgroup, ipc, mnt, net, pid, time, user or uts.
        r#type: String,
        path: PathBuf,
    },
    /// Run a command in a kept namespace (PATH) or a container's namespaces.
    Enter {
        target: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Unmount and remove a kept namespace.
    Rm { path: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Details of images as JSON.
    Inspect {
        /// A Go template for each object, or `json` for one per line (as
        /// `inspect --format`).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// KEY=VALUE, all must hold: dangling (true: untagged images;
        /// false: tagged ones), reference (a pattern of repository[:tag],
        /// `*` within a path element, as Docker's).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove images.
    Rm {
        /// Remove it even if a container was made from it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images without a name that no container uses (-a: every
    /// image no container uses), then unused blobs and layers.
    Prune {
        /// Every unused image, named or not.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (hako never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// Any other verb: the top-level one of that name (`image pull` is
    /// `pull`, `image history` is `history`, …).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Subcommand, Debug)]
pub enum VolCmd {
    /// Create a volume (a name is made up if none is given); an existing
    /// one is left as it is, as in Docker.
    Create {
        /// KEY=VALUE metadata.
        #[arg(short, long)]
        label: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    Ls {
        /// Names only.
        #[arg(short, long)]
        quiet: bool,
        /// KEY=VALUE, all must hold: dangling (true: used by no
        /// container), name (a part of it), label (KEY or KEY=VALUE).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Details of volumes as JSON.
    Inspect {
        /// A Go template for each object, or `json` for one per line (as
        /// `inspect --format`).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes no container uses.
    Rm {
        /// A missing volume is no error.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (with -a, every
    /// unused volume), as Docker 23+.
    Prune {
        /// Every unused volume, named ones too.
        #[arg(short, long)]
        all: bool,
        /// Do not ask (hako never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetCmd {
    /// Create a bridge network.
    Create {
        /// The subnet (CIDR, default: a free /24 of the pool).
        #[arg(long)]
        subnet: Option<String>,
        /// The gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Bridge interface name (default hakoN).
        #[arg(long)]
        bridge: Option<String>,
        /// No masquerade: containers reach only the host and each other.
        #[arg(long)]
        internal: bool,
        /// No name server: containers do not resolve each other by name.
        #[arg(long)]
        disable_dns: bool,
        /// The servers the network's name server asks for other names
        /// (default: the host's).
        #[arg(long)]
        dns: Vec<String>,
        name: String,
    },
    /// List networks.
    Ls {
        /// Names only.
        #[arg(short, long)]
        quiet: bool,
        /// KEY=VALUE, all must hold: dangling (true: no container on it),
        /// name (a part of it).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` for one JSON object per line, or a Go template (`{{.Names}}`,
        /// `{{json .}}`, `table {{.ID}}\t{{.Names}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove every user network no container is on (not the default
    /// one).
    Prune {
        /// Do not ask (hako never asks; accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// Details of networks as JSON.
    Inspect {
        /// A Go template for each object, or `json` for one per line (as
        /// `inspect --format`).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Attach a running container to a network.
    Connect {
        /// Its IPv4 address there (else the lowest free one).
        #[arg(long, value_name = "IPV4")]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Detach a container from a network.
    Disconnect { network: String, container: String },
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
