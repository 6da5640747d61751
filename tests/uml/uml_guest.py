"""Boot a user-mode Linux guest once and run scenario scripts inside it.

The guest is Debian's ``linux.uml`` (kernel 6.1, with ESP and VTI as modules) on the host's
root filesystem (hostfs), so Python, the checkout and its virtualenv are there. Its init
script (written here) mounts proc/sysfs/devtmpfs and a private /run (for ``ip netns``),
loads the modules the kernel datapath needs from a ``modprobe -d`` symlink tree, and then
serves commands: the host drops ``cmd-N.sh`` into a shared work directory, the guest runs
it and leaves ``out-N`` and ``rc-N`` next to it. ``halt`` powers the guest off.

Two host quirks are handled here:

- UML 6.1 saves a process's FPU state with PTRACE_GETREGSET(NT_X86_XSTATE) into a buffer
  sized for AVX, and restores it with SETREGSET, which newer host kernels refuse (EFAULT)
  when the host's XSAVE area is larger (AVX-512, AMX): the guest's init dies at once. A
  seccomp filter makes that GETREGSET probe fail in the UML process, so UML falls back to
  PTRACE_GETFPREGS/SETFPREGS (the 512-byte FXSAVE area).
- That area holds no AVX state, so guest programs must not use AVX: glibc is told so with
  GLIBC_TUNABLES and OpenSSL with OPENSSL_ia32cap (passed through the kernel command line
  into init's environment).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout; the guest sees the same paths
UML_BINARY = "linux.uml"
UML_MODULES = Path("/usr/lib/uml/modules")
# Loaded at boot (others load on demand through the kernel's modprobe helper); drbg needs
# sha512_generic first, or every SA add fails with "Kernel was unable to initialize
# cryptographic operations".
MODULES = [
    "esp4",
    "xfrm_user",
    "ip_vti",
    "veth",
    "tun",
    "cbc",
    "hmac",
    "sha1_generic",
    "sha256_generic",
    "sha512_generic",
    "aes_ti",
    "authenc",
    "authencesn",
    "seqiv",
    "echainiv",
    "gcm",
    "ghash_generic",
    "ctr",
    "drbg",
    "jitterentropy_rng",
    "nf_tables",
    # x_tables for the MSS clamp's iptables-legacy fallback (the guest's nf_tables has no
    # inet family). Loaded here because iptables' own module loading calls the modprobe
    # helper as "modprobe NAME -q", which the modprobe -d wrapper below does not take.
    "ip_tables",
    "ip6_tables",
    "iptable_mangle",
    "ip6table_mangle",
    "xt_tcpudp",
    "xt_tcpmss",
    "xt_TCPMSS",
    "xt_comment",
]
BOOT_TIMEOUT = 90.0
AVX_FEATURES = [
    "AVX",
    "AVX2",
    "AVX512F",
    "AVX512VL",
    "AVX512BW",
    "AVX512DQ",
    "AVX512CD",
    "AVX_Fast_Unaligned_Load",
    "AVX512_VNNI",
    "AVX_VNNI",
    "AVX512_BF16",
    "AVX512_FP16",
    "AVX512_IFMA",
    "AVX512_VBMI",
    "AVX512_VBMI2",
    "FMA",
    "F16C",
    "XSAVE",
    "XSAVEC",
]
GLIBC_TUNABLES = "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in AVX_FEATURES)
# OpenSSL: clear AVX/XSAVE/OSXSAVE in CPUID.1:ECX and every CPUID.7 extension.
OPENSSL_IA32CAP = "~0x1c00000000000000:~0xffffffffffffffff"

INIT_SCRIPT = """#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
W={work}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# What udev would add: nft -f - reads /dev/stdin.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
ip link set lo up
# The kernel's own module requests (crypto, netdev kinds, nft expressions) use this path.
printf '#!/bin/sh\nexec /sbin/modprobe -d %s/modtree "$@"\n' $W >$W/modprobe.sh
chmod +x $W/modprobe.sh
echo $W/modprobe.sh >/proc/sys/kernel/modprobe
for m in {modules}; do
    modprobe -d $W/modtree $m >>$W/boot.log 2>&1 || echo "module $m: failed" >>$W/boot.log
done
echo ready >$W/ready
n=0
while [ ! -e $W/halt ]; do
    if [ -e $W/cmd-$n.sh ]; then
        sh $W/cmd-$n.sh >$W/out-$n 2>&1
        echo $? >$W/rc-$n.tmp
        mv $W/rc-$n.tmp $W/rc-$n
        n=$((n + 1))
    else
        sleep 0.05
    fi
done
poweroff -f
"""


class UmlError(RuntimeError):
    """The guest did not boot, or a command did not finish in time."""


def uml_available() -> tuple[bool, str]:
    """Whether a UML guest can be booted here, and if not why."""
    if shutil.which(UML_BINARY) is None:
        return False, "needs user-mode Linux (Debian packages user-mode-linux and kmod)"
    if not UML_MODULES.is_dir() or not any(UML_MODULES.iterdir()):
        return False, f"no UML modules under {UML_MODULES}"
    if shutil.which("modprobe") is None:
        return False, "needs modprobe (Debian package kmod)"
    return True, ""


def _seccomp_deny_xstate_probe() -> None:
    """preexec_fn: make ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, ...) fail with EIO."""
    ld_abs, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET
    allow, deny_eio = 0x7FFF0000, 0x00050000 | 5  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO|EIO

    def stmt(code: int, k: int) -> bytes:
        return struct.pack("=HBBI", code, 0, 0, k)

    def skip_unless(k: int) -> bytes:  # if A == k: next instruction + 1, else next (allow)
        return struct.pack("=HBBI", jeq, 1, 0, k)

    # struct seccomp_data: nr @0, arch @4, args[0] @16, args[2] @32 (low words, x86-64 LE)
    program = b"".join(
        [
            stmt(ld_abs, 4),
            skip_unless(0xC000003E),  # AUDIT_ARCH_X86_64
            stmt(ret, allow),
            stmt(ld_abs, 0),
            skip_unless(101),  # __NR_ptrace
            stmt(ret, allow),
            stmt(ld_abs, 16),
            skip_unless(0x4204),  # PTRACE_GETREGSET
            stmt(ret, allow),
            stmt(ld_abs, 32),
            skip_unless(0x202),  # NT_X86_XSTATE
            stmt(ret, allow),
            stmt(ret, deny_eio),
        ]
    )
    buf = ctypes.create_string_buffer(program)

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@dataclass
class CommandResult:
    rc: int
    output: str

    def check(self, what: str = "command") -> str:
        if self.rc != 0:
            raise AssertionError(f"{what} failed in the UML guest (rc {self.rc}):\n{self.output}")
        return self.output


class UmlGuest:
    """One running guest. Use as a context manager; `run` executes a shell script inside."""

    def __init__(self, *, mem: str = "768M") -> None:
        self.work = Path(tempfile.mkdtemp(prefix="cgwd-uml-", dir="/var/tmp"))
        self._mem = mem
        self._proc: subprocess.Popen[bytes] | None = None
        self._n = 0

    def __enter__(self) -> UmlGuest:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boot(self) -> None:
        versions = sorted(p.name for p in UML_MODULES.iterdir())
        tree = self.work / "modtree" / "lib" / "modules"
        tree.mkdir(parents=True)
        for version in versions:
            (tree / version).symlink_to(UML_MODULES / version)
        init = self.work / "init.sh"
        init.write_text(INIT_SCRIPT.format(work=self.work, modules=" ".join(MODULES)))
        init.chmod(0o755)
        argv = [
            UML_BINARY,
            f"mem={self._mem}",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "con=null",
            "con0=fd:0,fd:1",
            f"GLIBC_TUNABLES={GLIBC_TUNABLES}",
            f"OPENSSL_ia32cap={OPENSSL_IA32CAP}",
        ]
        log = (self.work / "console.log").open("wb")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_seccomp_deny_xstate_probe,  # noqa: PLW1509 - before exec, no threads
            start_new_session=True,
            cwd=self.work,
        )
        log.close()
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (self.work / "ready").exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise UmlError(f"the UML guest did not boot:\n{self._tail()}")
            time.sleep(0.1)
        failed = [
            line
            for line in (self.work / "boot.log").read_text(errors="replace").splitlines()
            if line.endswith(": failed")
        ]
        if failed:
            raise UmlError("modules failed to load in the guest: " + "; ".join(failed))

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = (self.work / "console.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-30:])
        return "(no console log)"

    def run(self, script: str, *, timeout: float = 120.0) -> CommandResult:
        """Run ``script`` with /bin/sh in the guest; its combined output and exit status."""
        if self._proc is None or self._proc.poll() is not None:
            raise UmlError(f"the UML guest is not running:\n{self._tail()}")
        n = self._n
        self._n += 1
        tmp = self.work / f"cmd-{n}.tmp"
        tmp.write_text(f"cd {ROOT}\n{script}\n")
        tmp.rename(self.work / f"cmd-{n}.sh")
        rc_file = self.work / f"rc-{n}"
        deadline = time.monotonic() + timeout
        while not rc_file.exists():
            if self._proc.poll() is not None:
                raise UmlError(f"the UML guest died running command {n}:\n{self._tail()}")
            if time.monotonic() > deadline:
                partial = (self.work / f"out-{n}").read_text(errors="replace")
                self.close()
                raise UmlError(f"command {n} did not finish in {timeout:g} s:\n{partial}")
            time.sleep(0.05)
        output = (self.work / f"out-{n}").read_text(errors="replace")
        return CommandResult(int(rc_file.read_text().strip() or "255"), output)

    def python(self, args: str, *, timeout: float = 120.0) -> CommandResult:
        """Run this Python (the checkout's virtualenv) with ``args`` in the guest."""
        return self.run(f"{sys.executable} {args}", timeout=timeout)

    def close(self) -> None:
        """Power the guest off (killing it if it does not stop) and remove the work dir."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            (self.work / "halt").touch()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        self._proc = None
        if os.environ.get("CGWD_KEEP_UML_WORK") != "1":
            shutil.rmtree(self.work, ignore_errors=True)
