"""A real, single-node SLURM on this machine, for tests of the SLURM path.

:func:`ensure_slurm` installs (Debian/Ubuntu ``apt-get``) and starts
``munged``, ``slurmctld`` and ``slurmd`` with a minimal configuration in which
this machine is the only node, so that ``dask_jobqueue.SLURMCluster`` submits
real ``sbatch`` jobs. It needs root, and is meant for throw-away test machines
and CI runners, never for a facility's cluster.

The daemons are left running when the Python process ends, so that the next
test session finds them up and :func:`ensure_slurm` returns at once;
:func:`stop_slurm` shuts them down (``scontrol shutdown``, then munge's own
PID file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SlurmError", "SlurmInfo", "ensure_slurm", "slurm_conf", "stop_slurm"]

#: Packages that give the daemons and the client commands.
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
#: First line of a configuration written here; other files are never overwritten.
MARKER = "# written by cdiplatform.testing.slurm"
#: Node states in which the node accepts jobs.
READY_STATES = frozenset({"idle", "mixed", "allocated", "completing"})

CONF_PATH = Path("/etc/slurm/slurm.conf")
STATE_DIR = Path("/var/spool/cdip-slurm")
LOCK_PATH = Path("/tmp/cdip-slurm.lock")
MUNGE_LOG = Path("/var/log/munge/munged.log")


class SlurmError(RuntimeError):
    """SLURM could not be installed or started; the message holds the daemons' logs."""


@dataclass(frozen=True)
class SlurmInfo:
    """The single-node SLURM that :func:`ensure_slurm` made ready.

    Attributes
    ----------
    node : str
        Node name (the short host name).
    cpus : int
        CPUs the node offers.
    memory_mb : int
        Memory the node offers, in MiB (``RealMemory``).
    partition : str
        The default partition.
    conf : pathlib.Path
        The ``slurm.conf`` in use.
    log_dir : pathlib.Path
        Where ``slurmctld.log`` and ``slurmd.log`` are.
    started : bool
        Whether this call started the daemons (False: they were already up).
    """

    node: str
    cpus: int
    memory_mb: int
    partition: str
    conf: Path
    log_dir: Path
    started: bool


def slurm_conf(
    *,
    node: str,
    address: str,
    cpus: int,
    memory_mb: int,
    state_dir: Path = STATE_DIR,
    partition: str = "debug",
) -> str:
    """The text of a minimal ``slurm.conf`` for one node that is also the controller.

    Parameters
    ----------
    node : str
        Node and controller name; must be the short host name so that
        ``slurmd`` recognises itself.
    address : str
        IP address the daemons talk on.
    cpus : int
        CPUs of the node.
    memory_mb : int
        ``RealMemory`` of the node in MiB; jobs asking ``--mem`` above it are refused.
    state_dir : pathlib.Path
        Spool, state, PID and log files go under it.
    partition : str
        Name of the single, default partition.
    """
    s = Path(state_dir)
    return f"""{MARKER}
# A single-node test cluster; not for production use.
ClusterName=cdiptest
SlurmctldHost={node}({address})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={s / "ctld"}
SlurmdSpoolDir={s / "d"}
SlurmctldPidFile={s / "slurmctld.pid"}
SlurmdPidFile={s / "slurmd.pid"}
SlurmctldLogFile={s / "slurmctld.log"}
SlurmdLogFile={s / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=5
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
NodeName={node} NodeAddr={address} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def ensure_slurm(*, timeout: float = 60.0, install: bool = True) -> SlurmInfo:
    """Make a real single-node SLURM run on this machine and wait for its node.

    Idempotent: when the controller answers and the node is up, returns at once.
    Otherwise installs the packages if missing (``apt-get install``, with
    ``apt-get update`` only when the package lists lack them), creates the
    munge key if missing, writes ``/etc/slurm/slurm.conf`` (only if absent or
    written by this module), starts ``munged``, ``slurmctld`` and ``slurmd``
    and waits until ``sinfo`` shows the node idle.

    Parameters
    ----------
    timeout : float
        Seconds to wait for the node to become idle.
    install : bool
        Install missing packages with ``apt-get`` (needs root and a package
        mirror); if False, missing commands are an error.

    Returns
    -------
    SlurmInfo

    Raises
    ------
    SlurmError
        Not root, packages missing or not installable, a foreign
        ``slurm.conf``, or the node not idle in time (the message carries
        the tails of the daemons' logs).
    """
    node = socket.gethostname().split(".")[0]
    with _lock():
        state = _node_state(node)
        if state in READY_STATES and _munge_works():
            return _info(node, started=False)
        if os.geteuid() != 0:
            raise SlurmError("ensure_slurm needs root to install and start munged, slurmctld and slurmd")
        _install(install)
        _ensure_munge()
        address = _address(node)
        cpus = os.cpu_count() or 1
        memory_mb = _real_memory_mb()
        _write_conf(slurm_conf(node=node, address=address, cpus=cpus, memory_mb=memory_mb))
        for sub in ("ctld", "d"):
            (STATE_DIR / sub).mkdir(parents=True, exist_ok=True)
        if not _ctld_up():
            # -c: start from a clean state, forgetting jobs of an earlier test run.
            _run(["slurmctld", "-c"], what="slurmctld")
        if _run_quiet(["scontrol", "show", "slurmd"]) != 0:
            _run(["slurmd"], what="slurmd")
        _wait_idle(node, timeout)
        return _info(node, started=True)


def stop_slurm(*, timeout: float = 30.0) -> None:
    """Shut down the daemons that :func:`ensure_slurm` started.

    Runs ``scontrol shutdown`` (controller and node daemon) and stops ``munged``
    through its PID file. Does nothing when SLURM is not running.
    """
    if shutil.which("scontrol") and _ctld_up():
        _run_quiet(["scontrol", "shutdown"])
        deadline = time.monotonic() + timeout
        while _ctld_up() and time.monotonic() < deadline:
            time.sleep(0.5)
    pidfile = Path("/run/munge/munged.pid")
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pidfile.read_text().strip()), 15)


# -- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialise concurrent callers (parallel test sessions) on one machine."""
    with open(LOCK_PATH, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_quiet(cmd: list[str], *, timeout: float = 20.0, input: bytes | None = None) -> int:
    try:
        return subprocess.run(
            cmd, input=input, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def _run(cmd: list[str], *, what: str, timeout: float = 120.0, env: dict | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{what}: {' '.join(cmd)} failed: {exc}\n{_logs()}") from exc
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-2000:]
        raise SlurmError(f"{what}: {' '.join(cmd)} exited {proc.returncode}:\n{out}\n{_logs()}")
    return proc.stdout


def _node_state(node: str) -> str | None:
    """``sinfo``'s state of the node (``idle``, ``down*``...), None if no answer."""
    if shutil.which("sinfo") is None or not CONF_PATH.exists():
        return None
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-n", node, "-o", "%T"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or not lines:
        return None
    return lines[0].strip().lower()


def _ctld_up() -> bool:
    if shutil.which("scontrol") is None or not CONF_PATH.exists():
        return False
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in proc.stdout


def _munge_works() -> bool:
    if shutil.which("munge") is None or shutil.which("unmunge") is None:
        return False
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if cred.returncode != 0:
        return False
    return _run_quiet(["unmunge"], input=cred.stdout) == 0


def _install(install: bool) -> None:
    needed = ("slurmctld", "slurmd", "sinfo", "sbatch", "munged")
    if all(shutil.which(c) for c in needed):
        return
    if not install:
        missing = [c for c in needed if not shutil.which(c)]
        raise SlurmError(f"SLURM commands missing ({', '.join(missing)}) and install=False")
    if shutil.which("apt-get") is None:
        raise SlurmError("SLURM is not installed and there is no apt-get to install it with")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if _run_quiet(["apt-cache", "show", *PACKAGES]) != 0:
        _run(["apt-get", "update"], what="apt-get update", timeout=300, env=env)
    _run(cmd, what="apt-get install", timeout=600, env=env)


def _ensure_munge() -> None:
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        if shutil.which("mungekey"):
            _run(["mungekey", "--create", "--keyfile", str(key)], what="mungekey")
        else:
            key.write_bytes(os.urandom(1024))
    as_munge = _user_exists("munge")
    for d in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge")):
        d.mkdir(parents=True, exist_ok=True)
        if as_munge:
            shutil.chown(d, "munge", "munge")
    if as_munge:
        shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    if _munge_works():
        return
    cmd = ["runuser", "-u", "munge", "--", "munged"] if as_munge else ["munged", "--force"]
    _run(cmd, what="munged")
    deadline = time.monotonic() + 10
    while not _munge_works():
        if time.monotonic() > deadline:
            raise SlurmError(f"munged started but does not answer\n{_logs()}")
        time.sleep(0.2)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _address(node: str) -> str:
    try:
        return socket.gethostbyname(node)
    except OSError:
        return "127.0.0.1"


def _real_memory_mb() -> int:
    """MemTotal in MiB less a margin, so that slurmd never finds less than configured."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) // 1024
                return max(256, total - max(512, total // 20))
    raise SlurmError("MemTotal not found in /proc/meminfo")


def _write_conf(text: str) -> None:
    if CONF_PATH.exists():
        old = CONF_PATH.read_text()
        if not old.startswith(MARKER):
            raise SlurmError(
                f"{CONF_PATH} exists and was not written by cdiplatform.testing.slurm; "
                "refusing to overwrite a real SLURM configuration"
            )
        if old == text:
            return
    CONF_PATH.parent.mkdir(parents=True, exist_ok=True)
    CONF_PATH.write_text(text)


def _wait_idle(node: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    resumed = False
    state = None
    while time.monotonic() < deadline:
        state = _node_state(node)
        if state == "idle":
            return
        if state and state.startswith(("down", "drain")) and not resumed:
            _run_quiet(["scontrol", "update", f"nodename={node}", "state=resume"])
            resumed = True
        time.sleep(0.5)
    raise SlurmError(f"SLURM node {node!r} not idle after {timeout:.0f} s (state {state!r})\n{_logs()}")


def _info(node: str, *, started: bool) -> SlurmInfo:
    cpus, memory_mb, partition = os.cpu_count() or 1, 0, "debug"
    for line in CONF_PATH.read_text().splitlines():
        if line.startswith("NodeName="):
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            cpus = int(fields.get("CPUs", cpus))
            memory_mb = int(fields.get("RealMemory", 0))
        elif line.startswith("PartitionName="):
            partition = line.split()[0].split("=", 1)[1]
    return SlurmInfo(
        node=node, cpus=cpus, memory_mb=memory_mb, partition=partition,
        conf=CONF_PATH, log_dir=STATE_DIR, started=started,
    )


def _logs(lines: int = 15) -> str:
    out = []
    for path in (STATE_DIR / "slurmctld.log", STATE_DIR / "slurmd.log", MUNGE_LOG):
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        else:
            out.append(f"--- {path}: no log")
    return "\n".join(out)
