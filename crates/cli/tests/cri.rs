//! Kubernetes' own calls (issue 13): a private containerd 1.6 with its CRI
//! plugin (hako-runc and runc as runtime handlers side by side, Debian's
//! CNI bridge plugin on a private bridge, a locally built pause image, no
//! registry), driven over the CRI gRPC API as the kubelet drives it:
//! RunPodSandbox, CreateContainer, StartContainer, ExecSync,
//! UpdateContainerResources, ContainerStats, StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox. Each pod is run once
//! with a pid namespace shared by the pod and once with one per container,
//! with runc (the reference) and with hako-runc; then nothing may be left:
//! sandboxes, containers, tasks, shims, runtime state, cgroups, mounts,
//! network namespaces.
//!
//! Needs root; scripts/clients-setup.sh installs containerd and the CNI
//! plugins and builds the busybox and pause images offline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::host::*;
use common::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const IMAGE: &str = "localhost/hako-busybox:latest";
const PAUSE: &str = "localhost/hako-pause:latest";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Reads the memory limit inside the container, cgroup v1 or v2.
const MEM_LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
const MIB: i64 = 1024 * 1024;

/// A private containerd with the CRI plugin; dropping it stops whatever
/// is left (through the runtimes' own state), the daemon and its shims,
/// and removes mounts, cgroups, the bridge and the directory.
struct Crid {
    dir: PathBuf,
    handler: &'static str,
    bridge: String,
    subnet: String,
    cgroup_parent: String,
    daemon: Option<Child>,
}

impl Crid {
    fn start(handler: &'static str, net: u8) -> Crid {
        let imgs = client_images();
        // In /tmp: socket paths must stay under 108 bytes.
        let dir = PathBuf::from(format!("/tmp/hako-cri-{handler}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cni")).unwrap();
        let d = dir.display();
        let bridge = format!("hkcri{handler}");
        let subnet = format!("10.232.{net}");
        let hako = bin();
        // containerd 1.6's schema. Both handlers are runc-v2 shims; only the
        // binary and its state root differ. Pod network namespaces live under
        // the private state dir, so leftovers show up as mounts there.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
  level = "debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # The pause container asks for oom_score_adj -998; lowering it needs
  # CAP_SYS_RESOURCE, which the development machine's bounding set lacks
  # (runc and hako-runc both fail there). Clamp to containerd's own value.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{d}/runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako.options]
        BinaryName = "{hako}"
        Root = "{d}/hako"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
    max_conf_num = 1
"#
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        // The pod network: a private bridge, leases kept in our directory,
        // no masquerading (nothing here needs to leave the host).
        let cni = format!(
            r#"{{"cniVersion":"0.4.0","name":"hako-cri-{handler}","plugins":[
  {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,
    "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}.0/24"}}]],"dataDir":"{d}/ipam"}}}}]}}"#
        );
        fs::write(dir.join("cni/10-hako-cri.conflist"), cni).unwrap();

        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        set_pdeathsig(&mut cmd);
        let daemon = cmd
            .spawn()
            .expect("start containerd (scripts/clients-setup.sh installs it)");
        // The guard exists from here on: a failed wait or import cleans up.
        let c = Crid {
            dir,
            handler,
            bridge,
            subnet,
            cgroup_parent: format!("hako-cri-{handler}-{}", std::process::id()),
            daemon: Some(daemon),
        };
        let up = poll(TIMEOUT, || c.ctr(&["version"]).then_some(()));
        assert!(up.is_some(), "containerd did not come up\n{}", c.log_tail());
        for tar in ["busybox.tar", "pause.tar"] {
            let t = imgs.join(tar);
            assert!(
                c.ctr(&["images", "import", &t.to_string_lossy()]),
                "ctr images import {tar} failed\n{}",
                c.log_tail()
            );
        }
        c
    }

    /// `ctr` against this containerd, in the CRI's namespace.
    fn ctr_out(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.join("c.sock"))
            .args(["--namespace", "k8s.io"])
            .args(args);
        run_with_timeout(cmd, TIMEOUT)
    }

    fn ctr(&self, args: &[&str]) -> bool {
        self.ctr_out(args).status.success()
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn runtime_root(&self) -> PathBuf {
        self.dir.join(self.handler)
    }

    fn runtime_bin(&self) -> &str {
        if self.handler == "hako" {
            bin()
        } else {
            "runc"
        }
    }

    /// Containers the runtime still has state for.
    fn runtime_leftovers(&self) -> Vec<String> {
        fs::read_dir(self.runtime_root().join("k8s.io"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Dot names are the runtime's caches (.seccomp), never ids.
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// What a finished run must not leave: sandboxes and containers in the
    /// CRI, tasks, runtime state, shims, mounts (rootfs, netns), child
    /// cgroups of the pods' parent.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let tasks = stdout(&self.ctr_out(&["tasks", "ls", "-q"]));
        if !tasks.trim().is_empty() {
            left.push(format!("tasks: {}", tasks.trim()));
        }
        for s in self.runtime_leftovers() {
            left.push(format!("{} state: {s}", self.handler));
        }
        let shims: Vec<i32> = pids_mentioning(&self.dir.join("c.sock").to_string_lossy())
            .into_iter()
            .filter(|&p| Some(p as u32) != self.daemon.as_ref().map(|d| d.id()))
            .collect();
        if !shims.is_empty() {
            left.push(format!("shim processes: {shims:?}"));
        }
        for m in mounts_under(&self.dir.join("state")) {
            left.push(format!("mount: {m}"));
        }
        for m in mounts_under(&self.dir.join("root")) {
            left.push(format!("mount: {m}"));
        }
        for cg in cgroups_named(Path::new("/sys/fs/cgroup"), &self.cgroup_parent, 3) {
            for c in child_cgroups(&cg) {
                left.push(format!("cgroup: {}", c.display()));
            }
        }
        left
    }
}

impl Drop for Crid {
    fn drop(&mut self) {
        // Whatever a failed test left running: stop it through the runtime.
        for id in self.runtime_leftovers() {
            let root = self.runtime_root().join("k8s.io");
            let _ = Command::new(self.runtime_bin())
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            if poll(Duration::from_secs(20), || d.try_wait().ok().flatten()).is_none() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        for p in pids_mentioning(&self.dir.join("c.sock").to_string_lossy()) {
            // SAFETY: kill(2) of a leftover shim of this test's containerd.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        umount_under(&self.dir);
        remove_cgroups_named(&self.cgroup_parent);
        // The harness may use iproute2; hako itself never does.
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One gRPC call with a deadline; a failure names the call.
async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => panic!("{what}: {} ({:?})", s.message(), s.code()),
        Err(_) => panic!("{what}: no answer within {TIMEOUT:?}"),
    }
}

async fn connect(sock: PathBuf) -> RuntimeServiceClient<Channel> {
    let ch = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's CRI socket");
    RuntimeServiceClient::new(ch)
}

fn ns_options(pid: cri::NamespaceMode) -> Option<cri::NamespaceOption> {
    Some(cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

fn memory(bytes: i64) -> Option<cri::LinuxContainerResources> {
    Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: bytes,
        ..Default::default()
    })
}

/// A pod as the kubelet would run it, checked call by call.
struct Pod<'a> {
    c: &'a Crid,
    rt: RuntimeServiceClient<Channel>,
    config: cri::PodSandboxConfig,
    pid: cri::NamespaceMode,
    id: String,
    failures: Vec<String>,
}

impl Pod<'_> {
    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.failures.push(format!(
                "[{} pid={:?}] {what}: {detail}",
                self.c.handler, self.pid
            ));
        }
    }

    async fn exec(&mut self, ctr: &str, cmd: &[&str]) -> (i32, String) {
        let r = call(
            "ExecSync",
            self.rt.exec_sync(cri::ExecSyncRequest {
                container_id: ctr.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            }),
        )
        .await;
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).trim().to_string(),
        )
    }

    async fn sh(&mut self, ctr: &str, script: &str) -> String {
        let (code, out) = self
            .exec(ctr, &["sh", "-c", &format!("{script} 2>&1")])
            .await;
        self.check(
            &format!("exec {script:?}"),
            code == 0,
            format!("exit {code}: {out}"),
        );
        out
    }

    async fn create(&mut self, name: &str, script: &str, mem: i64) -> String {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: memory(mem),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: ns_options(self.pid),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let id = call(
            "CreateContainer",
            self.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            }),
        )
        .await
        .container_id;
        call(
            "StartContainer",
            self.rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .await;
        id
    }

    async fn status(&mut self, ctr: &str) -> cri::ContainerStatus {
        call(
            "ContainerStatus",
            self.rt.container_status(cri::ContainerStatusRequest {
                container_id: ctr.into(),
                verbose: false,
            }),
        )
        .await
        .status
        .expect("ContainerStatus has a status")
    }
}

/// Runs one pod through every call and returns what failed.
async fn pod_lifecycle(c: &Crid, pid: cri::NamespaceMode) -> Vec<String> {
    let mut rt = connect(c.dir.join("c.sock")).await;
    let mode = if pid == cri::NamespaceMode::Pod {
        "shared"
    } else {
        "private"
    };
    let logs = c.dir.join(format!("logs-{mode}"));
    fs::create_dir_all(&logs).unwrap();
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("pod-{mode}"),
            uid: format!("uid-{mode}-{}", std::process::id()),
            namespace: "hako-test".into(),
            attempt: 0,
        }),
        hostname: format!("pod-{mode}"),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}", c.cgroup_parent),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: ns_options(pid),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = call(
        "RunPodSandbox",
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: c.handler.into(),
        }),
    )
    .await
    .pod_sandbox_id;
    let mut p = Pod {
        c,
        rt,
        config,
        pid,
        id,
        failures: Vec::new(),
    };

    // The sandbox got an address from the CNI bridge plugin.
    let st = call(
        "PodSandboxStatus",
        p.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: p.id.clone(),
            verbose: false,
        }),
    )
    .await;
    let ip = st
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    let in_subnet = ip.starts_with(&format!("{}.", c.subnet));
    p.check("pod IP from CNI", in_subnet, &ip);

    // Container a: reports SIGTERM and exits 3; 64 MiB memory limit.
    let a = p
        .create(
            "a",
            "echo started; trap 'echo term; exit 3' TERM; while :; do sleep 1 & wait; done",
            64 * MIB,
        )
        .await;
    let b = p
        .create(
            "b",
            "trap 'exit 0' TERM; while :; do sleep 1 & wait; done",
            0,
        )
        .await;

    // ExecSync: output and exit codes, as `kubectl exec` shows them.
    let (code, out) = p.exec(&a, &["echo", "hello"]).await;
    p.check(
        "exec echo",
        code == 0 && out == "hello",
        format!("{code} {out:?}"),
    );
    let (code, _) = p.exec(&a, &["sh", "-c", "exit 7"]).await;
    p.check("exec exit code", code == 7, format!("exit {code}, want 7"));
    // A missing binary is an error of the call (runc: "…: no such file or
    // directory"), which the kubelet reports as the probe's failure.
    let missing =
        p.rt.exec_sync(cri::ExecSyncRequest {
            container_id: a.clone(),
            cmd: vec!["/no/such/binary".into()],
            timeout: 30,
        })
        .await;
    let msg = match &missing {
        Ok(r) => format!("succeeded with exit {}", r.get_ref().exit_code),
        Err(s) => s.message().to_string(),
    };
    p.check(
        "exec of a missing binary fails naming it",
        msg.contains("/no/such/binary") && msg.contains("no such file or directory"),
        &msg,
    );
    let host = p.sh(&a, "hostname").await;
    p.check("hostname", host == format!("pod-{mode}"), &host);
    let addr = p.sh(&a, "ip -4 -o addr show eth0").await;
    p.check(
        "container sees the pod IP",
        !ip.is_empty() && addr.contains(&format!("{ip}/")),
        &addr,
    );

    // Namespaces: the network is the pod's; the pid namespace is shared
    // only when the pod asks for it.
    let net_a = p.sh(&a, "readlink /proc/self/ns/net").await;
    let net_b = p.sh(&b, "readlink /proc/self/ns/net").await;
    let host_net = fs::read_link("/proc/self/ns/net")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.check(
        "containers share the pod network",
        net_a == net_b && net_a != host_net && !net_a.is_empty(),
        format!("{net_a} {net_b} host {host_net}"),
    );
    let pid_a = p.sh(&a, "readlink /proc/self/ns/pid").await;
    let pid_b = p.sh(&b, "readlink /proc/self/ns/pid").await;
    let init_b = p.sh(&b, "tr '\\0' ' ' < /proc/1/cmdline").await;
    if pid == cri::NamespaceMode::Pod {
        p.check(
            "pid namespace shared",
            pid_a == pid_b,
            format!("{pid_a} {pid_b}"),
        );
        p.check(
            "pid 1 is the pause process",
            init_b.contains("trap 'exit 0' TERM INT"),
            &init_b,
        );
        let sees_a = p
            .sh(&b, "grep -l 'echo term' /proc/[0-9]*/cmdline | wc -l")
            .await;
        p.check("b sees a's process", sees_a != "0", &sees_a);
    } else {
        p.check(
            "pid namespace private",
            pid_a != pid_b,
            format!("{pid_a} {pid_b}"),
        );
        p.check(
            "pid 1 is the container's own process",
            init_b.contains("trap 'exit 0' TERM;"),
            &init_b,
        );
    }

    // Memory limit, then UpdateContainerResources (kubelet's in-place resize).
    let lim = p.sh(&a, MEM_LIMIT).await;
    p.check("memory limit", lim == (64 * MIB).to_string(), &lim);
    call(
        "UpdateContainerResources",
        p.rt.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: a.clone(),
            linux: memory(96 * MIB),
            ..Default::default()
        }),
    )
    .await;
    let lim = p.sh(&a, MEM_LIMIT).await;
    p.check("updated memory limit", lim == (96 * MIB).to_string(), &lim);

    // ContainerStats: the kubelet's resource metrics.
    let stats = call(
        "ContainerStats",
        p.rt.container_stats(cri::ContainerStatsRequest {
            container_id: a.clone(),
        }),
    )
    .await
    .stats;
    let mem = stats
        .as_ref()
        .and_then(|s| s.memory.as_ref())
        .and_then(|m| m.working_set_bytes.as_ref().or(m.usage_bytes.as_ref()))
        .map(|v| v.value)
        .unwrap_or(0);
    p.check("stats report memory", mem > 0, mem);
    let cpu = stats
        .as_ref()
        .and_then(|s| s.cpu.as_ref())
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    p.check("stats report cpu time", cpu > 0, cpu);

    // StopContainer: SIGTERM reaches the process, its exit code is kept,
    // and its output is in the kubelet's log file.
    call(
        "StopContainer",
        p.rt.stop_container(cri::StopContainerRequest {
            container_id: a.clone(),
            timeout: 20,
        }),
    )
    .await;
    let st = p.status(&a).await;
    p.check(
        "stopped container state",
        st.state == cri::ContainerState::ContainerExited as i32,
        st.state,
    );
    p.check(
        "exit code after SIGTERM",
        st.exit_code == 3,
        format!("{} (want 3, from the TERM trap)", st.exit_code),
    );
    let log = fs::read_to_string(logs.join("a.log")).unwrap_or_default();
    p.check(
        "container log",
        log.contains("stdout F started") && log.contains("stdout F term"),
        &log,
    );
    call(
        "RemoveContainer",
        p.rt.remove_container(cri::RemoveContainerRequest {
            container_id: a.clone(),
        }),
    )
    .await;

    // The pod goes away with b still running, as when a Pod is deleted.
    call(
        "StopPodSandbox",
        p.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        }),
    )
    .await;
    let st = p.status(&b).await;
    p.check(
        "pod stop stops its containers",
        st.state == cri::ContainerState::ContainerExited as i32,
        st.state,
    );
    call(
        "RemovePodSandbox",
        p.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        }),
    )
    .await;
    let pods = call(
        "ListPodSandbox",
        p.rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )
    .await
    .items;
    p.check("no sandbox listed", pods.is_empty(), format!("{pods:?}"));
    let ctrs = call(
        "ListContainers",
        p.rt.list_containers(cri::ListContainersRequest { filter: None }),
    )
    .await
    .containers;
    p.check("no container listed", ctrs.is_empty(), format!("{ctrs:?}"));
    p.failures
}

fn cri_pods(handler: &'static str, net: u8) {
    let c = Crid::start(handler, net);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for pid in [cri::NamespaceMode::Pod, cri::NamespaceMode::Container] {
        failures.extend(rt.block_on(pod_lifecycle(&c, pid)));
    }
    // Nothing left once the kubelet's calls returned (the shim's cleanup
    // is asynchronous: poll with a deadline).
    let left = poll(Duration::from_secs(20), || {
        let l = c.leftovers();
        l.is_empty().then_some(())
    });
    if left.is_none() {
        failures.extend(c.leftovers().into_iter().map(|l| format!("left: {l}")));
    }
    assert!(
        failures.is_empty(),
        "{} CRI check(s) failed with {handler}:\n{}\n--- containerd log tail ---\n{}",
        failures.len(),
        failures.join("\n"),
        c.log_tail()
    );
}

#[test]
#[ignore = "needs root"]
fn cri_pods_with_hako_runc() {
    need_root!();
    cri_pods("hako", 1);
}

/// The reference: the same calls through runc. A failure here is the
/// harness's or containerd's, not hako's.
#[test]
#[ignore = "needs root"]
fn cri_pods_with_runc() {
    need_root!();
    cri_pods("runc", 2);
}
