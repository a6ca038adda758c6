"""Run the peer cohere-core on scan 54; executed with the peer's own venv python.

Usage: run_cohere_peer.py WORKSPACE_SCAN_DIR OUT_DIR BACKEND [ALGORITHM [NAME]]

Writes OUT_DIR/amplitude.npy (the array both engines phase); BACKEND
``none`` stops there. Otherwise, right after the peer's iterations (the
config's ``3*(20*ER+180*HIO)+20*ER``, or ALGORITHM when given and not
``-``), it writes OUT_DIR/NAME_object.npy, _support.npy and NAME.json
(seconds; NAME defaults to ``peer_<backend>``) before anything else can
fail, then adds the peer's own metrics and the versions to the json, each
step guarded. The peer's random start is new in every run.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ws, out, backend = sys.argv[1], sys.argv[2], sys.argv[3]
algorithm = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
name = sys.argv[5] if len(sys.argv) > 5 else f"peer_{backend}"
import cohere_core.utilities.utils as ut
from cohere_core.controller import phasing

os.makedirs(out, exist_ok=True)
amp_path = os.path.join(out, "amplitude.npy")
if not os.path.exists(amp_path):
    amp = ut.read_tif(os.path.join(ws, "phasing_data", "data.tif")).astype(np.float32)
    np.save(amp_path, amp)
if backend == "none":
    sys.exit(0)
pars = ut.read_config(os.path.join(ws, "conf", "config_rec"))
if algorithm:
    pars["algorithm_sequence"] = algorithm
t0 = time.perf_counter()
worker = phasing.create_rec(pars, amp_path, backend, -1)
t1 = time.perf_counter()
worker.iterate()
t2 = time.perf_counter()


def _array(x):
    return np.asarray(x.cpu() if hasattr(x, "cpu") else x)


# the result first: nothing below may lose it
np.save(os.path.join(out, f"{name}_object.npy"), _array(worker.ds_image).astype(np.complex64))
np.save(os.path.join(out, f"{name}_support.npy"), _array(worker.support).astype(bool))
info = {
    "backend": backend,
    "seconds_iterate": t2 - t1,
    "seconds_setup": t1 - t0,
    "algorithm": pars["algorithm_sequence"],
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "loadavg_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
}
json_path = os.path.join(out, f"{name}.json")
with open(json_path, "w") as fh:
    json.dump(info, fh, indent=1)

notes = []
try:
    metric = worker.get_metric()
    info["peer_metric"] = {k: float(v) for k, v in (metric or {}).items()}
except Exception as exc:  # noqa: BLE001 - the result is saved; report what failed
    notes.append(f"get_metric: {exc!r}")
try:
    info["peer_last_error"] = float(worker.errs[-1]) if getattr(worker, "errs", None) else None
except Exception as exc:  # noqa: BLE001
    notes.append(f"errs: {exc!r}")
versions = {}
for pkg in ("cohere-core", "cohere-ui", "cohere-beamlines", "numpy", "torch"):
    try:
        from importlib.metadata import version

        versions[pkg] = version(pkg)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"version({pkg}): {exc!r}")
info["versions"] = versions
try:
    import torch

    info["threads"] = torch.get_num_threads()
except Exception as exc:  # noqa: BLE001
    notes.append(f"torch: {exc!r}")
if notes:
    info["notes"] = notes
with open(json_path, "w") as fh:
    json.dump(info, fh, indent=1)
print(json.dumps(info))
