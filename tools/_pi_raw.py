"""Run saved input tensors through edgecnn.runtime backends and save what they return.

    python _pi_raw.py JOBS.json

JOBS.json: {"threads": 1, "jobs": [{"model": M, "backend": B, "input": X.npy, "output": Y.npy}]}

The pi check runs this same file on x86 and on the emulated Pi, so both sides feed a backend
exactly the same numbers (`Backend.run`, no decoding or resizing) and the outputs can be compared
bit for bit.  Only numpy and edgecnn.runtime are imported: what the device has.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgecnn.runtime.backends import get_backend

BATCH = 16


def run_job(model: str, backend: str, inputs: str, output: str, *, threads: int) -> None:
    """One model file on one backend: `inputs` (N, H, W, 3) -> `output` (N, classes)."""
    opened = get_backend(backend).open(Path(model), threads=threads)
    x = np.load(inputs)
    rows = [opened.run(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    np.save(output, np.concatenate(rows, axis=0))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: _pi_raw.py JOBS.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    for job in spec["jobs"]:
        run_job(job["model"], job["backend"], job["input"], job["output"], threads=spec["threads"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
