"""A real headless Chromium for tests of HTML output (the report), driven over the DevTools protocol.

:func:`ensure_chromium` finds Debian's ``chromium`` and, when it is missing
and we are root, installs it (``apt-get install -y chromium``, with
``apt-get update`` only when the package lists lack it), as
:mod:`cdiplatform.testing.slurm` installs SLURM. :class:`Chromium` starts it
headless with ``--remote-debugging-pipe`` and speaks the Chrome DevTools
Protocol over that pipe (NUL-separated JSON, standard library only: no
websocket client, no playwright, no browser download)::

    with Chromium() as browser:
        page = browser.load(Path("report/index.html").resolve().as_uri())
        assert not page.errors                      # console errors, exceptions, failed loads
        widths = browser.evaluate("[...document.images].map(i => i.naturalWidth)")
        png = browser.screenshot()
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserError", "Chromium", "PageLoad", "chromium_path", "ensure_chromium"]

#: Debian's package; ``--no-install-recommends`` keeps it to the browser and its libraries
PACKAGES = ("chromium",)
#: commands that start a Chromium, first found wins
COMMANDS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOCK_PATH = Path("/tmp/cdip-chromium.lock")

#: no first-run pages, no extensions, no traffic to Google: a test browser that only opens what it is given
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
    "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """Chromium could not be installed, started or driven; the message says what happened."""


def chromium_path() -> str | None:
    """The Chromium executable on ``PATH`` (``CDIP_CHROMIUM`` overrides), or None."""
    override = os.environ.get("CDIP_CHROMIUM")
    if override:
        return shutil.which(override)
    for name in COMMANDS:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(*, install: bool = True, timeout: float = 900.0) -> str:
    """The Chromium executable, installed with ``apt-get`` first when missing (root only).

    Parameters
    ----------
    install : bool
        Install Debian's ``chromium`` when no browser is found (needs root,
        ``apt-get`` and a package mirror); if False a missing browser is an error.
        A browser named by ``CDIP_CHROMIUM`` is never installed.
    timeout : float
        Seconds allowed for ``apt-get install``.

    Returns
    -------
    str
        Path of the executable.

    Raises
    ------
    BrowserError
        No browser, and it cannot be installed (not root, no apt-get, the install failed).
    """
    found = chromium_path()
    if found:
        return found
    if os.environ.get("CDIP_CHROMIUM"):
        raise BrowserError(f"CDIP_CHROMIUM={os.environ['CDIP_CHROMIUM']} is not an executable on PATH")
    if not install:
        raise BrowserError("no chromium on PATH (install it: apt-get install -y chromium)")
    if shutil.which("apt-get") is None:
        raise BrowserError("no chromium on PATH and no apt-get to install it with")
    if os.geteuid() != 0:
        raise BrowserError("no chromium on PATH; installing it needs root (apt-get install -y chromium)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(LOCK_PATH, "a") as lock:  # parallel test sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if chromium_path():
            return str(chromium_path())
        if subprocess.run(["apt-cache", "show", *PACKAGES], capture_output=True, check=False).returncode != 0:
            _apt(["apt-get", "update"], env=env, timeout=timeout)
        _apt(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env=env, timeout=timeout)
    found = chromium_path()
    if not found:
        raise BrowserError(f"apt-get installed {', '.join(PACKAGES)} but no chromium is on PATH")
    return found


def _apt(cmd: list[str], *, env: dict[str, str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BrowserError(f"{' '.join(cmd)} took more than {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BrowserError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")


@dataclass
class PageLoad:
    """What loading one page produced.

    Attributes
    ----------
    url : str
        The page.
    errors : list of str
        Console errors and assertions, uncaught exceptions, error log entries
        (a resource that failed to load) and failed requests, in order.
    requests : list of str
        Every URL the page requested (itself, its style sheets, images...).
    """

    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Chromium:
    """A headless Chromium with one tab, driven over the DevTools protocol pipe.

    Parameters
    ----------
    executable : str, optional
        The browser (default: :func:`chromium_path`).
    width, height : int
        Viewport in CSS pixels (device scale factor 1).
    timeout : float
        Seconds to wait for any one reply or page load.
    """

    def __init__(self, *, executable: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 20.0) -> None:
        self.executable = executable or chromium_path()
        if not self.executable:
            raise BrowserError("no chromium on PATH (install it: apt-get install -y chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self._proc: subprocess.Popen | None = None
        self._profile: tempfile.TemporaryDirectory | None = None
        self._messages: queue.Queue = queue.Queue()
        self._next_id = 0
        self._session: str | None = None
        self._page: PageLoad | None = None
        self._loaded = False

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the browser and open its tab."""
        self._profile = tempfile.TemporaryDirectory(prefix="cdip-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def pipes_on_3_and_4() -> None:  # the protocol pipe: the browser reads fd 3, writes fd 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        cmd = [self.executable, *_FLAGS, f"--user-data-dir={self._profile.name}",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, preexec_fn=pipes_on_3_and_4,  # noqa: PLW1509 - dup2 only
                                      close_fds=False)  # closing would take 3 and 4; ours are CLOEXEC
        os.close(to_browser_r)
        os.close(from_browser_w)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        """Close the browser (politely, then by force) and remove its profile."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(BrowserError, OSError):
                self._write({"id": -1, "method": "Browser.close"})
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            for fd in (self._to_browser, self._from_browser):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # ------------------------------------------------------------------ protocol
    def _write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._messages.put(json.loads(raw))

    def _drain_stderr(self) -> None:
        self._stderr: list[str] = []
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        for line in proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-30]

    def _next(self, deadline: float) -> dict[str, Any]:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError(f"chromium did not answer within {self.timeout:.0f} s") from None
        if message is None:
            tail = "\n".join(getattr(self, "_stderr", [])[-10:])
            raise BrowserError(f"chromium closed its DevTools pipe (exited {self._proc and self._proc.poll()})\n"
                               f"{tail}")
        self._event(message)
        return message

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command to the tab (or the browser before it exists); its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        self._write(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired":
            self._loaded = True
        page = self._page
        if page is None or method is None:
            return
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            page.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            page.errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            page.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip())
        elif method == "Network.requestWillBeSent":
            page.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            page.errors.append(f"failed to load ({params.get('type')}): {params.get('errorText')}")

    # ------------------------------------------------------------------ pages
    def load(self, url: str) -> PageLoad:
        """Open ``url`` in the tab and wait for its load event (every image and style sheet in).

        Raises
        ------
        BrowserError
            When the navigation fails outright or the page does not load in time.
        """
        self._page = PageLoad(url)
        self._loaded = False
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        deadline = time.monotonic() + self.timeout
        while not self._loaded:
            self._next(deadline)
        # events that raced the load event (a late console error) arrive with the next reply
        self.send("Runtime.evaluate", expression="0")
        return self._page

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:60]}: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page)."""
        return base64.b64decode(self.send("Page.captureScreenshot", format="png",
                                          captureBeyondViewport=full_page)["data"])
