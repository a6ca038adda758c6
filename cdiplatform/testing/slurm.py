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

The node offers the generic resource ``gpu`` (:data:`GPUS` of them, on empty
fake device files), so that jobs asking ``--gres=gpu:1`` start on a machine
without GPUs; their workers may declare the Dask resource ``GPU=1`` to test
where torch tasks go. It also declares at least :data:`MIN_CPUS` CPUs whatever
the machine has (``SlurmdParameters=config_overrides``), so that tests can run
several one-CPU jobs at once on a two-core machine: a job's threads are set by
its own ``cores``, never by the node. When the configuration this module wrote
earlier differs from the current one (an older version without the GRES, say),
:func:`ensure_slurm` rewrites it and restarts the daemons, keeping running jobs.
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

__all__ = ["SlurmError", "SlurmInfo", "cluster_file_for_test_node", "ensure_slurm", "gres_conf", "slurm_conf",
           "stop_slurm"]

#: Packages that give the daemons and the client commands.
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
#: First line of a configuration written here; other files are never overwritten.
MARKER = "# written by cdiplatform.testing.slurm"
#: ``gpu`` generic resources of the test node (``--gres=gpu:1`` jobs), on fake device files: no GPU behind.
GPUS = 2
#: The node declares at least this many CPUs (tests start several one-CPU jobs at once).
MIN_CPUS = 8
#: Node states in which the node accepts jobs.
READY_STATES = frozenset({"idle", "mixed", "allocated", "completing"})

CONF_PATH = Path("/etc/slurm/slurm.conf")
GRES_PATH = Path("/etc/slurm/gres.conf")
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
        Whether this call started (or restarted) the daemons (False: they were already up as configured).
    gpus : int
        Count of the node's generic resource ``gpu`` (0 when its configuration offers none).
    """

    node: str
    cpus: int
    memory_mb: int
    partition: str
    conf: Path
    log_dir: Path
    started: bool
    gpus: int = 0


def slurm_conf(
    *,
    node: str,
    address: str,
    cpus: int,
    memory_mb: int,
    state_dir: Path = STATE_DIR,
    partition: str = "debug",
    gpus: int = GPUS,
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
    gpus : int
        Count of the node's generic resource ``gpu`` (on fake devices: :func:`gres_conf`); 0 for none.
    """
    s = Path(state_dir)
    gres = f" Gres=gpu:{gpus}" if gpus else ""
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
{"GresTypes=gpu" if gpus else "# no generic resources"}
NodeName={node} NodeAddr={address} CPUs={cpus} RealMemory={memory_mb}{gres} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(*, node: str, gpus: int = GPUS, device_dir: Path = STATE_DIR) -> str:
    """The text of ``gres.conf``: ``gpus`` generic resources ``gpu`` on ``node``, on fake device files.

    SLURM drops a ``gpu`` GRES without ``File`` (22.05: "Removing file-less GPU"),
    so each one names an empty file ``<device_dir>/fake-gpu<i>`` (made by
    :func:`ensure_slurm`); nothing ever opens them.
    """
    files = f"{Path(device_dir) / 'fake-gpu'}[0-{gpus - 1}]" if gpus > 1 else f"{Path(device_dir) / 'fake-gpu'}0"
    return f"{MARKER}\nNodeName={node} Name=gpu File={files}\n"


def _fake_devices(gpus: int = GPUS, device_dir: Path = STATE_DIR) -> None:
    for i in range(gpus):
        (Path(device_dir) / f"fake-gpu{i}").touch()


def ensure_slurm(*, timeout: float = 60.0, install: bool = True) -> SlurmInfo:
    """Make a real single-node SLURM run on this machine and wait for its node.

    Idempotent and quick: when the controller answers, the node is up and the
    configuration is the one this module writes now, returns at once.
    Otherwise installs the packages if missing (``apt-get install``, with
    ``apt-get update`` only when the package lists lack them), creates the
    munge key if missing, writes ``/etc/slurm/slurm.conf`` and
    ``/etc/slurm/gres.conf`` (only if absent or written by this module),
    starts ``munged``, ``slurmctld`` and ``slurmd`` and waits until ``sinfo``
    shows the node ready. Daemons already running with an older configuration
    of this module are restarted (``scontrol shutdown``, then started without
    ``-c``, so that running jobs are kept). A configuration this module did
    not write is never touched: a running SLURM with one is used as it is.

    Parameters
    ----------
    timeout : float
        Seconds to wait for the node to become ready.
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
        ``slurm.conf`` on a SLURM that does not run, or the node not ready in
        time (the message carries the tails of the daemons' logs).
    """
    node = socket.gethostname().split(".")[0]
    with _lock():
        wanted = _wanted_files(node)
        foreign = CONF_PATH.exists() and not CONF_PATH.read_text().startswith(MARKER)
        current = foreign or all(path.exists() and path.read_text() == text for path, text in wanted.items())
        if current and _node_state(node) in READY_STATES and _munge_works():
            return _info(node, started=False)
        if os.geteuid() != 0:
            raise SlurmError("ensure_slurm needs root to install and start munged, slurmctld and slurmd")
        _install(install)
        _ensure_munge()
        for sub in ("ctld", "d"):
            (STATE_DIR / sub).mkdir(parents=True, exist_ok=True)
        _fake_devices()
        changed = _write_files(wanted)
        restarted = changed and _ctld_up()
        if restarted:
            _shutdown(timeout)
        if not _ctld_up():
            # -c on a first start: a clean state, forgetting jobs of an earlier boot; a restart keeps them.
            _run(["slurmctld"] if restarted else ["slurmctld", "-c"], what="slurmctld")
        if _run_quiet(["scontrol", "show", "slurmd"]) != 0:
            _run(["slurmd"], what="slurmd")
        _wait_ready(node, timeout)
        return _info(node, started=True)


def stop_slurm(*, timeout: float = 30.0) -> None:
    """Shut down the daemons that :func:`ensure_slurm` started.

    Runs ``scontrol shutdown`` (controller and node daemon) and stops ``munged``
    through its PID file. Does nothing when SLURM is not running.
    """
    if shutil.which("scontrol") and _ctld_up():
        _shutdown(timeout)
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


def _wanted_files(node: str) -> dict[Path, str]:
    """The configuration files this module writes for this machine, with their text."""
    cpus = max(os.cpu_count() or 1, MIN_CPUS)
    conf = slurm_conf(node=node, address=_address(node), cpus=cpus, memory_mb=_real_memory_mb())
    return {CONF_PATH: conf, GRES_PATH: gres_conf(node=node)}


def _write_files(wanted: dict[Path, str]) -> bool:
    """Write the files that differ (never one this module did not write); whether any changed."""
    for path in wanted:
        if path.exists() and not path.read_text().startswith(MARKER):
            raise SlurmError(
                f"{path} exists and was not written by cdiplatform.testing.slurm; "
                "refusing to overwrite a real SLURM configuration"
            )
    changed = False
    for path, text in wanted.items():
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed = True
    return changed


def _shutdown(timeout: float) -> None:
    """``scontrol shutdown`` (controller and node daemon), waiting until both are gone."""
    _run_quiet(["scontrol", "shutdown"])
    deadline = time.monotonic() + timeout
    while (_ctld_up() or _pid_alive(STATE_DIR / "slurmd.pid")) and time.monotonic() < deadline:
        time.sleep(0.3)


def _pid_alive(pidfile: Path) -> bool:
    """Whether the process of a PID file runs (a zombie that nobody reaped does not)."""
    try:
        stat = Path(f"/proc/{int(pidfile.read_text().strip())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_ready(node: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    resumed = False
    state = None
    while time.monotonic() < deadline:
        state = _node_state(node)
        if state in READY_STATES:  # idle, or running jobs kept across a restart
            return
        if state and state.startswith(("down", "drain")) and not resumed:
            _run_quiet(["scontrol", "update", f"nodename={node}", "state=resume"])
            resumed = True
        time.sleep(0.5)
    raise SlurmError(f"SLURM node {node!r} not ready after {timeout:.0f} s (state {state!r})\n{_logs()}")


def _info(node: str, *, started: bool) -> SlurmInfo:
    cpus, memory_mb, partition, gpus = os.cpu_count() or 1, 0, "debug", 0
    for line in CONF_PATH.read_text().splitlines():
        if line.startswith("NodeName="):
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            cpus = int(fields.get("CPUs", cpus))
            memory_mb = int(fields.get("RealMemory", 0))
            for gres in fields.get("Gres", "").split(","):
                name, _, count = gres.partition(":")
                if name == "gpu" and count.isdigit():
                    gpus = int(count)
        elif line.startswith("PartitionName="):
            partition = line.split()[0].split("=", 1)[1]
    return SlurmInfo(
        node=node, cpus=cpus, memory_mb=memory_mb, partition=partition,
        conf=CONF_PATH, log_dir=STATE_DIR, started=started, gpus=gpus,
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


def cluster_file_for_test_node(source: Path, target: Path, *, adapt: tuple[int, int] | None = None, **keys: object) -> Path:
    """A copy of a shipped SLURM cluster file (``jobs/slurm.yaml``...) fit for the single-node test SLURM.

    The copy talks on loopback (``interface: lo``), asks 1 CPU and 1 GiB per
    job, a 10-minute walltime, logs beside ``target`` and drops the
    ``--lifetime`` options; ``keys`` (``jobqueue.slurm`` keys with ``_`` for
    ``-``) and ``adapt`` (``cdiplatform.adapt``) override further. Everything
    else (the GRES, the worker resources) stays as shipped.

    Returns
    -------
    pathlib.Path
        ``target``.
    """
    import yaml

    data = yaml.safe_load(Path(source).read_text())
    conf = data["jobqueue"]["slurm"]
    args = list(conf.get("worker-extra-args") or [])
    for flag in ("--lifetime", "--lifetime-stagger"):
        while flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    conf.update({"interface": "lo", "cores": 1, "memory": "1GiB", "walltime": "00:10:00",
                 "log-directory": str(Path(target).parent / "slurm-logs"), "worker-extra-args": args})
    conf.update({key.replace("_", "-"): value for key, value in keys.items()})
    if adapt is not None:
        data["cdiplatform"] = {"adapt": {"minimum-jobs": adapt[0], "maximum-jobs": adapt[1]}}
    Path(target).write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(target)
