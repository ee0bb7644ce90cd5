"""Training with the decoded photos on disk (`--cache-mb`) vs in memory: peak RSS and epoch time.

Generates a folder of small synthetic JPEGs (20,000 by default, 4 classes, a fifth held out for
validation; kept in the temp folder and reused), then trains `edge` on it twice, each run in its
own process: once with the photos in memory (a budget they fit in) and once with a small budget,
so they are decoded into `.npy` files beside the run folder and streamed from there.  Prints each
run's peak RSS (the child's `ru_maxrss`, from `os.wait4`), median epoch time (wall, and the
process's CPU time), set-up time (decoding, model build, final report), the disk/memory ratios,
and whether the two histories are identical (they should be: same seed, same batches).

    .venv/bin/python benchmarks/disk_cache.py                 # 20,000 photos, 2 epochs, 16 MB
    .venv/bin/python benchmarks/disk_cache.py --photos 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _epoch_clock import epoch_clock

from edgecnn.runtime.env import cpu_model

CLASSES = 4
PHOTO_SIZE = 96  # the generated JPEGs' side (each a few KB)
BASE_RENDERS = 50  # rendered photos a class; the files are random variations of them
IN_MEMORY_MB = 1_000_000  # a budget every folder here fits in


def photo_folder(root: Path, photos: int) -> tuple[Path, Path]:
    """`root/train`, `root/val`: `photos` JPEGs of the synthetic shapes, a fifth of them for
    validation, made once (a marker file says the folder is complete, so an interrupted
    generation is redone).  `BASE_RENDERS` photos a class are rendered
    (`edgecnn.synthetic.render`); every file is one of them flipped, shifted and brightened at
    random, so no two files are the same and generating 20,000 takes seconds, not an hour."""
    import cv2
    import numpy as np

    from edgecnn.synthetic import class_names, render

    done = root / ".complete"
    if done.exists():
        return root / "train", root / "val"
    print(f"generating {photos:,} photos in {root} ...", file=sys.stderr)
    rng = np.random.default_rng(0)
    per_class = photos // CLASSES
    for name in class_names(CLASSES):
        bases = [render(name, size=PHOTO_SIZE, rng=rng) for _ in range(BASE_RENDERS)]
        for i in range(per_class):
            image = bases[i % BASE_RENDERS]
            if rng.random() < 0.5:
                image = image[:, ::-1]
            image = np.roll(image, tuple(rng.integers(-8, 9, size=2)), axis=(0, 1))
            image = cv2.convertScaleAbs(image, alpha=1.0, beta=float(rng.integers(-20, 21)))
            part = "val" if i % 5 == 0 else "train"
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    done.write_text("")
    return root / "train", root / "val"


def worker(args: argparse.Namespace) -> None:
    """One training run; prints its figures as JSON on the last line of stdout."""
    from edgecnn import train

    clock = epoch_clock()

    with tempfile.TemporaryDirectory(prefix="edgecnn-disk-cache-") as tmp:
        start = time.perf_counter()
        run = train(
            args.train,
            val_dir=args.val,
            arch="edge",
            epochs=args.epochs,
            out=Path(tmp) / "run",
            cache_mb=args.cache_mb,
            callbacks=[clock],
            progress=False,
        )
        wall = time.perf_counter() - start
    history = [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in run.history]
    figures = {"epoch_seconds": clock.seconds, "epoch_cpu_seconds": clock.cpu_seconds, "wall": wall}
    print(json.dumps({**figures, "history": history}))


def measure(data: tuple[Path, Path], *, epochs: int, cache_mb: float) -> dict:
    """Run `worker` in a child process; its figures plus its own peak RSS."""
    cmd = [sys.executable, __file__, "--worker", "--epochs", str(epochs)]
    cmd += ["--cache-mb", str(cache_mb), "--train", str(data[0]), "--val", str(data[1])]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        # wait4 reaps this one child and gives its own rusage (RUSAGE_CHILDREN would give the
        # largest of every child so far)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        sys.exit(f"worker failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["disk_lines"] = [line for line in stderr.splitlines() if "cached on disk" in line]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--budget-mb", type=float, default=16.0, help="the small budget (16)")
    p.add_argument("--dir", type=Path, help="photo folder (default: in the temp folder)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--val", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache-mb", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    root = args.dir or Path(tempfile.gettempdir()) / f"edgecnn-disk-cache-{args.photos}"
    data = photo_folder(root, args.photos)
    load_before = os.getloadavg()[0]
    # the disk run first: a child's page cache then favours neither (the JPEGs are read by both)
    disk = measure(data, epochs=args.epochs, cache_mb=args.budget_mb)
    memory = measure(data, epochs=args.epochs, cache_mb=IN_MEMORY_MB)
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"{cpu_model()}, {os.cpu_count()} CPUs; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other jobs on the machine slow both runs)"
    )
    print(f"{args.photos:,} photos, edge, {args.epochs} epoch(s); disk: {disk['disk_lines']}")
    rows = {"in memory": memory, f"on disk ({args.budget_mb:g} MB budget)": disk}
    head = f"{'peak RSS MB':>12} {'median epoch s':>15} {'epoch CPU s':>12} {'set-up s':>9}"
    print(f"{'':28} {head}")
    for name, r in rows.items():
        r["median"] = statistics.median(r["epoch_seconds"])
        r["cpu"] = statistics.median(r["epoch_cpu_seconds"])
        setup = r["wall"] - sum(r["epoch_seconds"])
        print(
            f"{name:28} {r['peak_rss_mb']:12,.0f} {r['median']:15.1f} {r['cpu']:12.1f} {setup:9.1f}"
        )
    print(
        f"disk / memory: peak RSS {disk['peak_rss_mb'] / memory['peak_rss_mb']:.2f}x, "
        f"median epoch {disk['median'] / memory['median']:.2f}x "
        f"(CPU time {disk['cpu'] / memory['cpu']:.2f}x); "
        f"same history: {'yes' if disk['history'] == memory['history'] else 'NO'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
