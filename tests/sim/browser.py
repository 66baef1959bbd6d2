"""Open a local HTML file in headless Chromium and report what went wrong in it.

Speaks the Chrome DevTools Protocol directly (httpx for the /json endpoint,
websocket-client for the page socket):

1. start ``chromium --headless=new --no-sandbox --disable-gpu
   --remote-debugging-port=0 --user-data-dir=<tmp> about:blank`` in its own process
   group; port 0 lets Chromium pick a free port, which it writes to
   ``<user-data-dir>/DevToolsActivePort`` (no race between picking and binding);
2. read the page target's ``webSocketDebuggerUrl`` from ``http://127.0.0.1:<port>/json``;
3. enable Page, Runtime, Log and Network, navigate to the ``file://`` URL, wait for
   ``Page.loadEventFired`` and a short settle;
4. collect ``Runtime.exceptionThrown``, ``Runtime.consoleAPICalled`` of type
   error/assert, ``Log.entryAdded`` of level error, and every request that is not
   ``file:``/``data:``/``blob:``/``about:`` (the page must not touch the network);
5. evaluate the number of rendered plotly graphs, the document title and any
   expressions the caller asks for; optionally save a full-page PNG screenshot;
6. always kill the browser's process group and remove the profile directory (Chromium's
   ``$TMPDIR`` is inside it, so its ``org.chromium.Chromium.*`` socket folder goes too).

Everything runs under one hard deadline.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websocket  # websocket-client

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# plotly graphs that actually drew: the container exists, plotly attached its layout,
# and the main svg is in the DOM
_COUNT_PLOTS = """
Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(el => el._fullLayout && el.querySelector('svg.main-svg')).length
"""


class BrowserError(RuntimeError):
    """Chromium could not be started or driven (not a finding about the page)."""


@dataclass
class BrowserResult:
    errors: list[str] = field(default_factory=list)     # console errors and exceptions
    plots: int = 0                                      # rendered plotly graphs
    title: str = ""
    requests: list[str] = field(default_factory=list)  # non-local URLs the page asked for
    probe: Any = None                                   # what ``probe(session)`` returned
    values: dict[str, Any] = field(default_factory=dict)  # the caller's expressions, evaluated


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _remote_object(obj: dict[str, Any]) -> str:
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type", "?"))


class _Session:
    """One page websocket: commands with ids, events buffered and classified."""

    def __init__(self, ws_url: str, deadline: float, origin: str = "") -> None:
        self.deadline = deadline
        self.origin = origin  # an http page's own origin: its requests are local
        self.ws = websocket.create_connection(ws_url, timeout=self._left(), suppress_origin=True)
        self.next_id = 0
        self.result = BrowserResult()
        self.loaded = False

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("hard timeout while talking to Chromium")
        return left

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()

    def _event(self, msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        r = self.result
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception") or {}
            r.errors.append(f"exception: {exc.get('description') or d.get('text', '?')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(_remote_object(a) for a in p.get("args", []))
            r.errors.append(f"console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            r.errors.append(f"log[{e.get('source', '?')}]: {e.get('text', '')} {e.get('url', '')}".rstrip())
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:", "blob:", "about:")) and not (
                    self.origin and url.startswith(self.origin + "/")):
                r.requests.append(url)
        elif method == "Page.loadEventFired":
            self.loaded = True

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        self.ws.settimeout(max(0.01, min(timeout, self._left())))
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        while True:
            msg = self._recv(self._left())
            if msg is None:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                res: dict[str, Any] = msg.get("result", {})
                return res
            if "method" in msg:
                self._event(msg)

    def pump(self, seconds: float, until_loaded: bool = False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until_loaded and self.loaded):
            msg = self._recv(end - time.monotonic())
            if msg is not None and "method" in msg:
                self._event(msg)

    def screenshot(self, path: Path, width: int = 1440, height: int = 1000) -> None:
        """A PNG of the page at ``width`` x ``height`` CSS pixels."""
        import base64

        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.pump(0.5)
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluate failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")


def open_in_chromium(path: Path | str, *, settle: float = 0.5, timeout: float = 60.0,
                     binary: str | None = None, evaluate: dict[str, str] | None = None,
                     screenshot: Path | None = None, width: int = 1280,
                     clip: tuple[int, int] | None = None,
                     probe: Callable[[_Session], Any] | None = None) -> BrowserResult:
    """Load ``path`` (a file, or an ``http://`` URL: a served page, whose own origin's
    requests are local) in a fresh headless Chromium (``width`` CSS px wide) and return
    errors, plot count, title, the value of each expression in ``evaluate`` (by name) and
    what ``probe(session)`` (run after the settle) returned; with ``screenshot``, also write
    a full-page PNG there (``clip``: only the band of (top, height) CSS pixels)."""
    binary = binary or find_chromium()
    if binary is None:
        raise BrowserError("no chromium binary found (tried: " + ", ".join(CANDIDATES) + ")")
    served = isinstance(path, str) and path.startswith(("http://", "https://"))
    url = str(path) if served else Path(path).resolve().as_uri()
    origin = "/".join(url.split("/")[:3]) if served else ""
    deadline = time.monotonic() + timeout
    profile = Path(tempfile.mkdtemp(prefix="gl-chromium-"))
    log = (profile.parent / (profile.name + ".log")).open("w+b")
    # Chromium puts its singleton socket in a fresh $TMPDIR/org.chromium.Chromium.* folder
    # that a killed browser never removes (hundreds piled up in /tmp): give it one inside
    # the profile, removed with it
    (profile / "tmp").mkdir()
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--remote-allow-origins=*",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TMPDIR": str(profile / "tmp")})
    session: _Session | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        port = 0
        while port == 0:
            if proc.poll() is not None:
                log.seek(0)
                raise BrowserError(f"chromium exited with {proc.returncode}: "
                                   f"{log.read()[-2000:].decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise BrowserError("hard timeout waiting for Chromium's DevTools port")
            with contextlib.suppress(OSError, ValueError, IndexError):
                port = int(port_file.read_text().splitlines()[0])
            if port == 0:
                time.sleep(0.05)
        ws_url = None
        while ws_url is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=5).json()
                ws_url = next((t["webSocketDebuggerUrl"] for t in targets
                               if t.get("type") == "page" and "webSocketDebuggerUrl" in t), None)
            if ws_url is None:
                if time.monotonic() > deadline:
                    raise BrowserError("hard timeout waiting for a page target")
                time.sleep(0.05)
        session = _Session(ws_url, deadline, origin)
        for domain in ("Page", "Runtime", "Log", "Network"):
            session.call(f"{domain}.enable")
        session.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        session.call("Page.navigate", {"url": url})
        session.pump(deadline - time.monotonic() - 1, until_loaded=True)
        if not session.loaded:
            raise BrowserError(f"page did not finish loading: {url}")
        session.pump(settle)
        result = session.result
        if probe is not None:
            result.probe = probe(session)
        result.plots = int(session.evaluate(_COUNT_PLOTS) or 0)
        result.title = str(session.evaluate("document.title") or "")
        for name, expr in (evaluate or {}).items():
            result.values[name] = session.evaluate(expr)
        if screenshot is not None:
            params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
            if clip is not None:
                params["clip"] = {"x": 0, "y": clip[0], "width": width, "height": clip[1],
                                  "scale": 1}
            shot = session.call("Page.captureScreenshot", params)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        session.pump(0.05)  # anything the evaluation itself logged
        return result
    finally:
        if session is not None:
            session.close()
        _kill(proc)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(log.name)
