"""JupyterLab on localhost driven by headless Chromium, for the browser tests and the scale benchmark.

Chromium is Debian's (``apt-get install chromium``, which ``make test`` does when it is
missing): Playwright drives it through ``executable_path``, since Playwright's own browser
download does not work on machines without general network access.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab server."""

    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path

    def url(self, notebook: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}&reset"

    def shut_down_kernels(self) -> None:
        """Stop every kernel the notebooks started, so that one test's kernel (its model, its
        threads) does not compete with the next test's."""
        def call(method: str, path: str):
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}?token={self.token}", method=method)
            with urllib.request.urlopen(request, timeout=30) as reply:
                return json.loads(reply.read() or b"null")

        for kernel in call("GET", "/api/kernels"):
            call("DELETE", f"/api/kernels/{kernel['id']}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_lab(root: Path, *, timeout: float = 120) -> Lab:
    """JupyterLab on 127.0.0.1 at a free port with a token, serving ``root``, with its settings,
    workspaces and runtime files in ``root/.lab`` (nothing of the user's is read or written).
    The kernels it starts inherit this process's environment (PYTHONPATH included)."""
    state = root / ".lab"
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # No "get Jupyter news?" toast over the page, no update checks.
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(state / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"))
    port, token = free_port(), secrets.token_hex(16)
    log = state / "jupyterlab.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=root,
    )
    lab = Lab(process, port, token, root, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as reply:
                if reply.status == 200:
                    return lab
        except OSError:
            time.sleep(0.5)
    lab.stop()
    raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def write_notebook(path: Path, source: str) -> Path:
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(notebook, path)
    return path


def run_notebook_in_lab(page, lab: Lab, notebook: str, *, timeout_ms: float = 180_000) -> float:
    """Open ``notebook`` in JupyterLab, wait for its kernel, run its first cell; returns the
    time.monotonic() at which the cell started running.

    A cell run before the kernel's session is connected is dropped without a word, so the run
    is retried until the cell's prompt shows it queued or running.
    """
    page.goto(lab.url(notebook))
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=timeout_ms)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=timeout_ms)
    prompt = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt")
    for _ in range(10):
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        started = time.monotonic()
        page.keyboard.press("Control+Enter")  # run in place: no new cell to move the focus to
        try:
            page.wait_for_function("e => /\\[(\\*|\\d+)\\]/.test(e.textContent)", arg=prompt.element_handle(),
                                   timeout=5_000)
            return started
        except Exception:  # noqa: BLE001 - not taken yet: the kernel was not connected
            page.wait_for_timeout(1_000)
    raise RuntimeError(f"JupyterLab did not run the first cell of {notebook}")


#: What a notebook shows when its cell failed: a traceback, or a widget view that could not be made.
FAILED_CELL_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output')]
    .some(e => /Traceback \\(most recent call last\\)|Error displaying widget|Error creating widget/.test(e.textContent))"""


def wait_in_notebook(page, lab: Lab, selector: str, *, timeout_ms: float, screenshot: Path) -> None:
    """Wait for ``selector`` (a Playwright selector) in the running notebook. If the cell raises, or
    its widget cannot be shown, fail at once with what the notebook shows; if time runs out, fail
    with that, the kernel's status and the end of JupyterLab's log (a bare timeout says nothing)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        if page.locator(selector).count():
            return
        if page.evaluate(FAILED_CELL_JS):
            problem = "the cell failed"
            break
        if time.monotonic() > deadline:
            problem = f"no {selector!r} after {timeout_ms / 1000:.0f} s"
            break
        page.wait_for_timeout(250)
    page.screenshot(path=screenshot)
    outputs = "\n".join(e.inner_text() for e in page.query_selector_all(".jp-OutputArea-output"))[-4000:]
    status = " | ".join(e.inner_text() for e in page.query_selector_all(".jp-StatusBar-TextItem"))
    raise AssertionError(f"{problem}.\nkernel status: {status}\ncell outputs:\n{outputs}\n"
                         f"JupyterLab log:\n{lab.log.read_text()[-3000:]}\nscreenshot: {screenshot}")
