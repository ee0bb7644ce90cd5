"""`--show` after a plain install: a headless OpenCV serves the live view on 127.0.0.1 and opens
it in the default browser (faked here; the page itself is checked in headless Chromium)."""

from __future__ import annotations

import io
import json
import threading
import urllib.request

import pytest
from _live_fixtures import ColourClassifier, SyntheticClip
from test_live_server import _browser, _chromium

import edgecnn.runtime.live.app as app
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.live import run_live


class Browser:
    """Stands in for `webbrowser.open`: records the URL and reads the page while the loop runs."""

    def __init__(self, clip: SyntheticClip, tmp_path, *, opens: bool = True) -> None:
        self.clip, self.tmp_path, self.opens = clip, tmp_path, opens
        self.urls: list[str] = []
        self.state: dict = {}
        self.dom = ""

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        threading.Thread(target=self._visit, args=(url,), daemon=True).start()
        return self.opens

    def _visit(self, url: str) -> None:
        try:
            for _ in range(100):
                with urllib.request.urlopen(url + "state", timeout=5) as resp:
                    self.state = json.loads(resp.read())
                if self.state.get("index") is not None and self.state["index"] >= 3:
                    break
            if _chromium() is not None:
                self.dom = _browser(["--dump-dom", url], self.tmp_path)
        finally:
            self.clip.finish()


def _show(monkeypatch, tmp_path, *, opens=True):
    monkeypatch.setattr(app, "has_gui_build", lambda: False)  # what opencv-python-headless is
    clip = SyntheticClip(lambda i: "green", fps=30, size=(160, 120))
    browser = Browser(clip, tmp_path, opens=opens)
    log = io.StringIO()
    summary = run_live(ColourClassifier(), clip, show=True, log=log, open_browser=browser)
    return browser, log.getvalue(), summary


def test_show_on_headless_opencv_opens_the_live_page_in_the_browser(monkeypatch, tmp_path):
    browser, log, summary = _show(monkeypatch, tmp_path)
    assert len(browser.urls) == 1 and browser.urls[0].startswith("http://127.0.0.1:")
    assert f"showing the live view in a browser at {browser.urls[0]}" in log
    assert browser.state["label"] == "green" and summary.frames >= 3
    if _chromium() is not None:
        assert '<div id="label" class="">green</div>' in browser.dom, browser.dom[:2000]


def test_show_prints_the_url_when_no_browser_starts(monkeypatch, tmp_path):
    browser, log, _ = _show(monkeypatch, tmp_path, opens=False)
    assert f"could not start a browser; open {browser.urls[0]} yourself" in log


def test_show_with_a_gui_opencv_still_wants_a_display(monkeypatch):
    monkeypatch.setattr(app, "has_gui_build", lambda: True)
    monkeypatch.setattr("edgecnn.runtime.live.outputs.has_gui_build", lambda: True)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(InputError, match="--show needs a display"):
        run_live(ColourClassifier(), SyntheticClip(lambda i: "green"), show=True)
