"""The sandbox every autograded kernel runs in: bubblewrap (``bwrap``), the tool Flatpak
uses, with resource limits from ``prlimit``.

What the kernel sees:

* the system (``/usr`` and a few files of ``/etc``) and the Python environment, read-only;
  of the course only the :mod:`rlteach` package itself (an editable install does not
  expose the repository around it);
* its own submission's working folder, writable, and a private ``/tmp``;
* one folder shared with the grader, holding the kernel's IPC sockets (no TCP: the
  kernel has its own network namespace and no network) and the check records.

What it does not see: ``solutions/``, the release and its hidden tests, ``grading/``
(the gradebook, other students' submissions and feedback), the instructor's home, or
the grader's environment variables (it gets a short list, see :data:`PASSED_ENV`).

Limits, set before the kernel starts and not raisable from inside (it has no
capabilities): address space and CPU seconds (``prlimit``), and the number of processes
and threads: a ``pids`` cgroup of its own where the machine lets the grader make one,
else ``RLIMIT_NPROC`` (the grading user's tasks now plus a margin, shared with other
kernels of that user). Its processes live in their own PID namespace: none outlives the
kernel.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import rlteach

PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "RLTEACH_DEVICE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "CUDA_VISIBLE_DEVICES", "MPLBACKEND")
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "passwd", "group", "alternatives",
       "nsswitch.conf")
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), "
                "or grade without isolation with --unsafe-no-sandbox (rlteach-grade) / "
                "--GuardedExecute.sandbox=False (nbgrader)")


class SandboxUnavailable(RuntimeError):
    """Grading is asked to sandbox, and bubblewrap cannot run here."""


@dataclass(frozen=True)
class Limits:
    """What one graded kernel may use."""

    memory_gb: float = 8.0  # address space
    cpu_seconds: int = 3600  # CPU time of the whole kernel
    tasks: int = 512  # processes and threads of the kernel (without a pids cgroup: beyond the user's current ones)


def unavailable() -> str | None:
    """Why the sandbox cannot run here (``None`` when it can)."""
    if not sys.platform.startswith("linux"):
        return f"sandboxed grading needs Linux (bubblewrap); this is {sys.platform}: {INSTALL_HINT}"
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    if prlimit is None:
        return "prlimit (util-linux) is not installed: apt-get install util-linux"
    trial = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=30)
    if trial.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({trial.stderr.strip()[:200]}): {INSTALL_HINT}"
    return None


def _tasks_of_this_user() -> int:
    """Processes and threads of this real user now (what RLIMIT_NPROC counts)."""
    uid, count = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return count


def _readable() -> list[Path]:
    """The Python installation, the environment and the rlteach package (read-only)."""
    package = Path(rlteach.__file__).resolve().parent
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.prefix)}
    if not any(package.is_relative_to(p) for p in paths):
        paths.add(package)
    return sorted(paths)


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cgroup_owner(group: Path) -> int | None:
    """The PID of the grader that made a kernel cgroup ``rlteach-<pid>-<token>`` (None: another name)."""
    owner = group.name.split("-")[1] if group.name.count("-") >= 2 else ""
    return int(owner) if owner.isdigit() else None


def remove_orphaned_cgroups(parent: Path) -> list[Path]:
    """Empty and remove the kernel cgroups under ``parent`` whose grader has died.

    A grader killed outright (SIGKILL, a lost machine) cannot remove its kernels' cgroups,
    and a kernel it left running stays inside one. Each group's name carries its grader's
    PID, so the next grading clears them: what is left in them is killed, and they are
    removed. Returns the groups removed.
    """
    removed = []
    for group in parent.glob("rlteach-*-*"):
        owner = cgroup_owner(group)
        if owner is not None and not process_alive(owner) and os.access(group, os.W_OK):
            remove_cgroup(group)
            if not group.exists():
                removed.append(group)
    return removed


def pids_cgroup(limit: int) -> Path | None:
    """A new cgroup whose ``pids.max`` is ``limit`` (v2 or v1 hierarchy), or ``None`` where
    this user may not make one. Its name carries this process's PID, so that the groups of
    a grader that died are found and removed by the next one (:func:`remove_orphaned_cgroups`)."""
    name = f"rlteach-{os.getpid()}-{secrets.token_hex(6)}"
    root = Path("/sys/fs/cgroup")
    controllers = root / "cgroup.controllers"
    candidates = [root] if controllers.is_file() and "pids" in controllers.read_text().split() else []
    candidates.append(root / "pids")
    for parent in candidates:
        if parent.is_dir():
            remove_orphaned_cgroups(parent)
        try:
            group = parent / name
            group.mkdir()
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:
            group.rmdir()
    return None


def remove_cgroup(group: Path | None) -> None:
    """Kill what is left in a kernel's cgroup and remove it (waits up to 5 s)."""
    if group is None:
        return
    for _ in range(50):
        try:
            for pid in (group / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            group.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def command(workdir: Path, shared: Path, limits: Limits, cgroup: Path | None = None) -> list[str]:
    """The prefix that runs a kernel command inside the sandbox (see the module docstring).
    With ``cgroup`` (from :func:`pids_cgroup`) the kernel joins it before anything else."""
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if bwrap is None or prlimit is None:
        raise SandboxUnavailable(unavailable() or "bubblewrap is not installed")
    memory = int(limits.memory_gb * 2**30)
    join = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs")] if cgroup else []
    nproc = [] if cgroup else [f"--nproc={_tasks_of_this_user() + limits.tasks}"]
    args = [*join, prlimit, f"--as={memory}", f"--cpu={limits.cpu_seconds}", *nproc, "--",
            bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/sbin", "/sbin", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            ]
    if Path("/usr/lib64").exists():
        args += ["--symlink", "usr/lib64", "/lib64"]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _readable():
        args += ["--ro-bind", str(path), str(path)]
    for device in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(device), str(device)]
    args += ["--bind", str(workdir), str(workdir), "--bind", str(shared), str(shared), "--chdir", str(workdir)]
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(HOME="/tmp", MPLCONFIGDIR="/tmp/matplotlib", PYTHONDONTWRITEBYTECODE="1")
    for name in ("RLTEACH_GRADING_DUMP",):
        if name in os.environ:
            env[name] = os.environ[name]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    return args + ["--"]
