"""Decode a video into numbered PNG frames, as `edgecnn run` reads it (OpenCV's VideoCapture).

    python _pi_frames.py CLIP FOLDER

The pi check runs this on each side, then `edgecnn predict FOLDER` there: the frames `edgecnn
run --source CLIP` labels, losslessly.  Decoding is done on the side itself because video
decoders differ between CPUs by a few grey levels (the decoded clip is not the same on x86 and on
a Pi), which would blur a comparison meant to be exact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2


def decode(clip: str, folder: Path) -> int:
    """Write every frame of `clip` to `folder/NNNN.png`; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(clip)
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return count
            if not cv2.imwrite(str(folder / f"{count:04d}.png"), frame):
                raise OSError(f"{folder}: cannot write frame {count}")
            count += 1
    finally:
        capture.release()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: _pi_frames.py CLIP FOLDER", file=sys.stderr)
        return 2
    print(decode(argv[0], Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
