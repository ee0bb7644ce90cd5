"""Corrupted copies of a model file through `edgecnn predict`: a crash or a console flood fails.

    .venv/bin/python tools/mutate_models.py MODEL IMAGE [--count 500] [--seed 0] [--keep DIR]
    .venv/bin/python tools/mutate_models.py MODEL IMAGE --backend opencv

A model file is something users download and pass around, and a broken download is the common
case of a hostile one.  Each copy of MODEL gets one mutation, drawn from a seeded generator:

    flip    1-8 random bits flipped
    bytes   1-64 bytes overwritten with random ones
    trunc   the file cut at a random length
    int32   an aligned 32-bit word set to 0, 2**28, 2**31 - 1, 2**31 or 2**32 - 1 (offsets,
            lengths and counts in flatbuffers and protobufs)

and is classified by `python -m edgecnn predict COPY IMAGE` in a child process (60 s at most):
"ok" (exit 0: the mutation left the model working, usually in weights), "refused" (exit 2, one
line on stderr and nothing on stdout), or a failure: any other exit code (a negative one is a
signal: -11 a segmentation fault), more lines, output on stdout, or the time limit.  Failing
copies are kept in --keep (default: a temporary folder made at the first failure, printed).
Not part of `make test` (about half a second a copy); exit status 1 when any copy failed.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
from pathlib import Path

KINDS = ("flip", "bytes", "trunc", "int32")
WORDS = (0, 1 << 28, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)
TIMEOUT = 60


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """(the kind of mutation, the mutated bytes)."""
    b = bytearray(data)
    kind = rng.choice(KINDS)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        at, n = rng.randrange(len(b)), rng.randint(1, 64)
        b[at : at + n] = bytes(rng.randrange(256) for _ in range(n))
    elif kind == "trunc":
        del b[rng.randrange(len(b)) :]
    else:
        at = rng.randrange(len(b) - 4) & ~3
        b[at : at + 4] = rng.choice(WORDS).to_bytes(4, "little")
    return kind, bytes(b)


def classify(model: Path, image: Path, backend: str) -> tuple[str, str]:
    """("ok" | "refused" | "failed", what a failure showed)."""
    argv = [sys.executable, "-m", "edgecnn", "predict", "--backend", backend, str(model)]
    try:
        proc = subprocess.run(argv + [str(image)], capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "failed", f"still running after {TIMEOUT} s"
    err = proc.stderr.decode("utf-8", "replace").splitlines()
    if proc.returncode == 0:
        return "ok", ""
    if proc.returncode == 2 and len(err) == 1 and not proc.stdout:
        return "refused", ""
    shown = " | ".join(err[-3:])[:400]
    return (
        "failed",
        f"exit {proc.returncode}, {len(err)} stderr lines, {len(proc.stdout)} stdout bytes: {shown!r}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .tflite, .onnx or .keras file that works")
    parser.add_argument("image", type=Path, help="a photo to classify")
    parser.add_argument("--count", type=int, default=500, help="corrupted copies to try")
    parser.add_argument("--seed", type=int, default=0, help="the mutations' seed")
    parser.add_argument("--backend", default="auto", help="edgecnn predict's --backend")
    parser.add_argument("--keep", type=Path, help="folder for the copies that fail")
    args = parser.parse_args(argv)

    data = args.model.read_bytes()
    keep = args.keep
    rng = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"model{args.model.suffix}"
        for i in range(args.count):
            kind, mutated = mutate(data, rng)
            copy.write_bytes(mutated)
            outcome, detail = classify(copy, args.image, args.backend)
            counts[outcome] += 1
            if outcome == "failed":
                if keep is None:
                    keep = Path(tempfile.mkdtemp(prefix="edgecnn-mutants-"))
                keep.mkdir(parents=True, exist_ok=True)
                kept = keep / f"{i:05d}-{kind}{args.model.suffix}"
                kept.write_bytes(mutated)
                print(f"{kept}: {detail}", flush=True)
            if (i + 1) % 50 == 0:
                print(f"{i + 1}/{args.count}: {dict(counts)}", file=sys.stderr, flush=True)
    print(
        f"{args.model} ({len(data):,} bytes), {args.count} corrupted copies, seed {args.seed}, "
        f"backend {args.backend}: {counts['ok']} ok, {counts['refused']} refused in one line, "
        f"{counts['failed']} failed" + (f" (kept in {keep})" if counts["failed"] else "")
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
