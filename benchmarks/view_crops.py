"""The test-time views of trained runs, re-chosen without retraining: accuracy per centre crop.

A run's saved model is its trained net wrapped in two test-time views (`with_flip_tta`: the
centre crop scaled back to the input size, and its mirror image).  This takes the trained net
out of each run's `model.keras`, wraps it again with every crop in `--crops`, and prints the
float accuracy of each on every labelled folder, beside the bare net on the whole photo
("plain"), with the run's own preprocessing (`to_pixels`):

    .venv/bin/python benchmarks/view_crops.py runs/edge runs/edge-s1 \\
        --data test=../shared/datasets/cats-vs-dogs/test \\
        --data pets=../shared/datasets/pets-oxford

A folder that chose a run's kept epoch (its `--val-dir` or validation split) flatters the crop
the run was saved with; score runs on folders they never saw.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.dataset import list_dataset, load_pixels

DEFAULT_CROPS = (0.7, 0.775, 0.85, 0.925, 1.0)


def trained_net(run: Path):
    """The trained net inside a run's saved model (the model the views wrap)."""
    import keras

    model = keras.models.load_model(run / "model.keras", compile=False)
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        sys.exit(f"{run}: model.keras is not one net wrapped in test-time views")
    return inner[0]


def accuracy(model, pixels: np.ndarray, contract: Contract, targets: np.ndarray) -> float:
    from edgecnn.runtime.preprocess import to_input

    x = to_input(pixels, contract)
    # direct calls: `predict` retraces (and warns) for every newly wrapped model
    probs = [model(x[i : i + 128], training=False) for i in range(0, len(x), 128)]
    return float((np.concatenate(probs).argmax(axis=1) == targets).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories of `edgecnn train`")
    ap.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a labelled folder to score on (repeatable)",
    )
    ap.add_argument(
        "--crops",
        default=",".join(map(str, DEFAULT_CROPS)),
        help="centre crops to try, comma-separated (default %(default)s)",
    )
    args = ap.parse_args(argv)
    crops = [float(c) for c in args.crops.split(",")]
    folders = dict(item.split("=", 1) for item in args.data)

    from edgecnn.models.views import with_flip_tta

    columns = ["plain", *(f"{c:g}" for c in crops)]
    print(f"{'run':<28} {'data':<10}" + "".join(f"{c:>8}" for c in columns))
    decoded = {}  # (folder, contract): runs of one recipe share their pixels
    for run in args.runs:
        contract = Contract.from_json((run / "edgecnn.json").read_bytes(), source=str(run))
        net = trained_net(run)
        views = [net, *(with_flip_tta(net, c) for c in crops)]
        for name, folder in folders.items():
            if (folder, contract) not in decoded:
                dataset = list_dataset(folder, classes=contract.labels)
                decoded[folder, contract] = load_pixels(dataset, contract, progress=False)
            data = decoded[folder, contract]
            scores = [accuracy(m, data.pixels, contract, data.targets) for m in views]
            print(f"{run.name:<28} {name:<10}" + "".join(f"{s:8.2%}" for s in scores), flush=True)
    return 0


if __name__ == "__main__":
    from edgecnn._native_log import quiet_native_logs

    with quiet_native_logs():  # edgecnn's lines only, as the CLI prints
        raise SystemExit(main())
