# Sourced by the benchmarks that run crun (1.8), which refuses to run while
# the cgroup2 hierarchy owns hugetlb, as it does at boot on this hybrid
# host: hugetlb gets a v1 hierarchy of its own at /sys/fs/cgroup/hugetlb.
# It stays mounted afterwards: unmounting does not give the controller
# back to cgroup2 (the kernel keeps the emptied v1 hierarchy, unmounted),
# and containerd's and dockerd's cgroup v1 code then fail on a controller
# with a hierarchy but no mount (`cannot find cgroup mount destination`:
# no container metrics). Mounted, every runtime and client works.
if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi
