"""A seccomp filter (classic BPF) that bubblewrap installs on the sandboxed program.

It denies, with an error the program sees as an ordinary ``OSError``:

- creating processes: ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD`` (threads stay
  allowed); ``clone3`` answers ``ENOSYS`` so that the C library falls back to ``clone``, whose
  flags a filter can inspect. This is what contains fork bombs and double-forked daemons;
- new namespaces: ``clone`` with any ``CLONE_NEW*`` flag, also when processes are allowed;
- network sockets: ``socket(AF_INET | AF_INET6 | AF_NETLINK | AF_PACKET, ...)``;
- kernel attack surface a test program never needs (the core of Docker's default profile):
  ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``, ``kcmp``, ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, key management,
  ``mount``/``umount2``/``pivot_root``/``chroot``, ``unshare``/``setns``, module and kexec loading.

Any other architecture than the one the filter was built for is killed; on machines other than
x86_64 and aarch64 no filter is built (``build_filter`` returns None) and only the namespaces
and rlimits apply.
"""

from __future__ import annotations

import platform
import struct

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS, _EAFNOSUPPORT = 1, 38, 97
_CLONE_THREAD = 0x00010000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (CLONE_NEWTIME is 0x80: it
# shares its bit with CSIGNAL, the exit signal, so it is left to the missing capability)
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000
# offsets in struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64)
_NR, _ARCH, _ARG0 = 0, 4, 16

BLOCKED_SOCKET_FAMILIES = (2, 10, 16, 17)  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET

_DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "bpf",
           "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root", "chroot", "unshare",
           "setns", "kexec_load", "init_module", "finit_module")

# (AUDIT_ARCH_*, syscall numbers) from the kernel's unistd headers.
_ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "socket": 41, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "kcmp": 312, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
        "kexec_load": 246, "init_module": 175, "finit_module": 313}),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "socket": 198, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "pidfd_getfd": 438, "kcmp": 272, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 219, "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "pivot_root": 41,
        "chroot": 51, "unshare": 97, "setns": 268, "kexec_load": 104, "init_module": 105,
        "finit_module": 273}),
}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _errno(err: int) -> bytes:
    return _ins(_RET, 0x00050000 | err)  # SECCOMP_RET_ERRNO


def _rule(nr: int, block: list[bytes]) -> list[bytes]:
    """``if syscall == nr: <block>`` — the block must end in a return."""
    return [_ins(_JEQ, nr, 0, len(block)), *block]


def build_filter(allow_processes: bool = False, machine: str | None = None) -> bytes | None:
    """The filter as bwrap's ``--seccomp FD`` reads it (an array of ``struct sock_filter``)."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, nrs = arch
    prog = [_ins(_LD_W_ABS, _ARCH), _ins(_JEQ, audit_arch, 1, 0), _ins(_RET, _KILL_PROCESS),
            _ins(_LD_W_ABS, _NR)]
    if audit_arch == _ARCHES["x86_64"][0]:  # the x32 ABI reaches the same calls under other numbers
        prog += [_ins(_JGE, _X32_BIT, 0, 1), _errno(_EPERM)]
    for name in _DENIED:
        prog += _rule(nrs[name], [_errno(_EPERM)])
    prog += _rule(nrs["clone3"], [_errno(_ENOSYS)])
    families: list[bytes] = [_ins(_LD_W_ABS, _ARG0)]
    for family in BLOCKED_SOCKET_FAMILIES:
        families += [_ins(_JEQ, family, 0, 1), _errno(_EAFNOSUPPORT)]
    prog += _rule(nrs["socket"], [*families, _ins(_RET, _ALLOW)])
    if not allow_processes:
        for name in ("fork", "vfork"):
            if name in nrs:
                prog += _rule(nrs[name], [_errno(_EPERM)])
    # clone(flags, ...): no new namespace ever; a new process only when allowed (threads always)
    clone = [_ins(_LD_W_ABS, _ARG0), _ins(_JSET, _CLONE_NEW, 0, 1), _errno(_EPERM)]
    clone += [_ins(_JSET, _CLONE_THREAD, 0, 1), _ins(_RET, _ALLOW), _errno(_EPERM)] if not allow_processes else \
        [_ins(_RET, _ALLOW)]
    prog += _rule(nrs["clone"], clone)
    prog.append(_ins(_RET, _ALLOW))
    return b"".join(prog)
