//! cgroup v2 device control: there is no devices.allow file; instead a
//! BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup decides each
//! open/mknod. This file compiles the spec's rules into that program and
//! swaps it in.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::bpf::{self, Insn};
use crate::error::{Error, Result};

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
// access_type = (access << 16) | type.
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2; // BPF_DEVCG_ACC_READ
const ACC_WRITE: i32 = 4; // BPF_DEVCG_ACC_WRITE

// Registers: r1 = ctx on entry, then scratch; r2 type; r3 access;
// r4 major; r5 minor; r0 return value (1 allow, 0 deny).
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn wildcard_or(idx: usize, v: Option<i64>, what: &str) -> Result<Option<i32>> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=i32::MAX as i64).contains(&n) => Ok(Some(n as i32)),
        Some(n) => Err(Error::InvalidResource {
            field: format!("devices[{idx}]"),
            reason: format!("{what} {n} is out of range"),
        }),
    }
}

/// Compiles rules into a program where the *last* matching rule wins (the
/// v1 devices list semantics): rules are emitted in reverse order, each
/// returning its verdict when it matches; no match denies. A rule matching
/// everything ends the program, since the verifier rejects unreachable code.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    // Validate every rule (and render errors with the v1 checker's words).
    for (i, r) in rules.iter().enumerate() {
        crate::v1::devices::rule_string(i, r)?;
    }
    let mut prog = vec![
        Insn::ldx_w(R2, R1, 0),
        Insn::and32(R2, 0xffff),
        Insn::ldx_w(R3, R1, 0),
        Insn::rsh32(R3, 16),
        Insn::ldx_w(R4, R1, 4),
        Insn::ldx_w(R5, R1, 8),
    ];
    let mut complete = false;
    for (idx, r) in rules.iter().enumerate().rev() {
        let mut mask = 0;
        for c in r.access().as_deref().unwrap_or("rwm").chars() {
            mask |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => ACC_MKNOD,
            };
        }
        // Conditions as (insns before the jump, jump on mismatch).
        let mut conds: Vec<(Vec<Insn>, i32, u8)> = Vec::new();
        match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::B => conds.push((vec![], DEV_BLOCK, R2)),
            LinuxDeviceType::C => conds.push((vec![], DEV_CHAR, R2)),
            _ => {}
        }
        if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Match only if every requested access bit is in the rule.
            conds.push((
                vec![Insn::mov32_reg(R1, R3), Insn::and32(R1, !mask & 7)],
                0,
                R1,
            ));
        }
        if let Some(m) = wildcard_or(idx, r.major(), "major")? {
            conds.push((vec![], m, R4));
        }
        if let Some(m) = wildcard_or(idx, r.minor(), "minor")? {
            conds.push((vec![], m, R5));
        }
        let verdict = [Insn::mov64_imm(R0, i32::from(r.allow())), Insn::exit()];
        if conds.is_empty() {
            prog.extend(verdict);
            complete = true;
            break;
        }
        let mut block = Vec::new();
        let mut jumps = Vec::new();
        for (pre, imm, reg) in conds {
            block.extend(pre);
            jumps.push((block.len(), reg, imm));
            block.push(Insn::jne(reg, imm, 0));
        }
        block.extend(verdict);
        let len = block.len();
        for (j, reg, imm) in jumps {
            // On mismatch skip to the first instruction after this block.
            block[j] = Insn::jne(reg, imm, (len - j - 1) as i16);
        }
        prog.extend(block);
    }
    if !complete {
        prog.extend([Insn::mov64_imm(R0, 0), Insn::exit()]);
    }
    Ok(prog)
}

/// Loads the program, attaches it to `dir` with BPF_F_ALLOW_MULTI, then
/// detaches the programs that were attached before. Between the two steps
/// both old and new programs run (a device must pass all of them), so the
/// cgroup is never less restricted than either rule set. The program fd is
/// closed on return: the attachment holds its own reference, and the
/// program lives until detached or the cgroup is removed.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let insns = compile(rules)?;
    let path = dir.display().to_string();
    let cgroup: OwnedFd = std::fs::File::open(dir)
        .map_err(|source| bpf::BpfError::Open {
            path: path.clone(),
            source,
        })?
        .into();
    let old = bpf::query_device_progs(cgroup.as_fd(), &path)?;
    let prog = bpf::load_cgroup_device(&insns)?;
    bpf::attach(cgroup.as_fd(), prog.as_fd(), bpf::BPF_F_ALLOW_MULTI, &path)?;
    for id in old {
        bpf::detach_id(cgroup.as_fd(), id, &path)?;
    }
    Ok(())
}
