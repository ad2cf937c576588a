"""JupyterLab on a free port and a headless Debian Chromium, for tests in a real browser.

Every process the server starts (the server, its kernels, the kernels' cluster processes)
inherits an environment marker unique to the test run, so teardown can find each one by its
/proc/PID/environ, even a process reparented to init, and make sure none survives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MARKER = "KAFKALAB_BROWSER_TEST"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SERVER_START_TIMEOUT_S = 60.0
PROCESS_EXIT_TIMEOUT_S = 15.0


def chromium_executable() -> str | None:
    """Debian's chromium; a browser is never downloaded."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("KAFKALAB_ARTIFACTS") or Path(__file__).parent / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(token: str) -> set[int]:
    """Live processes whose environment carries this run's marker."""
    needle = f"{MARKER}={token}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.add(int(entry))
    return found


def describe_pids(pids: set[int]) -> list[str]:
    out = []
    for pid in sorted(pids):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "(gone)"
        out.append(f"{pid}: {cmd[:160]}")
    return out


def wait_for(condition: Any, timeout: float, interval: float = 0.1) -> Any:
    """Poll condition() until truthy or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@dataclass
class JupyterLab:
    root: Path
    port: int
    token: str
    proc: subprocess.Popen
    log_path: Path
    kernel_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def processes(self) -> set[int]:
        """Every live process this server or its kernels started (the server included)."""
        return marked_pids(self.token)

    def children_of_server(self) -> set[int]:
        return self.processes() - {self.proc.pid}

    def wait_children_gone(self, timeout: float = PROCESS_EXIT_TIMEOUT_S) -> list[str]:
        """Wait for every process under the server to exit; describes the ones that did not."""
        wait_for(lambda: not self.children_of_server(), timeout)
        return describe_pids(self.children_of_server())

    def shutdown_kernels(self) -> None:
        """Ask the server to shut every kernel down, as closing a notebook's kernel does."""
        for kernel in self.api("GET", "/api/kernels"):
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _write_settings(settings_dir: Path) -> None:
    # No news/update toast: it fetches from the network and covers widgets in screenshots.
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _stop_server(lab: JupyterLab) -> list[str]:
    """Shut kernels down, stop the server's process group, SIGKILL any marked survivor.
    Returns a description of the survivors that had to be killed (empty when clean)."""
    if lab.proc.poll() is None:
        try:
            lab.shutdown_kernels()
        except (OSError, urllib.error.URLError, ValueError):
            pass
        wait_for(lambda: not lab.children_of_server(), PROCESS_EXIT_TIMEOUT_S)
        try:
            os.killpg(lab.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            lab.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait(timeout=10)
    survivors = lab.processes()
    described = describe_pids(survivors)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not lab.processes(), 5.0)
    return described


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[JupyterLab]:
    """JupyterLab, headless, on a free port, serving `tmp_path / "root"`."""
    root, settings = tmp_path / "root", tmp_path / "lab-settings"
    root.mkdir()
    _write_settings(settings)
    token, port = uuid.uuid4().hex, _free_port()
    env = {
        **os.environ,
        MARKER: token,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = artifacts_dir() / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", "--allow-root", f"--ServerApp.root_dir={root}"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    lab = JupyterLab(root, port, token, proc, log_path)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n"
                                   f"{lab.log_tail()}")
            try:
                with urllib.request.urlopen(lab.url + "/lab", timeout=2) as resp:
                    return resp.status == 200
            except (OSError, urllib.error.URLError):
                return False
        if not wait_for(ready, SERVER_START_TIMEOUT_S, 0.2):
            raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                               f"{lab.log_tail()}")
        yield lab
    finally:
        survivors = _stop_server(lab)
        if survivors:
            pytest.fail("processes outlived the JupyterLab server and its kernels "
                        "(killed now):\n" + "\n".join(survivors), pytrace=False)


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots and logs go: $KAFKALAB_ARTIFACTS or tests/browser/artifacts/."""
    return artifacts_dir()


@pytest.fixture
def chromium_page() -> Iterator[Any]:
    """A Playwright page in Debian's chromium (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1900})
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            yield page
        finally:
            if "page" in locals():
                try:  # the last thing the page showed, for a failure in CI
                    page.screenshot(path=str(artifacts_dir() / "last-page.png"), timeout=5_000)
                except sync_api.Error:
                    pass
            if "console" in locals():
                (artifacts_dir() / "browser-console.log").write_text("\n".join(console) + "\n")
            browser.close()
