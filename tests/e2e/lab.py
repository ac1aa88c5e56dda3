"""A JupyterLab server on 127.0.0.1 and a Playwright driver for one notebook in it.

Everything the tests touch lives in a temporary folder: the notebooks, Jupyter's config, data,
runtime and settings folders, IPython's folder and the browser profile. The server listens on
loopback only; JupyterLab's news and update checks are off, and Chromium resolves no host but
127.0.0.1, so nothing reaches the network.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: the notebooks the tests open (copied into the server's root folder)
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"

#: Chromium flags that keep it off the network and quiet (issue 10).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # every host name but loopback fails to resolve: a stray request fails at once
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

#: JupyterLab user settings: no news or update checks, every cell kept in the DOM (the default
#: windowing leaves cells outside the viewport unrendered), no autosave into the test folder.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}

STDERR = "application/vnd.jupyter.stderr"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """``python -m jupyterlab`` on a free loopback port with a fresh token, in ``folder``."""

    def __init__(self, folder: Path, notebooks: list[Path], startup_timeout: float = 90.0):
        self.folder = folder
        self.root = folder / "root"
        self.root.mkdir(parents=True)
        for notebook in notebooks:
            shutil.copyfile(notebook, self.root / notebook.name)
        settings = folder / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.token = secrets.token_hex(16)
        self.log_path = folder / "jupyterlab.log"
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the test session's Agg must not leak into the kernels
        env.update(
            JUPYTER_CONFIG_DIR=str(folder / "jupyter-config"),
            JUPYTER_DATA_DIR=str(folder / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(folder / "jupyter-runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(folder / "lab-workspaces"),
            IPYTHONDIR=str(folder / "ipython"),
            # two cores shared by the server, the kernel and the browser
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = None
        for _attempt in range(3):  # the free port can be taken between probe and bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyterlab",
                    "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.port={self.port}",
                    "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={self.root}",
                    "--ServerApp.open_browser=False",
                    "--ServerApp.allow_root=True",  # CI containers run as root
                    "--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                    "--LabApp.extension_manager=readonly",
                ],
                env=env, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT,
            )
            if self._wait_ready(startup_timeout):
                return
            self.stop()
            self._log = open(self.log_path, "a")  # noqa: SIM115
        raise RuntimeError(f"JupyterLab did not start; its log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                self.api("GET", "/api/status")
                return True
            except OSError:
                time.sleep(0.25)
        return False

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook: str) -> str:
        # ?reset: no saved workspace, so only this notebook opens
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Stop every kernel (one explorer's kernel should not load the next test's machine)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}")
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except OSError:
            pass

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def image_difference(before: bytes, after: bytes) -> int:
    """Number of pixels that differ clearly (any channel by more than 24 of 255) between two PNGs."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(before)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(after)).convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        return a.shape[0] * a.shape[1]
    return int((np.abs(a - b).max(axis=2) > 24).sum())


def drawn_pixels(png: bytes) -> int:
    """Number of pixels that are not (near) white: zero for a canvas nothing was drawn on yet."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return int((pixels.min(axis=2) < 230).sum())


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip()


class NotebookPage:
    """One notebook opened in JupyterLab, driven as a user would: menus, keys, the mouse.

    Every wait has a deadline, so a hung kernel or a widget that never renders fails the test
    in bounded time with a message saying what it waited for.
    """

    def __init__(self, page, server: LabServer, notebook: str):
        self.page = page
        self.server = server
        self.notebook = notebook
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.images: dict[str, bytes] = {}  # panel screenshots, saved with a failure
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))

    # -- opening and running ---------------------------------------------------------------------
    def open(self, timeout: float = 90) -> None:
        """Open the notebook and get it a kernel, answering the "Select Kernel" dialog if asked."""
        self.page.goto(self.server.lab_url(self.notebook), timeout=timeout * 1000)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dialog = self.page.locator(".jp-Dialog")
            if dialog.count() and "Select Kernel" in dialog.first.inner_text():
                select = dialog.locator("select")
                if select.count():
                    options = select.first.locator("option").all_inner_texts()
                    python = [o for o in options if o.strip().startswith("Python 3")]
                    assert python, f"the Select Kernel dialog offers no Python 3 kernel: {options}"
                    select.first.select_option(label=python[0])
                dialog.locator(".jp-mod-accept").first.click()
            elif not dialog.count() and self.kernel_name().startswith("Python") and self.kernel_status() == "idle":
                return
            time.sleep(0.25)
        raise AssertionError(
            f"no idle kernel for {self.notebook} after {timeout:.0f} s "
            f"(kernel {self.kernel_name()!r}, status {self.kernel_status()!r})"
        )

    def kernel_status(self) -> str | None:
        """The notebook toolbar's execution indicator: idle, busy, ... (idle also with no kernel)."""
        indicator = self.page.locator(".jp-Notebook-ExecutionIndicator")
        return indicator.first.get_attribute("data-status") if indicator.count() else None

    def kernel_name(self) -> str:
        """The kernel named in the notebook toolbar ("No Kernel" until one is chosen)."""
        name = self.page.locator(".jp-NotebookPanel-toolbar .jp-KernelName")
        return normalize(name.first.inner_text()) if name.count() else ""

    def menu(self, menu: str, command: str) -> None:
        """Click a menu bar entry, then the item running ``command`` (a JupyterLab command id)."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").click()

    def prompts(self) -> list[str]:
        return [normalize(t) for t in self.page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]

    def run_all(self, timeout: float = 120) -> None:
        """Run > Run All Cells, then wait until every code cell has an execution count."""
        self.menu("Run", "runmenu:run-all")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prompts = self.prompts()
            errors = self.error_outputs()
            if errors:  # JupyterLab stops at the first error: no need to wait for the rest
                raise AssertionError(f"{self.notebook}: a cell shows an error:\n{errors[0]}")
            if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and self.kernel_status() == "idle":
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.notebook}: cells still running after {timeout:.0f} s: prompts {self.prompts()}")

    def error_outputs(self) -> list[str]:
        """Texts of the outputs that show an error: tracebacks, and widgets that failed to render."""
        found = []
        for text in self.page.locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']").all_inner_texts():
            if "Traceback" in text or re.search(r"^\w*(Error|Exception)\b", text, re.M):
                found.append(text)
        # ipywidgets' placeholder for a view it could not render ("... model not found")
        failed = self.page.locator(".jp-OutputArea-output").get_by_text(re.compile(r"Error (displaying|rendering) widget"))
        found.extend(dict.fromkeys(normalize(t) for t in failed.all_inner_texts()))  # nested outputs: once each
        return found

    def rerun_cell(self, index: int, timeout: float = 30) -> str:
        """Click into code cell ``index`` and press Ctrl+Enter; returns the cell's new output text."""
        cell = self.page.locator(".jp-CodeCell").nth(index)
        before = normalize(cell.locator(".jp-InputPrompt").inner_text())
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prompt = normalize(cell.locator(".jp-InputPrompt").inner_text())
            if prompt != before and re.fullmatch(r"\[\d+\]:", prompt):
                return cell.locator(".jp-OutputArea").inner_text()
            time.sleep(0.25)
        raise AssertionError(f"{self.notebook}: code cell {index} did not run again within {timeout:.0f} s")

    # -- the explorer --------------------------------------------------------------------------
    def text(self, selector: str) -> str:
        return normalize(self.page.locator(selector).first.inner_text())

    def move_slider(self, selector: str, key: str) -> tuple[str, str]:
        """Focus the slider's handle and press ``key``; the other way if it is at that end already.

        Returns the slider's readout label before and after.
        """
        handle = self.page.locator(f"{selector} .noUi-handle").first
        label = f"{selector} .widget-readout"
        before = self.text(label)
        opposite = {"ArrowRight": "ArrowLeft", "ArrowUp": "ArrowDown", "End": "Home", "PageUp": "PageDown"}
        for attempt in (key, opposite.get(key, "ArrowLeft")):
            handle.focus()
            handle.press(attempt)
            try:
                self.page.wait_for_function(
                    "([selector, before]) => document.querySelector(selector).innerText.trim() !== before",
                    arg=[label, before], timeout=3000,
                )
                return before, self.text(label)
            except Exception:  # noqa: BLE001 - at the end of its range: try the other way
                continue
        raise AssertionError(f"{self.notebook}: pressing {key} on the slider {selector} did not move it (label {before!r})")

    def wait_for_change(self, what, before, timeout: float = 30, description: str = ""):
        """Poll ``what()`` until it differs from ``before``; returns the new value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = what()
            if now != before:
                return now
            time.sleep(0.25)
        raise AssertionError(f"{self.notebook}: {description} did not change within {timeout:.0f} s")

    # -- failures ------------------------------------------------------------------------------
    def save_debug(self, folder: Path, name: str) -> list[Path]:
        """Full-page screenshot, the panel pictures taken so far, and the browser's errors."""
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        try:
            path = folder / f"{name}.png"
            self.page.screenshot(path=str(path), full_page=True, timeout=10000)
            saved.append(path)
        except Exception:  # noqa: BLE001 - a dead page still gets the rest saved
            pass
        for label, png in self.images.items():
            path = folder / f"{name}.canvas-{label}.png"
            path.write_bytes(png)
            saved.append(path)
        path = folder / f"{name}.log"
        path.write_text(
            "page errors:\n" + "\n".join(self.page_errors)
            + "\n\nconsole errors:\n" + "\n".join(self.console_errors)
            + "\n\nJupyterLab log (tail):\n" + self.server.log_tail()
        )
        saved.append(path)
        return saved


# -- explorers' notebooks and timing in the page ------------------------------------------------
#: constructor arguments and setup per explorer, for the browser tests and the latency benchmark.
#: RuleExplorer opens on the gamma composite, so that its gamma slider changes the picture too.
EXPLORER_SETUP = {
    "RuleExplorer": ("", 'explorer.controls["composite"].value = "epsilon_gamma_box"'),
    "L1Explorer": ("", ""),
    "LeakRateExplorer": ("", ""),
    "RemovalExplorer": ("", ""),
    "PathExplorer": ("", ""),
    "AttentionExplorer": ("", ""),
}

MARKS = '''# Marks for the browser: the explorer, its sliders, its panels, the readout and the error area.
{setup}
explorer.add_class("e2e-explorer")
for name, control in explorer.controls.items():
    control.add_class(f"e2e-slider-{{name}}")
for name, panel in vars(explorer).items():
    if hasattr(panel, "fields") and hasattr(panel, "widget"):
        panel.widget.add_class(f"e2e-panel-{{name}}")
explorer.readout.add_class("e2e-readout")
explorer.error.add_class("e2e-error")'''

REPORT = '''# What the kernel holds, for the test to compare with what the browser shows.
import html, json, re

print("E2E", json.dumps({
    "values": {name: repr(control.value) for name, control in explorer.controls.items()},
    "readout": html.unescape(re.sub(r"<[^>]+>", "", explorer.readout.value)),
    "error": explorer.last_error,
    "up_to_date": explorer.up_to_date,
    "updates": explorer.updates,
}))'''

FLOOR = '''import ipywidgets as widgets
import numpy as np

from lrp_widgets.widgets.panels import HeatmapPanel

# the floor: one 32x32 map coloured in numpy, sent as a PNG to one Image widget per change
slider = widgets.IntSlider(value=0, min=0, max=40, description="shift", continuous_update=True)
panel = HeatmapPanel(["values"], title="32x32 map")
grid = np.add.outer(np.arange(32), np.arange(32)) / 5


class Shown:
    values = None


def show(change=None):
    Shown.values = np.sin(grid + slider.value / 3)
    panel.show(Shown)


slider.observe(show, names="value")
show()
explorer = widgets.VBox([slider, panel.widget])
explorer.add_class("e2e-explorer")
slider.add_class("e2e-slider-shift")
explorer'''


def explorer_notebook(name: str) -> dict:
    """The notebook (nbformat 4 JSON) that builds ``name`` (or the "floor" picture) and marks it."""
    def code(source):
        return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}

    intro = (f"# {name} in JupyterLab\n\nOpened, run and played with in headless Chromium by `tests/e2e` and "
             "`benchmarks/browser_latency.py`. The first code cell is what a user writes; the others help the test.")
    if name == "floor":
        cells = [code(FLOOR)]
    else:
        arguments, setup = EXPLORER_SETUP[name]
        cells = [code(f"from lrp_widgets.widgets import {name}\n\nexplorer = {name}({arguments})\nexplorer"),
                 code(MARKS.format(setup=setup)), code(REPORT)]
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": intro}, *cells],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


#: In the page: the time from a key press to the first animation frame in which the pixels of an
#: image or canvas of the explorer differ from before the press. Images still loading count as
#: unchanged (the browser shows the old picture until the new one is decoded).
PIXEL_PROBE = """() => {
  if (window.__probe) return;
  const work = document.createElement('canvas');
  const context = work.getContext('2d', {willReadFrequently: true});
  const elements = () => Array.from(document.querySelectorAll('.e2e-explorer img, .e2e-explorer canvas'));
  const last = new Map();
  function signature(element) {
    let width = element.width, height = element.height;
    if (element.tagName === 'IMG') {
      if (!element.complete || !element.naturalWidth) return last.get(element) || 'empty';
      width = element.naturalWidth; height = element.naturalHeight;
    }
    if (!width || !height) return 'empty';
    work.width = width; work.height = height;
    context.drawImage(element, 0, 0);
    const data = context.getImageData(0, 0, width, height).data;
    let a = 0, b = 0;
    for (let i = 0; i < data.length; i++) { a = (a + data[i]) | 0; b = (Math.imul(b, 31) + data[i]) | 0; }
    const result = width + 'x' + height + ':' + a + ':' + b;
    last.set(element, result);
    return result;
  }
  const signatures = () => elements().map(signature);
  window.__probe = {
    start: null, base: null,
    arm() { this.base = signatures(); this.start = null; },
    wait(timeout) {
      return new Promise(resolve => {
        const begun = performance.now();
        const tick = now => {
          if (this.start !== null) {
            const changed = signatures().map((s, i) => s !== this.base[i]);
            if (changed.some(x => x)) { resolve({latency: now - this.start, changed}); return; }
          }
          if (performance.now() - begun > timeout) { resolve(null); return; }
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      });
    },
  };
  document.addEventListener('keydown', () => {
    if (window.__probe.start === null) window.__probe.start = performance.now();
  }, true);
}"""


def time_key_press(page, slider: str, key: str, timeout_ms: float = 3000):
    """Press ``key`` on the handle of ``slider`` (a CSS selector) and return the milliseconds to
    changed pixels in the explorer (None: nothing changed within the timeout)."""
    page.evaluate(PIXEL_PROBE)
    handle = page.locator(f"{slider} .noUi-handle").first
    handle.focus()
    page.evaluate("() => window.__probe.arm()")
    handle.press(key)
    result = page.evaluate("timeout => window.__probe.wait(timeout)", timeout_ms)
    return None if result is None else result["latency"]


def wait_until_still(page, quiet_ms: float = 300, timeout_ms: float = 5000) -> None:
    """Wait until no picture of the explorer has changed for ``quiet_ms`` (a change has landed)."""
    page.evaluate(PIXEL_PROBE)
    page.evaluate(
        """([quiet, timeout]) => new Promise(resolve => {
            const begun = performance.now();
            let base = null, since = performance.now();
            const tick = now => {
              window.__probe.arm();
              const current = JSON.stringify(window.__probe.base);
              if (current !== base) { base = current; since = now; }
              if (now - since > quiet || now - begun > timeout) { resolve(); return; }
              requestAnimationFrame(tick);
            };
            requestAnimationFrame(tick);
        })""",
        [quiet_ms, timeout_ms],
    )
