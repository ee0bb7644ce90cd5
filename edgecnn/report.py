"""The demo's `report.html`: one self-contained page a person would rather look at.

    from edgecnn.report import write_report
    write_report("runs/demo")            # reads demo.json and the run's files, writes report.html

Everything the page shows is read back from the files the pipeline wrote (`demo.json`, the run's
`metrics.json`, `training.png`, `confusion.png`, `export/export.json`, `bench/bench.json`,
`bench.png`, the shift suite's figures, the live run's annotated video and JSON lines), so the
report tells exactly what is on disk.  Images are embedded as base64 data URIs and the CSS is
inline: the file opens offline, can be mailed, and makes no network request.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.bench import OUTPUT_DIR as BENCH_DIR
from edgecnn.bench import OUTPUT_FILES as BENCH_FILES
from edgecnn.demo import REPORT_FILE, SUMMARY_FILE
from edgecnn.runtime.artifacts import EXPORT_DIR, MANIFEST, by_name
from edgecnn.runtime.env import cpu_model
from edgecnn.runtime.files import write_atomic
from edgecnn.runtime.formatting import file_size, ms, pct

SAMPLES_PER_CLASS = 8
STRIP_FRAMES = 6
_NONE = "–"  # what the page shows for a figure that is missing


def write_report(demo_dir: str | os.PathLike) -> Path:
    """Write `demo_dir/report.html` from a finished demo folder; returns its path."""
    root = Path(demo_dir)
    summary = json.loads((root / SUMMARY_FILE).read_text(encoding="utf-8"))
    page = _Page(root, summary)
    path = root / REPORT_FILE
    write_atomic(path, page.render())
    return path


# --- small helpers ---------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png_file(path: Path) -> str | None:
    return _data_uri(path.read_bytes(), "image/png") if path.is_file() else None


def _encode(image: np.ndarray, ext: str = ".png", quality: int = 88) -> str:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {ext} image")
    return _data_uri(buf.tobytes(), "image/jpeg" if ext == ".jpg" else "image/png")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _size(n: int | None) -> str:
    return file_size(n or None, empty=_NONE)


_pct = functools.partial(pct, empty=_NONE)
_ms = functools.partial(ms, empty=_NONE)


def _file_name(fmt: str) -> str:
    try:
        return by_name(fmt).file
    except KeyError:  # a format this version does not know
        return fmt


def _plural(n: int | None, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _table(header: list[str], rows: list[list[str]], *, cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML.  Columns after the first two align right."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(uri: str | None, alt: str, caption: str = "", *, cls: str = "") -> str:
    if uri is None:
        return f'<p class="missing">{_e(alt)}: not produced</p>'
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure class="{cls}"><img src="{uri}" alt="{_e(alt)}">{cap}</figure>'


def _shift_doc(name: str) -> str:
    """The first line of the shift's docstring: what camera defect it imitates."""
    from edgecnn.runtime.shifts import SHIFTS

    doc = (SHIFTS[name].__doc__ or "").strip() if name in SHIFTS else ""
    return doc.splitlines()[0] if doc else ""


def _code(lines: list[str]) -> str:
    """A command block; lines starting with '#' are shown as comments."""
    out = []
    for line in lines:
        if line.startswith("#"):
            out.append(f'<span class="c">{_e(line)}</span>')
        else:
            out.append(f'<span class="p">$ </span>{_e(line)}' if line else "")
    return "<pre><code>" + "\n".join(out) + "</code></pre>"


# --- the page --------------------------------------------------------------------------------


class _Page:
    """Collects the demo's files and renders the sections in reading order."""

    def __init__(self, root: Path, summary: dict[str, Any]) -> None:
        self.root = root
        self.s = summary
        self.run = Path(summary["train"]["run"])
        self.contract = _read_json(self.run / "edgecnn.json") or {}
        self.metrics = _read_json(self.run / "metrics.json") or {}
        self.manifest = _read_json(self.run / EXPORT_DIR / MANIFEST) or {}
        self.bench = _read_json(self.run / BENCH_DIR / BENCH_FILES["json"]) or {}

    def render(self) -> str:
        sections = [
            self._overview(),
            self._data(),
            self._training(),
            self._export(),
            self._bench(),
            self._shifts(),
            self._live(),
            self._your_photos(),
            self._pi(),
        ]
        return _TEMPLATE.format(
            css=_CSS,
            title="edgecnn demo report",
            subtitle=self._subtitle(),
            nav=self._nav(),
            body="\n".join(sections),
            footer=self._footer(),
        )

    # -- header, nav, footer --

    def _subtitle(self) -> str:
        b = self.s["budget"]
        env = self.bench.get("env", {})
        cpu = env.get("cpu") or cpu_model()
        return (
            f"{_e(b['name'])} budget · {_e(cpu)} · {_e(env.get('cores', os.cpu_count()))} cores · "
            f"finished in {self.s.get('total_seconds', 0):.0f} s · "
            f"generated {_e((self.bench.get('env') or {}).get('created', ''))[:16].replace('T', ' ')}"
        )

    def _nav(self) -> str:
        items = [("data", "Data"), ("training", "Training"), ("export", "Export"),
                 ("bench", "Benchmark"), ("shifts", "Camera shifts"), ("live", "Live"), ("own", "Your photos"),
                 ("pi", "Raspberry Pi")]  # fmt: skip
        return "".join(f'<a href="#{a}">{t}</a>' for a, t in items)

    def _footer(self) -> str:
        steps = self.s.get("steps", {})
        parts = " · ".join(f"{_e(k)} {v:.1f} s" for k, v in steps.items())
        versions = self.manifest.get("versions", {})
        vtext = " · ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items())
        return f"<p>Step times: {parts}</p><p>{vtext}</p>"

    # -- overview cards --

    def _overview(self) -> str:
        t = self.s["train"]
        arts = self.manifest.get("artifacts", {})
        int8, fp32 = arts.get("tflite-int8") or {}, arts.get("tflite-fp32") or {}
        ratio = (int8.get("bytes") or 0) / fp32["bytes"] if fp32.get("bytes") else None
        p50 = self._p50(by_name("tflite-int8").file, "tflite")
        live = self.s["live"]["summary"]
        cards = [
            ("validation accuracy", _pct(t.get("val_accuracy")),
             f"edge model, {_plural(t.get('epochs_run'), 'epoch')}"),
            ("int8 model", _size(int8.get("bytes")),
             f"{ratio:.0%} of fp32" if ratio else "full-integer TFLite"),
            ("int8 agreement", _pct((int8.get("parity") or {}).get("agreement")),
             "top-1 vs the Keras model" if int8.get("passed") else f"refused: see {MANIFEST}"),
            ("int8 latency", f"{_ms(p50)} ms" if p50 else "–",
             "p50, 1 thread, batch 1" if p50 else "no verified int8 TFLite file"),
            ("live", f"{live.get('fps', 0):.0f} FPS",
             f"{_pct(self.s['live'].get('accuracy'), 0)} right on the clip"),
        ]  # fmt: skip
        html_cards = "".join(
            f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
            f'<div class="n">{_e(n)}</div></div>'
            for k, v, n in cards
        )
        passed = sum(1 for a in arts.values() if a.get("passed"))
        exported = (
            f"{passed} verified files"
            if passed == len(arts)
            else (f"{len(arts)} formats ({passed} passed verification)")
        )
        return (
            '<section id="overview"><p class="lead">One offline command took generated images to a '
            f"trained CNN, exported it to {exported}, measured every backend and ran "
            f"<code>{_e(Path(self.s['live']['model']).name)}</code> live on a video clip. "
            "Everything below was produced by that run and "
            f'is in <code>{_e(self.root)}</code>.</p><div class="cards">{html_cards}</div></section>'
        )

    def _p50(self, artifact: str, backend: str) -> float | None:
        for r in self.bench.get("rows", []):
            if r.get("artifact") == artifact and r.get("backend") == backend and not r.get("error"):
                return r.get("p50_ms")
        return None

    # -- 1. data --

    def _data(self) -> str:
        d = self.s["data"]
        grid = self._sample_grid(Path(d["train"]), d["classes"])
        c = d["counts"]
        return (
            '<section id="data"><h2><span class="num">1</span>The data</h2>'
            f"<p>{len(d['classes'])} classes of generated shapes, drawn by "
            "<code>edgecnn.synthetic</code> with random colours, gradients, noise, position, size "
            "and rotation, so only the shape tells the classes apart. "
            f"{c['train']} training and {c['val']} validation images at "
            f"{d['image_size']}×{d['image_size']}, plus {c['heldback']} held-back images at "
            f"{d['heldback_size']}×{d['heldback_size']} that the model never sees: they are the "
            "benchmark's accuracy set and the frames of the live clip.</p>"
            f"{grid}</section>"
        )

    def _sample_grid(self, train_dir: Path, classes: list[str]) -> str:
        from edgecnn.runtime.preprocess import read_image

        rows = []
        for name in classes:
            files = sorted(p for p in (train_dir / name).iterdir() if p.is_file())
            cells = "".join(
                f'<img src="{_encode(read_image(p))}" alt="{_e(name)} sample">'
                for p in files[:SAMPLES_PER_CLASS]
            )
            rows.append(f'<div class="grid-row"><div class="cls">{_e(name)}</div>'
                        f'<div class="thumbs">{cells}</div></div>')  # fmt: skip
        return f'<div class="samples">{"".join(rows)}</div>'

    # -- 2. training --

    def _training(self) -> str:
        m = self.metrics
        t = self.s["train"]
        per_class = m.get("per_class") or {}
        rows = []
        for name, v in per_class.items():
            if isinstance(v, dict):
                rows.append([_e(name), _pct(v.get("precision")), _pct(v.get("recall")),
                             _e(v.get("support", "–"))])  # fmt: skip
        table = (
            _table(["class", "precision", "recall", "images"], rows, cls="narrow") if rows else ""
        )
        return (
            '<section id="training"><h2><span class="num">2</span>Training</h2>'
            f"<p>The default <code>edge</code> architecture (residual plain and "
            f"depthwise-separable conv blocks, BatchNorm, ReLU6, global pooling) trained for {_plural(t.get('epochs_run'), 'epoch')} in "
            f"{t.get('train_seconds') or 0:.0f} s; the best epoch ({_e(t.get('best_epoch'))}) "
            f"reached <b>{_pct(t.get('val_accuracy'))}</b> validation accuracy.</p>"
            + _figure(_png_file(self.run / "training.png"), "training curves",
                      "Loss and accuracy per epoch (<code>training.png</code>)", cls="wide")
            + '<div class="two">'
            + _figure(_png_file(self.run / "confusion.png"), "confusion matrix",
                      "Confusion matrix on the validation set (<code>confusion.png</code>)")
            + f'<div>{table}</div></div></section>'
        )  # fmt: skip

    # -- 3. export --

    def _export(self) -> str:
        arts = self.manifest.get("artifacts", {})
        fp32 = (arts.get("tflite-fp32") or {}).get("bytes")
        rows = []
        for fmt, a in arts.items():
            p = a.get("parity") or {}
            ok = a.get("passed")
            verdict = (
                '<span class="ok">verified</span>' if ok else '<span class="bad">failed</span>'
            )
            rel = f"{a['bytes'] / fp32:.0%}" if fp32 and a.get("bytes") else "–"
            name = a.get("file") or _file_name(fmt)
            rows.append([
                f"<code>{_e(name)}</code>" if ok else f'<code class="gone">{_e(name)}</code>',
                _e(a.get("scheme", fmt)),
                _size(a.get("bytes")),
                rel,
                _pct(p.get("agreement"), 2),
                f"{p['max_abs_diff']:.2g}" if p.get("max_abs_diff") is not None else "–",
                _pct(p.get("accuracy")),
                verdict,
            ])  # fmt: skip
        check = self.manifest.get("check") or {}
        n = next((a.get("parity", {}).get("images") for a in arts.values() if a.get("parity")), "?")
        ref = next((a.get("parity", {}).get("reference_accuracy") for a in arts.values()
                    if a.get("parity")), None)  # fmt: skip
        table = _table(["file", "scheme", "size", "vs fp32", "agreement", "max |Δp|",
                        "accuracy", ""], rows, cls="export")  # fmt: skip
        check_dir = check.get("dir", "the run's validation images")
        err = self.s["export"].get("error")
        warn = (
            '<p class="warn"><b>Not every format passed verification</b>, so those files were not '
            "kept; the demo went on with the ones that did. A briefly trained model has many "
            "images close to a decision boundary, where int8 rounding can flip the top class. "
            f'<br><span class="small">{_e(err)}</span></p>'
            if err
            else ""
        )
        return (
            '<section id="export"><h2><span class="num">3</span>Export</h2>'
            f"<p>Every file carries its own labels and preprocessing contract and was checked "
            f"against the Keras model on {_e(n)} validation images through "
            f"<code>edgecnn.runtime</code> (Keras accuracy {_pct(ref)}). <i>Agreement</i> is the "
            f"share of images with the same top-1 class, <i>max |Δp|</i> the largest difference "
            f"in any class probability. From <code>{EXPORT_DIR}/{MANIFEST}</code>.</p>"
            f"{warn}{table}"
            f'<p class="small">Check set: {_e(check_dir)}</p>'
            "</section>"
        )

    # -- 4. bench --

    def _bench(self) -> str:
        rows = []
        for r in self.bench.get("rows", []):
            if r.get("error"):
                word = "skipped" if r.get("skipped") else "error"
                rows.append([f"<code>{_e(r['artifact'])}</code>", _e(r["backend"]),
                             f'<span class="bad" title="{_e(r["error"])}">{word}</span>',
                             *(["–"] * 6)])  # fmt: skip
                continue
            rows.append([
                f"<code>{_e(r['artifact'])}</code>",
                _e(r["backend"]),
                _e(r.get("threads")),
                _ms(r.get("load_s") and r["load_s"] * 1e3),
                _ms(r.get("p50_ms")),
                _ms(r.get("p99_ms")),
                f"{r['fps']:.0f}" if r.get("fps") else "–",
                _size(r.get("peak_rss_bytes")),
                f"{_pct(r.get('accuracy'))} / {_pct(r.get('agreement'))}",
            ])  # fmt: skip
        cfg = self.bench.get("config", {})
        data = self.bench.get("data") or {}
        table = _table(["artifact", "backend", "threads", "load ms", "p50 ms", "p99 ms", "FPS",
                        "peak RSS", "accuracy / agreement"], rows)  # fmt: skip
        return (
            '<section id="bench"><h2><span class="num">4</span>Benchmark</h2>'
            "<p>Each artifact × backend ran in its own process (imports, thread pools and memory "
            f"never mix): batch 1, {_e(cfg.get('runs'))} timed runs after warm-up. Accuracy and "
            f"top-1 agreement with Keras are on the {_e(data.get('n_images', '?'))} held-back "
            "images. From <code>bench/bench.json</code>.</p>"
            + table
            + _figure(_png_file(self.run / BENCH_DIR / BENCH_FILES["png"]), "benchmark plot",
                      "p50 latency with p99 marks, and accuracy (<code>bench/bench.png</code>)",
                      cls="wide")
            + "</section>"
        )  # fmt: skip

    # -- 5. camera shifts --

    def _shifts(self) -> str:
        sh = self.s.get("shifts")
        head = '<section id="shifts"><h2><span class="num">5</span>Camera shifts</h2>'
        if not sh:
            return head + '<p class="missing">camera shifts: not measured</p></section>'
        clean = sh.get("accuracy")
        views = self._shift_views(sh)
        n = sh.get("images")

        def row(label: str, what: str, acc: float | None, right: str, view: str | None) -> list:
            known = acc is not None and clean is not None and label != "clean"
            drop = f"{100 * (acc - clean):+.1f}" if known else _NONE
            cell = f'<img src="{view}" alt="{_e(label)} example">' if view else ""
            name = f"<code>{_e(label)}</code>" if label in sh["shifts"] else _e(label)
            return [cell, name, _e(what), _pct(acc), drop, _e(right)]

        rows = [row("clean", "the held-back image as it is", clean,
                    f"{sh.get('correct')}/{n}", views.get("clean"))]  # fmt: skip
        for name, v in sh["shifts"].items():
            rows.append(row(name, _shift_doc(name), v.get("accuracy"),
                            f"{v.get('correct')}/{v.get('images')}", views.get(name)))  # fmt: skip
        mean = sh.get("shift_mean_accuracy")
        rows.append(row(f"mean over {len(sh['shifts'])} shifts", "", mean, "", None))
        table = _table(["example", "shift", "what it imitates", "accuracy", "vs clean (points)",
                        "right"], rows, cls="shifts")  # fmt: skip
        return (
            head + f"<p>Photos from other cameras are rarely as clean as the training images. "
            f"<code>{_e(Path(sh['model']).name)}</code> ({_e(sh.get('backend'))}) classified all "
            f"{_e(n)} held-back images (the benchmark's accuracy set: never trained on, and "
            "larger than the model input, as photos are) as they are, then under each of a "
            "fixed, seeded suite of "
            "camera-like shifts — one pass over the images per shift, each applied at the "
            "image's own resolution before the same preprocessing as everywhere. Clean "
            f"<b>{_pct(clean)}</b>, mean over the shifts <b>{_pct(mean)}</b>. The example "
            "column is the first held-back image as it was scored (shown as JPEG at quality "
            "90). The same table "
            "for any model and folder: <code>edgecnn eval MODEL DATA --shifts</code>.</p>"
            + table
            + f'<p class="small">Seed {_e(sh.get("seed"))}; images: {_e(sh.get("data"))}</p>'
            "</section>"
        )

    def _shift_views(self, sh: dict) -> dict[str, str]:
        """The example image clean and under each shift, as scored (same seed and index)."""
        from edgecnn.runtime.errors import ImageError
        from edgecnn.runtime.preprocess import load_bgr
        from edgecnn.runtime.shifts import SHIFTS, apply_shift

        try:
            bgr = load_bgr(sh["example"])
        except (KeyError, ImageError):
            return {}
        # JPEG at high quality keeps each view at its full resolution in a seventh of PNG's bytes
        views = {"clean": _encode(bgr, ".jpg", 90)}
        for name in sh["shifts"]:
            if name in SHIFTS:
                shifted = apply_shift(name, bgr, index=0, seed=sh.get("seed", 0))
                views[name] = _encode(shifted, ".jpg", 90)
        return views

    # -- 6. live --

    def _live(self) -> str:
        lv = self.s["live"]
        s = lv["summary"]
        strip = self._strip(lv)
        stages = [[_e(k), _ms(v), _ms(s["p99_ms"].get(k))] for k, v in s["p50_ms"].items()]
        stages.append(["frame age", _ms(s["frame_age_ms"]["p50"]), _ms(s["frame_age_ms"]["p99"])])
        window = lv.get("window_note") or "headless"
        return (
            '<section id="live"><h2><span class="num">6</span>Live</h2>'
            f"<p>A {s['frames']}-frame clip made of held-back images "
            f"(<code>live/clip.mp4</code>) went through the same loop as "
            f"<code>edgecnn run</code> on <code>{_e(Path(lv['model']).name)}</code> ({_e(window)}). "
            f"It ran at <b>{s['fps']:.0f} FPS</b> and named the right shape on "
            f"<b>{_pct(lv.get('accuracy'), 0)}</b> of the frames. Annotated frames from "
            "<code>live/annotated.mp4</code>:</p>"
            f"{strip}"
            + '<div class="two"><div>'
            + _table(["stage", "p50 ms", "p99 ms"], stages, cls="narrow")
            + "</div>"
            + self._live_facts(lv)
            + "</div></section>"
        )

    def _live_facts(self, lv: dict) -> str:
        s = lv["summary"]
        facts = [
            ("frames processed", f"{s['frames']} of {lv.get('frames_in_clip', '?')}"),
            ("dropped", str(s["dropped"])),
            ("throughput", f"{s['fps']:.0f} FPS over {s['seconds']:.2f} s"),
            ("right shape", _pct(lv.get("accuracy"), 1)),
            ("model", Path(lv["model"]).name),
        ]
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        return (
            f'<div><dl class="facts">{items}</dl><p class="small">Capture runs in its own '
            "thread; <i>total</i> is capture-to-result latency. A file is read frame by frame "
            "as fast as the model keeps up; a camera would be paced by the camera.</p></div>"
        )

    def _strip(self, lv: dict) -> str:
        """The last (most zoomed) frame of each clip image, read back from the annotated video."""
        import cv2

        truth = (_read_json(self.root / "live" / "truth.json") or {}).get("frames", [])
        per = int(lv.get("frames_per_image") or 1)
        predicted = {}
        jsonl = Path(lv["jsonl"])
        if jsonl.is_file():
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                predicted[r["seq"]] = (r["label"], r["score"])
        wanted = [i * per + per - 1 for i in range(len(truth) // per)][:STRIP_FRAMES]
        cap = cv2.VideoCapture(str(lv["annotated"]))
        frames, index = {}, 0
        try:
            while wanted and index <= wanted[-1]:
                ok, frame = cap.read()
                if not ok:
                    break
                if index in wanted:
                    frames[index] = frame
                index += 1
        finally:
            cap.release()
        cells = []
        for i in wanted:
            if i not in frames:
                continue
            label, score = predicted.get(i, ("?", 0.0))
            right = label == truth[i]
            mark = '<span class="ok">✓</span>' if right else '<span class="bad">✗</span>'
            cells.append(
                f'<figure><img src="{_encode(frames[i], ".jpg")}" alt="annotated frame {i}">'
                f"<figcaption>{mark} frame {i}: true <b>{_e(truth[i])}</b></figcaption></figure>"
            )
        if not cells:
            return '<p class="missing">no annotated frames could be read back</p>'
        return f'<div class="strip">{"".join(cells)}</div>'

    # -- 7. your photos, 8. the Pi --

    def _your_photos(self) -> str:
        int8 = by_name("tflite-int8")
        return (
            '<section id="own"><h2><span class="num">7</span>Now with your own photos</h2>'
            "<p>Put them in one sub-folder per class (any number of classes ≥ 2; JPEG, PNG, BMP, "
            "WebP, TIFF, GIF). Keep a few per class aside in the same layout for testing.</p>"
            '<pre class="tree">photos/\n  cats/  0001.jpg  0002.jpg …\n  dogs/  0001.jpg …\n'
            "photos-test/\n  cats/ …\n  dogs/ …</pre>"
            + _code(
                [
                    "# 1. train the edge model (a progress bar per epoch; Ctrl-C saves, --resume continues)",
                    "edgecnn train photos/ --val-split 0.2 --out runs/mine",
                    "# 2. export every format, each verified against the Keras model",
                    "edgecnn export runs/mine",
                    "# 3. check it on photos it has never seen, and try single images",
                    f"edgecnn eval runs/mine/{int8.path} photos-test/",
                    f"edgecnn predict runs/mine/{int8.path} my_cat.jpg",
                    "# 4. how fast is each backend on this machine?",
                    "edgecnn bench runs/mine --data photos-test/",
                    "# 5. live on the webcam (a desktop OpenCV build) or a video file",
                    f"edgecnn run runs/mine/{int8.path} --source 0 --show",
                    f"edgecnn run runs/mine/{int8.path} --source clip.mp4 --record out.mp4",
                ]
            )  # fmt: skip
            + "<p>Or replay this demo's own clip, printing one JSON line per frame:</p>"
            + _code(
                [
                    f"edgecnn run {self.s['live']['model']} --source {self.s['live']['clip']} "
                    "--jsonl -"
                ]
            )
            + "</section>"
        )

    def _pi(self) -> str:
        int8 = by_name("tflite-int8")
        return (
            '<section id="pi"><h2><span class="num">8</span>On a Raspberry Pi</h2>'
            "<p>The int8 file is all the Pi needs: it carries its labels and preprocessing, and "
            "the runtime has no TensorFlow in it (numpy, OpenCV and LiteRT).</p>"
            + _code(
                [
                    "# on your computer: copy the model",
                    f"scp runs/mine/{int8.path} pi@raspberrypi.local:~/",
                    "# on the Pi",
                    "python3 -m venv ~/edgecnn && . ~/edgecnn/bin/activate",
                    'pip install "edgecnn[tflite]"',
                    f"edgecnn run {int8.file} --source 0 --serve 0.0.0.0:8080",
                ]
            )  # fmt: skip
            + "<p>Then open the address it prints (with its access token) on a phone or laptop "
            "on the same network to watch the annotated video and the live label. To try this "
            f"demo's model instead, copy <code>{_e(Path(self.s['live']['model']))}</code>.</p>"
            "</section>"
        )


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><div class="wrap"><h1>edgecnn <span>demo report</span></h1><p>{subtitle}</p>
<nav>{nav}</nav></div></header>
<main class="wrap">
{body}
</main>
<footer><div class="wrap">{footer}</div></footer>
</body>
</html>
"""

_CSS = """
:root { --ink:#1d2433; --muted:#5d6b82; --line:#e3e8f0; --bg:#f6f8fb; --card:#fff;
  --accent:#2f6fed; --ok:#1b8a4b; --bad:#c0392b; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 16px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "Noto Sans", "DejaVu Sans", sans-serif; }
.wrap { max-width: 1080px; margin: 0 auto; padding: 0 28px; }
header { background: linear-gradient(135deg, #14213d 0%, #1f3b73 60%, #2f6fed 100%);
  color:#fff; padding: 34px 0 0; }
header h1 { margin:0; font-size: 34px; letter-spacing:-0.5px; font-weight:700; }
header h1 span { font-weight:300; opacity:.85; }
header p { margin: 6px 0 22px; color:#c9d6f2; font-size:14px; }
nav { display:flex; gap:4px; flex-wrap:wrap; }
nav a { color:#dfe8fb; text-decoration:none; font-size:14px; padding:9px 14px 11px;
  border-radius: 8px 8px 0 0; }
nav a:hover { background: rgba(255,255,255,.12); color:#fff; }
main { padding-top: 8px; }
section { background:var(--card); border:1px solid var(--line); border-radius:14px;
  padding: 26px 30px; margin: 22px 0; box-shadow: 0 1px 2px rgba(20,33,61,.04); }
section#overview { background:transparent; border:none; box-shadow:none; padding: 14px 0 0; }
h2 { margin: 0 0 12px; font-size: 22px; letter-spacing:-0.2px; display:flex; align-items:center;
  gap:12px; }
.num { display:inline-flex; width:30px; height:30px; border-radius:50%; background:var(--accent);
  color:#fff; font-size:15px; align-items:center; justify-content:center; font-weight:600; }
p { margin: 0 0 14px; }
.lead { font-size: 17px; color:#35405a; max-width: 860px; }
.small, .missing { color: var(--muted); font-size: 13px; }
.warn { background:#fff4e5; border-left:4px solid #f0a020; padding:10px 14px; border-radius:6px; }
code { font-family: "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: .88em; background:#eef2f8; padding: 1px 5px; border-radius:4px; }
.cards { display:grid; grid-template-columns: repeat(5, 1fr); gap: 14px; margin-top: 6px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:16px 18px; }
.card .k { font-size:12px; text-transform:uppercase; letter-spacing:.6px; color:var(--muted); }
.card .v { font-size:28px; font-weight:700; margin: 4px 0 2px; letter-spacing:-0.5px; }
.card .n { font-size:13px; color:var(--muted); }
table { border-collapse: collapse; width:100%; font-size:14px; margin: 6px 0 16px;
  font-variant-numeric: tabular-nums; }
table.narrow { width:auto; min-width: 320px; }
th { text-align:left; font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase;
  letter-spacing:.5px; border-bottom: 2px solid var(--line); padding: 8px 10px; }
td { padding: 8px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
tbody tr:nth-child(even) td { background:#fafbfd; }
th:nth-child(n+3), td:nth-child(n+3) { text-align:right; }
table.narrow th:nth-child(n+2), table.narrow td:nth-child(n+2) { text-align:right; }
td code { background:transparent; padding:0; }
th { white-space: nowrap; }
table.export td:nth-child(2) { white-space: normal; color: var(--muted); font-size: 13px; }
table.shifts th:nth-child(3), table.shifts td:nth-child(3) { text-align:left; white-space: normal;
  color: var(--muted); font-size: 13px; }
table.shifts td:first-child { padding: 4px 10px; }
table.shifts td img { width:64px; height:64px; border-radius:6px; display:block;
  object-fit: contain; image-rendering: pixelated; }
table.shifts tr:last-child td { font-weight:600; border-top: 2px solid var(--line); }
.ok { color:var(--ok); font-weight:600; }
code.gone { text-decoration: line-through; color: var(--muted); }
.bad { color:var(--bad); font-weight:600; }
figure { margin: 8px 0 10px; }
figure img { max-width:100%; border-radius:8px; border:1px solid var(--line); display:block; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; }
figure.wide img { width:100%; }
.two { display:grid; grid-template-columns: minmax(0, 1.1fr) minmax(0, 1fr); gap: 28px;
  align-items:start; }
.samples { display:flex; flex-direction:column; gap:10px; margin-top: 8px; }
.grid-row { display:flex; align-items:center; gap:16px; }
.cls { width:90px; font-weight:600; text-align:right; color:#35405a; }
.thumbs { display:flex; gap:8px; flex-wrap:wrap; }
.thumbs img { width:76px; height:76px; border-radius:8px; image-rendering: pixelated;
  box-shadow: 0 1px 3px rgba(20,33,61,.18); }
.strip { display:grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap:16px;
  margin: 8px 0 18px; }
.strip figure { margin:0; }
.strip img { width:100%; }
pre { background:#101828; color:#e4e9f2; border-radius:10px; padding: 16px 18px; overflow-x:auto;
  font: 13.5px/1.65 "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
pre code { background:transparent; padding:0; color:inherit; font-size:inherit; }
pre .c { color:#8a97b0; }
pre .p { color:#5fd38d; user-select:none; }
pre.tree { background:#eef2f8; color:#35405a; }
dl.facts { display:grid; grid-template-columns: max-content 1fr; gap: 8px 18px; margin: 8px 0 14px;
  font-size: 15px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
footer { color:var(--muted); font-size:13px; padding: 8px 0 40px; }
footer p { margin: 4px 0; }
@media (max-width: 820px) { .cards { grid-template-columns: repeat(2, 1fr); }
  .two { grid-template-columns: 1fr; } }
"""
