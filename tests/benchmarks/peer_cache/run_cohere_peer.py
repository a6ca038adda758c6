"""Run the peer cohere-core on scan 54; executed with the peer's own venv python.

Usage: run_cohere_peer.py WORKSPACE_SCAN_DIR OUT_DIR BACKEND
Writes OUT_DIR/amplitude.npy (the array both engines phase), and after the
peer's 620 iterations OUT_DIR/peer_<backend>_object.npy, _support.npy and
peer_<backend>.json (seconds, versions, the peer's own metrics).
"""

import json
import os
import sys
import time
from importlib.metadata import version

import numpy as np

ws, out, backend = sys.argv[1], sys.argv[2], sys.argv[3]
import cohere_core.controller.phasing as phasing  # noqa: E402
import cohere_core.utilities.utils as ut  # noqa: E402

os.makedirs(out, exist_ok=True)
amp_path = os.path.join(out, "amplitude.npy")
if not os.path.exists(amp_path):
    amp = ut.read_tif(os.path.join(ws, "phasing_data", "data.tif")).astype(np.float32)
    np.save(amp_path, amp)
pars = ut.read_config(os.path.join(ws, "conf", "config_rec"))
t0 = time.perf_counter()
worker = phasing.create_rec(pars, amp_path, backend, -1)
t1 = time.perf_counter()
worker.iterate()
t2 = time.perf_counter()
metric = worker.get_metric()
obj = np.asarray(worker.ds_image.cpu() if hasattr(worker.ds_image, "cpu") else worker.ds_image)
sup = np.asarray(worker.support.cpu() if hasattr(worker.support, "cpu") else worker.support)
np.save(os.path.join(out, f"peer_{backend}_object.npy"), obj.astype(np.complex64))
np.save(os.path.join(out, f"peer_{backend}_support.npy"), sup.astype(bool))
info = {
    "backend": backend,
    "seconds_iterate": t2 - t1,
    "seconds_setup": t1 - t0,
    "iterations": 620,
    "peer_metric": {k: float(v) for k, v in (metric or {}).items()},
    "peer_last_error": float(worker.errs[-1]) if getattr(worker, "errs", None) else None,
    "versions": {p: version(p) for p in ("cohere-core", "cohere-ui", "cohere-beamlines", "numpy", "torch")},
    "threads": __import__("torch").get_num_threads(),
}
with open(os.path.join(out, f"peer_{backend}.json"), "w") as fh:
    json.dump(info, fh, indent=1)
print(json.dumps(info))
