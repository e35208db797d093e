//! The descriptions CRIU gets of a container, from its plan, without root.

use super::*;

fn plan(linux: &str, mounts: &str) -> Plan {
    let json = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"/"}},
           "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
           "mounts":[{mounts}],
           "linux":{{"devices":[{{"path":"/dev/fuse","type":"c","major":10,"minor":229}}],
                     "maskedPaths":["/proc/kcore"]{linux}}}}}"#
    );
    let spec = serde_json::from_str(&json).unwrap();
    Plan::from_spec(&spec, Path::new("/bundle")).unwrap()
}

const MOUNTS: &str = r#"{"destination":"/proc","type":"proc","source":"proc"},
    {"destination":"/dev","type":"tmpfs","source":"tmpfs"},
    {"destination":"/dev/shm","type":"tmpfs","source":"shm"},
    {"destination":"/data","type":"bind","source":"/srv/data","options":["rbind"]},
    {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}"#;

fn pairs(v: &[ExtMountMap]) -> Vec<(&str, &str)> {
    v.iter().map(|m| (m.key.as_str(), m.val.as_str())).collect()
}

fn hierarchy(mountpoint: &str, v2: bool, subsys: &str, own: &str) -> hako_cgroups::Hierarchy {
    hako_cgroups::Hierarchy {
        mountpoint: mountpoint.into(),
        v2,
        subsys: subsys.into(),
        own: own.into(),
    }
}

#[test]
fn a_dump_names_host_mounts_by_destination() {
    let p = plan(r#","namespaces":[{"type":"mount"},{"type":"pid"}]"#, MOUNTS);
    let m = dump_mounts(
        &p,
        &[PathBuf::from("/sys/fs/cgroup")],
        &[PathBuf::from("/proc/kcore")],
    );
    assert_eq!(
        pairs(&m),
        [
            ("/data", "/data"),
            ("/sys/fs/cgroup", "/sys/fs/cgroup"),
            ("/proc/kcore", "/dev/null"),
            ("/dev/fuse", "/dev/fuse"),
        ]
    );
}

#[test]
fn a_restore_maps_the_names_to_what_provides_them_now() {
    let p = plan(r#","namespaces":[{"type":"mount"},{"type":"pid"}]"#, MOUNTS);
    let m = restore_mounts(
        &p,
        &[(
            PathBuf::from("/sys/fs/cgroup"),
            PathBuf::from("/sys/fs/cgroup/machine.slice/new"),
        )],
    );
    assert_eq!(
        pairs(&m),
        [
            ("/data", "/srv/data"),
            ("/sys/fs/cgroup", "/sys/fs/cgroup/machine.slice/new"),
            ("/dev/null", "/dev/null"),
            ("/dev/fuse", "/dev/fuse"),
        ]
    );
}

#[test]
fn cgroup_mounts_are_external_only_without_a_cgroup_namespace() {
    let unified = [hierarchy("/sys/fs/cgroup", true, "", "/a")];
    let hybrid = [
        hierarchy("/sys/fs/cgroup/memory", false, "memory", "/a"),
        hierarchy("/sys/fs/cgroup/unified", true, "", "/a"),
        hierarchy("/run/other", false, "name=x", "/"),
    ];
    let with_ns = plan(
        r#","namespaces":[{"type":"mount"},{"type":"cgroup"}]"#,
        MOUNTS,
    );
    assert!(cgroup_bind_dests(&with_ns, &unified).is_empty());
    let without = plan(r#","namespaces":[{"type":"mount"}]"#, MOUNTS);
    let d: Vec<PathBuf> = cgroup_bind_dests(&without, &unified)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(d, [PathBuf::from("/sys/fs/cgroup")]);
    let d: Vec<PathBuf> = cgroup_bind_dests(&without, &hybrid)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(
        d,
        [
            PathBuf::from("/sys/fs/cgroup/memory"),
            PathBuf::from("/sys/fs/cgroup/unified")
        ]
    );
    assert_eq!(
        own_dir(&hybrid[0]),
        PathBuf::from("/sys/fs/cgroup/memory/a")
    );
}

#[test]
fn joined_network_and_pid_namespaces_are_external() {
    let p = plan(
        r#","namespaces":[{"type":"mount"},{"type":"pid","path":"/run/p"},
            {"type":"network","path":"/run/netns/x"},{"type":"ipc","path":"/run/i"}]"#,
        "",
    );
    let k: Vec<(NsKind, &Path)> = external_kinds(&p);
    assert_eq!(
        k,
        [
            (NsKind::Network, Path::new("/run/netns/x")),
            (NsKind::Pid, Path::new("/run/p"))
        ]
    );
    assert_eq!(ns_key(NsKind::Network), "extRootNetNS");
    assert_eq!(ns_key(NsKind::Pid), "extRootPidNS");
}

#[test]
fn stdio_from_outside_is_inherited() {
    let d = [
        "file[19:4]".to_string(),
        "pipe:[4242]".to_string(),
        "/dev/pts/0".to_string(),
    ];
    let i = stdio_inherits(&d);
    let got: Vec<(&str, i32)> = i.iter().map(|x| (x.key.as_str(), x.fd)).collect();
    assert_eq!(got, [("file[19:4]", 0), ("pipe:[4242]", 1)]);
}

#[test]
fn files_on_mounts_the_container_cannot_see_are_external() {
    let visible = [100, 101];
    // The host's /dev/null (mount 25): CRIU's external id, in hex.
    assert_eq!(
        stdio_entry("/dev/null", Some(25), 4, &visible),
        "file[19:4]"
    );
    // A file inside the container, a pipe, a socket: as readlink says.
    assert_eq!(stdio_entry("/log", Some(101), 77, &visible), "/log");
    assert_eq!(
        stdio_entry("pipe:[4242]", Some(14), 4242, &visible),
        "pipe:[4242]"
    );
    assert_eq!(
        stdio_entry("socket:[9]", Some(9), 9, &visible),
        "socket:[9]"
    );
    // A closed fd.
    assert_eq!(stdio_entry("", None, 0, &visible), "");
}

#[test]
fn cgroup_roots_cover_every_controller() {
    let r = cgroup_roots("12:cpu,cpuacct:/hako/x\n1:name=systemd:/hako/x\n0::/hako/x\n");
    let got: Vec<(&str, &str)> = r
        .iter()
        .map(|c| (c.ctrl.as_deref().unwrap(), c.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("cpu", "/hako/x"),
            ("cpuacct", "/hako/x"),
            ("name=systemd", "/hako/x"),
            ("", "/hako/x"),
        ]
    );
}

#[test]
fn manage_cgroups_modes_are_runcs() {
    assert_eq!(cg_mode(None).unwrap(), CgMode::Default);
    assert_eq!(cg_mode(Some("soft")).unwrap(), CgMode::Soft);
    assert_eq!(cg_mode(Some("ignore")).unwrap(), CgMode::Ignore);
    let e = cg_mode(Some("hard")).unwrap_err().to_string();
    assert!(e.contains("--manage-cgroups-mode \"hard\""), "{e}");
}
