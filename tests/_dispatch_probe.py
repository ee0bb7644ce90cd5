"""Run in a new process whose environment caps OpenCV's, numpy's or libjpeg-turbo's SIMD
dispatch: every image in a folder decoded, turned into model input for three contracts and
put through each camera shift, saved in one .npz; the dispatch each library took on stdout.

    python _dispatch_probe.py FOLDER OUT.npz
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as features

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.preprocess import read_image, to_input, to_pixels
from edgecnn.runtime.shifts import SHIFTS, apply_shift

CONTRACTS = (
    Contract(labels=("a", "b"), height=88, width=88),  # the default net's: stretch, area
    Contract(labels=("a", "b"), height=64, width=64, resize="crop"),
    Contract(
        labels=("a", "b"),
        height=72,
        width=96,
        color="BGR",
        interpolation="linear",
        mean=(123.7, 116.3, 103.5),
        std=(58.4, 57.1, 57.4),
    ),
)

folder, out = Path(sys.argv[1]), sys.argv[2]
arrays = {}
for index, path in enumerate(sorted(folder.iterdir())):
    bgr = read_image(path)
    arrays[f"{path.name}/decoded"] = bgr
    for k, contract in enumerate(CONTRACTS):
        pixels = to_pixels(bgr, contract)
        arrays[f"{path.name}/pixels{k}"] = pixels
        arrays[f"{path.name}/input{k}"] = to_input(pixels, contract)
    for name in SHIFTS:
        shifted = apply_shift(name, bgr, index=index)
        arrays[f"{path.name}/{name}"] = to_pixels(shifted, CONTRACTS[0])
np.savez(out, **arrays)
print(json.dumps({
    "opencv": cv2.getCPUFeaturesLine().split(),
    "numpy": sorted(name for name, present in features.items() if present),
}))  # fmt: skip
