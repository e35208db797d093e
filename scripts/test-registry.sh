#!/usr/bin/env bash
# Test fixture for crates/image: a private docker-registry on loopback with
# images built from the busybox-static rootfs.
#
#   scripts/test-registry.sh start DIR [PORT]   (PORT defaults to 5000)
#   scripts/test-registry.sh stop DIR
#
# start installs docker-registry, skopeo and busybox-static with apt if they
# are missing, builds the images as OCI layouts under DIR, starts
# /usr/bin/docker-registry on 127.0.0.1:PORT with its config and storage in
# DIR (PID in DIR/registry.pid) and pushes:
#
#   busybox:latest  one layer, Docker schema 2     busybox:oci  same, OCI
#   layered:latest  three layers, Docker schema 2  layered:oci  same, OCI
#   owners:latest   busybox + a layer owned by 33 (/srv/www) and 1000
#                   (/home/user)                  owners:oci    same, OCI
#
# layered: layer 1 is the busybox rootfs with /etc/motd and /opt/data/old;
# layer 2 whites out /etc/motd (.wh.motd), makes /opt/data opaque
# (.wh..wh..opq) with /opt/data/new, and adds /etc/layer2; layer 3 adds
# /hello.txt. Also left in DIR for import/load tests:
#   rootfs/               the busybox root filesystem
#   busybox-export.tar    a `docker export`-style tarball of it
#   oci/busybox/          an OCI image layout (and busybox-oci.tar)
#   busybox-save.tar      a `docker save` archive (skopeo docker-archive)
# stop kills the PID in DIR/registry.pid, and nothing else.
#
# With HAKO_REGISTRY_HTPASSWD=FILE (bcrypt htpasswd) the registry requires
# basic auth, and HAKO_REGISTRY_CREDS=user:password is used to push.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
port=${3:-5000}

log() { echo "test-registry: $*" >&2; }

install_deps() { bash "$here/apt-install.sh" docker-registry skopeo busybox-static; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

arch() {
    case "$(uname -m)" in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;;
    esac
}

# Deterministic tar of a directory's contents, owned by root.
mktar() { tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -C "$1" -cf "$2" .; }

# make_layout OUT NAME TAR... : an OCI image layout with gzip layers.
make_layout() {
    local out=$1 name=$2; shift 2
    mkdir -p "$out/blobs/sha256"
    echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
    local diff_ids="" layers="" history="" t gz d
    for t in "$@"; do
        gz="$out/layer.tmp"
        gzip -n -c "$t" > "$gz"
        d=$(sha "$gz")
        mv "$gz" "$out/blobs/sha256/$d"
        diff_ids+="${diff_ids:+,}\"sha256:$(sha "$t")\""
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$(size "$out/blobs/sha256/$d")}"
        history+="${history:+,}{\"created\":\"2023-11-14T22:13:20Z\",\"created_by\":\"test-registry.sh $(basename "$t")\"}"
    done
    local cfg="$out/config.tmp"
    printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Cmd":["/bin/sh"],"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
        "$(arch)" "$diff_ids" "$history" > "$cfg"
    local cd; cd=$(sha "$cfg"); local cs; cs=$(size "$cfg")
    mv "$cfg" "$out/blobs/sha256/$cd"
    local man="$out/manifest.tmp"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$cd" "$cs" "$layers" > "$man"
    local md; md=$(sha "$man"); local ms; ms=$(size "$man")
    mv "$man" "$out/blobs/sha256/$md"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$md" "$ms" "$name" > "$out/index.json"
}

build_images() {
    local r="$dir/rootfs"
    rm -rf "$r" "$dir/layers" "$dir/oci"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,opt/data}
    chmod 1777 "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list-full); do
        [ "$applet" = bin/busybox ] && continue
        mkdir -p "$r/$(dirname "$applet")"
        ln -sf /bin/busybox "$r/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
    echo 'root:x:0:' > "$r/etc/group"
    echo 'welcome to the lower layer' > "$r/etc/motd"
    echo old > "$r/opt/data/old"

    local l="$dir/layers"
    mkdir -p "$l/2/etc" "$l/2/opt/data" "$l/3"
    mktar "$r" "$l/1.tar"
    : > "$l/2/etc/.wh.motd"
    echo 'added by layer 2' > "$l/2/etc/layer2"
    : > "$l/2/opt/data/.wh..wh..opq"
    echo new > "$l/2/opt/data/new"
    mktar "$l/2" "$l/2.tar"
    echo hello > "$l/3/hello.txt"
    mktar "$l/3" "$l/3.tar"
    # owners: a layer whose files belong to several users (the rootless
    # tests check a container shows them as they are).
    mkdir -p "$l/4/srv/www" "$l/4/home/user"
    echo page > "$l/4/srv/www/index.html"
    echo notes > "$l/4/home/user/notes"
    chown -R 33:33 "$l/4/srv/www"
    chown -R 1000:1000 "$l/4/home/user"
    tar --sort=name --numeric-owner --mtime=@1700000000 -C "$l/4" -cf "$l/4.tar" .

    make_layout "$dir/oci/busybox" busybox:latest "$l/1.tar"
    make_layout "$dir/oci/layered" layered:latest "$l/1.tar" "$l/2.tar" "$l/3.tar"
    make_layout "$dir/oci/owners" owners:latest "$l/1.tar" "$l/4.tar"
    cp "$l/1.tar" "$dir/busybox-export.tar"
    tar -C "$dir/oci/busybox" -cf "$dir/busybox-oci.tar" .
}

sk() { skopeo --insecure-policy copy -q "$@" >&2; }

push_images() {
    local reg="127.0.0.1:$port" img creds=()
    [ -n "${HAKO_REGISTRY_CREDS:-}" ] && creds=(--dest-creds "$HAKO_REGISTRY_CREDS")
    for img in busybox layered owners; do
        sk --dest-tls-verify=false "${creds[@]}" --format v2s2 "oci:$dir/oci/$img:$img:latest" "docker://$reg/$img:latest"
        sk --dest-tls-verify=false "${creds[@]}" --format oci "oci:$dir/oci/$img:$img:latest" "docker://$reg/$img:oci"
    done
    rm -f "$dir/busybox-save.tar"
    sk "oci:$dir/oci/busybox:busybox:latest" "docker-archive:$dir/busybox-save.tar:saved/busybox:latest"
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    install_deps
    if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
        log "already running (pid $(cat "$dir/registry.pid"))"
        return 0
    fi
    if port_open "$port"; then
        log "127.0.0.1:$port is already in use"
        exit 1
    fi
    build_images
    mkdir -p "$dir/storage"
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
health:
  storagedriver:
    enabled: false
EOF
    if [ -n "${HAKO_REGISTRY_HTPASSWD:-}" ]; then
        cat >> "$dir/config.yml" <<EOF
auth:
  htpasswd:
    realm: hako-test
    path: $HAKO_REGISTRY_HTPASSWD
EOF
    fi
    setsid /usr/bin/docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$dir/registry.pid"
    echo "$port" > "$dir/port"
    local i
    for i in $(seq 100); do
        port_open "$port" && break
        if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
            log "docker-registry exited:"; cat "$dir/registry.log" >&2
            rm -f "$dir/registry.pid"; exit 1
        fi
        sleep 0.1
    done
    port_open "$port" || { log "docker-registry did not listen on 127.0.0.1:$port"; stop; exit 1; }
    push_images
    log "registry on 127.0.0.1:$port (pid $(cat "$dir/registry.pid"))"
}

stop() {
    local f="$dir/registry.pid" pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
