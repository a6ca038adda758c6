"""Fill ``.gpu-carry/`` (git-ignored) with what device_bench.py needs on the GPU machine.

    python tests/benchmarks/gpu/prepare_carry.py [--carry .gpu-carry] [--no-wheels]

- ``scan54_amplitude.npz``: the peer's preprocessing of scan 54 (256, 256, 210),
  stored sparse (index, value; 2.3 MB instead of 55): written by
  ``bench_phasing_peer.py --prepare`` to ``/tmp/peer-out/amplitude.npy`` first;
  with ``LICENSE`` of the data beside it (it is derived from them);
- ``config_rec``: the peer's reconstruction settings for the scan;
- ``cohere_core-4.5.4-py3-none-any.whl``: the peer, pure Python; its other
  needs (numpy, scipy, tifffile, psutil, tqdm, matplotlib, scikit-learn) are
  on that machine, so it is installed with ``--no-deps``.

It also adds ``/.gpu-carry/`` to ``.git/info/exclude`` so that the folder
travels only when ``carry`` names it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"
PEER_ARRAY = Path("/tmp/peer-out/amplitude.npy")


def _exclude(root: Path) -> None:
    git = root / ".git"
    if git.is_file():  # a worktree: .git names the real folder
        git = Path(git.read_text().split("gitdir:")[1].strip())
        common = git / "commondir"
        if common.exists():
            git = (git / common.read_text().strip()).resolve()
    exclude = git / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    if "/.gpu-carry/" not in text.split():
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "/.gpu-carry/\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--carry", default=str(ROOT / ".gpu-carry"))
    ap.add_argument("--no-wheels", action="store_true")
    args = ap.parse_args()
    carry = Path(args.carry)
    carry.mkdir(parents=True, exist_ok=True)
    _exclude(ROOT)
    if not PEER_ARRAY.exists():
        raise SystemExit(f"{PEER_ARRAY} is missing: run tests/benchmarks/bench_phasing_peer.py --prepare")
    amp = np.load(PEER_ARRAY)
    index = np.flatnonzero(amp).astype(np.int32)
    np.savez_compressed(
        carry / "scan54_amplitude.npz", shape=np.array(amp.shape), index=index, value=amp.reshape(-1)[index]
    )
    shutil.copy(DATA / "LICENSE", carry / "LICENSE")
    shutil.copy(DATA / "cohere_conf" / "config_rec", carry / "config_rec")
    if not args.no_wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                "-d",
                str(carry),
                "cohere-core==4.5.4",
            ],
            check=True,
        )
    total = sum(f.stat().st_size for f in carry.iterdir())
    for f in sorted(carry.iterdir()):
        print(f"{f.stat().st_size / 1e6:8.2f} MB  {f.name}")
    print(f"{total / 1e6:.1f} MB in {carry} (with the working tree, under the 64 MiB a call carries)")


if __name__ == "__main__":
    main()
