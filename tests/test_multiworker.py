"""`edgecnn train --strategy multiworker`: two worker processes on 127.0.0.1 against one process.

Each worker is `python -m edgecnn train ...` with its own TF_CONFIG, on CPU with one thread per
pool, as it would run on its own machine.  The chief (worker 0) must write the same run
directory a single process writes, the other worker nothing, and the model must be the one a
single process trains with the same global batch.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _train_fixtures import FAST, tiny_split, train_refuses

keras = pytest.importorskip("keras")

from edgecnn import train, training  # noqa: E402
from edgecnn.data import prepare  # noqa: E402

EPOCHS = 2
# Both runs train `seed` (no BatchNorm) with a global batch of 16: each worker's replica takes
# 8 photos of every batch and the gradients are summed across workers, so the two runs differ
# only in float32 summation order (their histories agreed to every printed digit when
# measured).  The tolerances leave room for that order on other CPUs and thread counts, and
# stay far below what another split of the same stream changes: with the workers at a global
# batch of 8, the first epoch's loss moved by 4% and the saved model's probabilities by 0.12.
LOSS_RTOL = 1e-3
PROB_ATOL = 1e-3
# Wall-clock bound on the two workers together (they take well under a minute on an idle
# 2-core machine): past it both are killed and the test fails instead of hanging.
DEADLINE_S = 600


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("shapes"))  # 3 classes x 16 train, 6 val


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _worker_env(index: int, ports: list[int], tmp: Path) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return {
        **os.environ,
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp),  # where a worker's own checkpoint folder goes, and must leave
    }


def _run_workers(commands: list[list[str]], envs: list[dict]) -> list[subprocess.CompletedProcess]:
    """Start every worker, wait for all of them within DEADLINE_S, kill all on any failure."""
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, env in zip(commands, envs)
    ]
    deadline = time.monotonic() + DEADLINE_S
    done = []
    try:
        for cmd, proc in zip(commands, procs):
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
            if proc.returncode != 0:  # the others would wait for it until their health check
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


def _history(path: Path) -> list[dict[str, str]]:
    with open(path / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_two_workers_train_what_one_process_trains(data, tmp_path):
    train_dir, val_dir = data
    options = ["--arch", "seed", "--img-size", "32", "--epochs", str(EPOCHS), "--batch", "16"]
    ports = _free_ports(2)
    outs = [tmp_path / "run", tmp_path / "worker1-out"]
    tmps = [tmp_path / "tmp0", tmp_path / "tmp1"]
    commands, envs = [], []
    for i in range(2):
        tmps[i].mkdir()
        commands.append(
            [sys.executable, "-m", "edgecnn", "train", str(train_dir), "--val-dir", str(val_dir)]
            + [*options, "--strategy", "multiworker", "--out", str(outs[i]), "--quiet"]
        )
        envs.append(_worker_env(i, ports, tmps[i]))
    chief, worker = _run_workers(commands, envs)
    assert chief.returncode == 0, chief.stderr[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]

    # the chief writes the run and prints its path; the other worker writes nothing anywhere
    assert chief.stdout.split() == [str(outs[0])]
    assert worker.stdout == ""
    assert not outs[1].exists()
    assert [list(t.iterdir()) for t in tmps] == [[], []]  # temp checkpoint folders removed

    single = train(
        train_dir, val_dir=val_dir, out=tmp_path / "single", **{**FAST, "epochs": EPOCHS}
    )
    assert _files(outs[0]) == _files(single.path)  # the same run directory, checkpoint/ gone
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["strategy"] == "multiworker"
    assert metrics["epochs_run"] == EPOCHS

    rows, expected = _history(outs[0]), _history(single.path)
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in expected] == ["1", "2"]
    for row, want in zip(rows, expected):
        for key in ("loss", "val_loss"):
            assert float(row[key]) == pytest.approx(float(want[key]), rel=LOSS_RTOL), key
        # accuracies: at most one photo on the other side of a near tie
        assert abs(float(row["accuracy"]) - float(want["accuracy"])) <= 1 / 48
        assert abs(float(row["val_accuracy"]) - float(want["val_accuracy"])) <= 1 / 18
        assert float(row["learning_rate"]) == pytest.approx(float(want["learning_rate"]))

    pixels = prepare(train_dir, img_size=32, val_dir=val_dir, progress=False).val.pixels
    probs = keras.models.load_model(outs[0] / "model.keras").predict(pixels, verbose=0)
    want = keras.models.load_model(single.model_path).predict(pixels, verbose=0)
    assert np.abs(probs - want).max() <= PROB_ATOL


def test_a_failure_under_a_strategy_is_one_line(data, tmp_path, monkeypatch, capsys):
    """TensorFlow's error text can hold a whole batch of pixels: the command prints one line
    naming the strategy and the error, and exits 1."""
    import tensorflow as tf

    from edgecnn.cli import main

    def fit(self, *args, **kwargs):  # the error Keras 3.15 raised under multiworker
        batch = f"PerReplica:{{\n  0: {tf.zeros([8, 32, 32, 3])!r}\n}}"
        raise ValueError(f"Attempt to convert a value ({batch}) with an unsupported type")

    monkeypatch.setattr(keras.Model, "fit", fit)
    train_dir, val_dir = data
    argv = ["train", str(train_dir), "--val-dir", str(val_dir), "--arch", "seed"]
    argv += ["--img-size", "32", "--epochs", "1", "--strategy", "mirrored", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "edgecnn train: error: --strategy mirrored: ValueError: Attempt to convert a value "
        "(PerReplica:{"
    ], lines


@pytest.mark.parametrize(
    ("tf_config", "extra", "expected"),
    [
        ("{not json", [], "TF_CONFIG: expected JSON like"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', [], "(KeyError: 'task')"),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 2}}',
            [],
            "task index 2 is outside the 1 'worker' address(es)",
        ),
        ("", ["--resume"], "a multi-worker job cannot resume"),
    ],
)
def test_multiworker_refusals(data, tmp_path, monkeypatch, capsys, tf_config, extra, expected):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    argv = ["--strategy", "multiworker", *extra]
    train_refuses(capsys, data[0], tmp_path / "r", argv, expected)


def test_the_chief_is_the_chief_task_else_worker_0():
    workers = {"worker": ["a:1", "b:1"]}
    with_chief = {"chief": ["c:1"], **workers}
    assert training._is_chief(None)  # no TF_CONFIG: one machine alone
    assert training._is_chief(("worker", 0, workers))
    assert not training._is_chief(("worker", 1, workers))
    assert training._is_chief(("chief", 0, with_chief))
    assert not training._is_chief(("worker", 0, with_chief))


def test_one_line_drops_graph_function_names_and_cuts_long_text():
    node = "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/task:0/CPU:0}}"
    error = RuntimeError(f"{node} Collective ops is aborted by: task 1 is unhealthy\n[[x]]")
    assert training._one_line(error) == (
        "RuntimeError: Collective ops is aborted by: task 1 is unhealthy"
    )
    long = training._one_line(ValueError("x" * 1000))
    assert len(long) == 300 and long.endswith("...")
