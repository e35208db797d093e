//! Just enough eBPF to run a cgroup v2 device filter: an instruction encoder
//! and the four bpf(2) commands we need, called through the raw syscall.
//!
//! Why hand-rolled: the program is ~6 instructions per device rule built from
//! a handful of opcodes, so a BPF library (libbpf, aya) would be a large
//! dependency, a C toolchain or a build-time compiler for very little. runc
//! (`libcontainer/cgroups/devices/devicefilter.go`) and crun (`ebpf.c`) make
//! the same choice. All `unsafe` of the crate's bpf use lives in this file.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const BPF_ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const BPF_JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub(crate) const BPF_CGROUP_DEVICE: u32 = 6;
pub(crate) const BPF_F_ALLOW_MULTI: u32 = 2;

/// One `struct bpf_insn`: code, dst:4/src:4 register nibbles, off, imm.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // The C bitfield `dst_reg:4, src_reg:4` is allocated from the least
        // significant bit on little-endian targets and from the most
        // significant on big-endian ones.
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0xf);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0xf);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
    /// dst = *(u32 *)(src + off)
    pub fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX_MEM_W, dst, src, off, 0)
    }
    /// dst = (u32)dst & imm
    pub fn and32(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU32_AND_K, dst, 0, 0, imm)
    }
    /// dst = (u32)dst >> imm
    pub fn rsh32(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU32_RSH_K, dst, 0, 0, imm)
    }
    /// dst = (u32)src
    pub fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU32_MOV_X, dst, src, 0, 0)
    }
    /// dst = imm
    pub fn mov64_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64_MOV_K, dst, 0, 0, imm)
    }
    /// if dst != imm goto pc + 1 + off
    pub fn jne(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP_JNE_K, dst, 0, off, imm)
    }
    pub fn exit() -> Insn {
        Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0)
    }
    pub fn is_jump(&self) -> bool {
        self.code == BPF_JMP_JNE_K
    }
    pub fn off(&self) -> i16 {
        self.off
    }
    pub fn imm(&self) -> i32 {
        self.imm
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf(BPF_PROG_LOAD) of a {insns}-instruction cgroup device program: {source}{}", if log.is_empty() { String::new() } else { format!("; verifier: {log}") })]
    Load {
        insns: usize,
        source: io::Error,
        log: String,
    },
    #[error("bpf(BPF_PROG_QUERY) of device programs on {path}: {source}")]
    Query { path: String, source: io::Error },
    #[error("bpf(BPF_PROG_ATTACH) device program to {path}: {source}")]
    Attach { path: String, source: io::Error },
    #[error("bpf(BPF_PROG_GET_FD_BY_ID) program {id}: {source}")]
    GetFd { id: u32, source: io::Error },
    #[error("bpf(BPF_PROG_DETACH) program {id} from {path}: {source}")]
    Detach {
        id: u32,
        path: String,
        source: io::Error,
    },
    #[error("open cgroup directory {path}: {source}")]
    Open { path: String, source: io::Error },
}

/// Calls bpf(2) with `attr`, a `#[repr(C)]` prefix of `union bpf_attr`.
/// The kernel zero-fills the part of the union beyond `size_of::<T>()`.
///
/// # Safety
/// `T` must match the kernel's layout for `cmd`, and every pointer stored
/// in `attr` must be valid for the access the kernel makes during the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: forwarded from the caller; `attr` is a live, exclusive borrow
    // of exactly size_of::<T>() bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program. On failure the load is
/// retried with the verifier log enabled so the error says why.
pub(crate) fn load_cgroup_device(insns: &[Insn]) -> Result<OwnedFd, BpfError> {
    let license = c"Apache";
    let try_load = |log: Option<&mut Vec<u8>>| -> io::Result<OwnedFd> {
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"hako_dev\0");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        // SAFETY: ProgLoadAttr mirrors the BPF_PROG_LOAD part of bpf_attr;
        // `insns`, `license` and the log buffer outlive the call and the
        // kernel writes at most log_size bytes to the buffer.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr)? };
        // SAFETY: on success BPF_PROG_LOAD returns a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    match try_load(None) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = try_load(Some(&mut buf));
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Err(BpfError::Load {
                insns: insns.len(),
                source,
                log: String::from_utf8_lossy(&buf[..end]).trim().to_string(),
            })
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the device programs attached directly to the cgroup.
pub(crate) fn query_device_progs(cgroup: BorrowedFd<'_>, path: &str) -> Result<Vec<u32>, BpfError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: QueryAttr mirrors the BPF_PROG_QUERY part of bpf_attr; the
    // kernel writes at most prog_cnt ids into `ids`, which outlives the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }.map_err(|source| BpfError::Query {
        path: path.to_string(),
        source,
    })?;
    ids.truncate((attr.prog_cnt as usize).min(64));
    Ok(ids)
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

pub(crate) fn attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
    path: &str,
) -> Result<(), BpfError> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    // SAFETY: AttachAttr mirrors the BPF_PROG_ATTACH part of bpf_attr and
    // holds no pointers; both fds are borrowed, hence open.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map_err(|source| BpfError::Attach {
        path: path.to_string(),
        source,
    })?;
    Ok(())
}

pub(crate) fn detach_id(cgroup: BorrowedFd<'_>, id: u32, path: &str) -> Result<(), BpfError> {
    #[repr(C)]
    #[derive(Default)]
    struct GetFdAttr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut get = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: GetFdAttr mirrors the BPF_PROG_GET_FD_BY_ID part of bpf_attr
    // and holds no pointers.
    let fd = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut get) }
        .map_err(|source| BpfError::GetFd { id, source })?;
    // SAFETY: on success the kernel returned a new fd that we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: AttachAttr mirrors the BPF_PROG_DETACH part of bpf_attr and
    // holds no pointers; both fds are open for the duration of the call.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map_err(|source| BpfError::Detach {
        id,
        path: path.to_string(),
        source,
    })?;
    Ok(())
}
