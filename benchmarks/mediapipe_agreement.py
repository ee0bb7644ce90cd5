"""MediaPipe Tasks' ImageClassifier on edgecnn's .tflite files vs edgecnn's own runtime.

What the export promises: a phone task library loads `model_fp32.tflite` and
`model_int8.tflite` from their TFLite Metadata alone and names the classes.  MediaPipe runs in
its own venv (`make test` creates `.venv-mp`); point at it with --mediapipe-python.

    .venv/bin/python benchmarks/mediapipe_agreement.py runs/NAME ../shared/datasets/cats-vs-dogs/test

Prints, per file: images, MediaPipe accuracy, edgecnn accuracy, top-1 agreement, class names
MediaPipe returned.  MediaPipe resizes the full photo itself (its own interpolation), so a photo
whose two classes are nearly tied can flip; the script also reports agreement where edgecnn's
top score is >= 0.75.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
import mediapipe as mp
from mediapipe.tasks import python as mpt
from mediapipe.tasks.python import vision
model, paths = sys.argv[1], sys.stdin.read().split("\n")
opts = vision.ImageClassifierOptions(base_options=mpt.BaseOptions(model_asset_path=model), max_results=1)
with vision.ImageClassifier.create_from_options(opts) as clf:
    print(json.dumps([clf.classify(mp.Image.create_from_file(p)).classifications[0].categories[0].category_name
                      for p in paths if p]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run directory with export/")
    ap.add_argument("data", type=Path, help="labelled folder (one sub-folder per class)")
    ap.add_argument("--mediapipe-python", default=".venv-mp/bin/python")
    args = ap.parse_args()

    from edgecnn.runtime import load
    from edgecnn.runtime.dataset import list_dataset

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    for name in ("model_fp32.tflite", "model_int8.tflite"):
        model = args.run / "export" / name
        clf = load(model, threads=1)
        ds = list_dataset(args.data, classes=clf.labels)
        paths = [str(p) for p in ds.paths]
        proc = subprocess.run(
            [args.mediapipe_python, "-c", CHILD, str(model)],
            input="\n".join(paths),
            capture_output=True,
            text=True,
            check=True,
        )
        mp_top = json.loads(proc.stdout.strip().splitlines()[-1])
        ours = [clf.predict(p, top_k=1)[0] for p in paths]
        truth = [clf.labels[t] for t in ds.targets]
        agree = [m == o[0] for m, o in zip(mp_top, ours)]
        sure = [a for a, o in zip(agree, ours) if o[1] >= 0.75]
        print(
            f"{name}: {len(paths)} images; MediaPipe accuracy "
            f"{sum(m == t for m, t in zip(mp_top, truth)) / len(paths):.1%}, edgecnn accuracy "
            f"{sum(o[0] == t for o, t in zip(ours, truth)) / len(paths):.1%}, top-1 agreement "
            f"{sum(agree) / len(agree):.1%} (where edgecnn's score >= 0.75: "
            f"{sum(sure) / max(1, len(sure)):.1%} of {len(sure)}); names {sorted(set(mp_top))}"
        )


if __name__ == "__main__":
    main()
