//! cgroup v1: one hierarchy per controller (or per group of co-mounted
//! controllers). Each file here turns one spec section into writes for one
//! controller, and reads that controller's stats.

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod pids;
