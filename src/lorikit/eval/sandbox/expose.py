"""Build the mount namespace from which bubblewrap starts when lorikit runs as root (stdlib only).

Run as root by ``identity.py`` (``python -I -c <this file's text> PLAN``), never imported by
lorikit. As root, bubblewrap runs as an unprivileged uid, and an unprivileged bubblewrap can only
bind folders that uid can reach; an interpreter under ``/root`` (pyenv, conda) cannot be reached.
So this process enters a private mount namespace (nothing here is seen by the host), mounts an
empty tmpfs (mode 0755) over each folder the uid cannot pass (PLAN's ``blockers``), recreates the
path of each needed folder in it and binds the real folder there (PLAN's ``expose``). The
folders themselves keep their modes: only the way to them opens. Then it prints ``ready`` and
waits for its stdin to close; the supervisor keeps the namespace alive through a descriptor of
``/proc/PID/ns/mnt`` and starts every sandbox in it (``nsenter``).
"""

import ctypes
import json
import os
import sys

_CLONE_NEWNS, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20000, 0x2, 0x4, 0x1000, 0x4000, 0x40000


def main():
    plan = json.loads(sys.argv[1])
    os.umask(0o022)  # the recreated paths must be passable whatever the evaluator's umask
    libc = ctypes.CDLL(None, use_errno=True)

    def check(ret, what):
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    # open every folder before a tmpfs hides the way to it
    fds = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in plan["expose"]}
    for blocker in plan["blockers"]:
        check(libc.mount(b"tmpfs", blocker.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=1m"),
              f"tmpfs on {blocker}")
    for path, fd in fds.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        check(libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, _MS_BIND | _MS_REC, None),
              f"bind {path}")
        os.close(fd)
    os.write(1, b"ready\n")  # to the supervisor's pipe, unbuffered
    sys.stdin.read()


if __name__ == "__main__":
    main()
