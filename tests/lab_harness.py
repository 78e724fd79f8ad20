"""Drive a real JupyterLab in headless Chromium (selenium) for the browser tests.

    with lab_session(root_dir, env={...}, shots=REPO / "outputs" / "browser") as lab:
        lab.open("some.ipynb")          # waits for the notebook and an idle kernel
        lab.shot("01_open")
        lab.run_all()                   # Run > Run All Cells, waits until the kernel is idle
        lab.set_slider(lab.widget("slider", "Sample"), 3)
        assert lab.plotly_figures() and not lab.error_outputs()

The server is ``<this python> -m jupyterlab`` on 127.0.0.1 and a free port, token auth with
a random token, ``--no-browser``, private Jupyter config/data/runtime/settings/workspace
folders (nothing of the user's ~/.jupyter is read or written), the given root folder; the
kernels inherit ``env`` (MIR_OUTPUT_DIR etc.). The browser is the system Chromium with the
system chromedriver (tools/install_browser.sh). Leaving the block always stops both, in
bounded time: the browser and its driver, then the server (REST shutdown, then SIGTERM /
SIGKILL of its process group), then every process either of them started (kernels run in
their own sessions), so nothing is left behind even when the test fails. On failure a
screenshot, the server log and the browser console log are saved next to the screenshots.

Run this file directly (``.venv/bin/python tests/lab_harness.py``) for a self-check of the
mechanics on a small demo notebook (an ipywidgets slider and dropdown, a plotly
FigureWidget and a static plotly figure), independent of the workspace's notebooks.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

CHROMIUM = os.environ.get("MIR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MIR_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1400, 1000)
INSTALL_HINT = "tools/install_browser.sh (apt-get install chromium chromium-driver)"

# stderr / error outputs that mean something broke (tqdm bars and warnings also go to stderr)
ERROR_RE = re.compile(r"Traceback|Error displaying widget|^\s*\w*(Error|Exception)\b.*:",
                      re.MULTILINE)


class LabError(AssertionError):
    """The harness could not do what was asked (the message says what the page showed)."""


def missing_requirements() -> list[str]:
    """What this machine lacks for the browser tests (empty: all there)."""
    out = []
    for f in (CHROMIUM, CHROMEDRIVER):
        if not os.access(f, os.X_OK):
            out.append(f"{f} (run {INSTALL_HINT})")
    for mod in ("jupyterlab", "selenium"):
        try:
            __import__(mod)
        except ImportError:
            out.append(f"python package {mod} (pip install -r requirements.txt)")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes
def _descendants(pid: int) -> list:
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _reap(procs, timeout: float = 5.0) -> None:
    """Terminate, then kill, whatever in ``procs`` is still alive."""
    import psutil
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def _call_with_timeout(fn, timeout: float) -> bool:
    """Run fn in a daemon thread; False if it did not return within ``timeout``."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


# --------------------------------------------------------------------------- the server
class LabServer:
    def __init__(self, root_dir: Path, env: dict | None, workdir: Path, startup_timeout: float):
        self.root_dir = Path(root_dir).resolve()
        self.workdir = workdir
        self.token = secrets.token_hex(24)
        self.log_path = workdir / "lab.log"
        self.startup_timeout = startup_timeout
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        for sub in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.env.update(
            JUPYTER_CONFIG_DIR=str(workdir / "config"), JUPYTER_DATA_DIR=str(workdir / "data"),
            JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(workdir / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"),
            IPYTHONDIR=str(workdir / "ipython"), JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1")
        self.env.pop("JUPYTER_PATH", None)
        self.env.pop("JUPYTER_TOKEN", None)
        self._write_settings(workdir / "settings")

    @staticmethod
    def _write_settings(folder: Path) -> None:
        """No news/update toasts; every cell attached to the DOM (no windowing), so the
        outputs of off-screen cells are rendered and can be checked."""
        settings = {
            "@jupyterlab/apputils-extension/notification": {
                "fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
            "@jupyterlab/application-extension/layout": {},
        }
        for plugin, values in settings.items():
            path = folder / (plugin + ".jupyterlab-settings")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method != "GET" else None,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        for attempt in range(3):                   # a port taken between probe and bind: retry
            self.port = free_port()
            cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.root_dir}",
                   "--ServerApp.open_browser=False",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   "--LabApp.news_url=", "--ServerApp.terminals_enabled=False",
                   # orphan guard if this process is killed hard: idle kernels go after 10
                   # min, the idle server after 15 (a normal exit stops both at once)
                   "--MappingKernelManager.cull_idle_timeout=600",
                   "--MappingKernelManager.cull_interval=60",
                   "--MappingKernelManager.cull_connected=True",
                   "--ServerApp.shutdown_no_activity_timeout=900",
                   "--LabApp.extension_manager=readonly"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")          # CI containers run as root
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            log.close()
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self.api("/api/status", timeout=2)
                    return
                except (urllib.error.URLError, OSError, ValueError):
                    time.sleep(0.3)
            if self.proc.poll() is None:
                self.stop()
                raise LabError(f"JupyterLab did not answer within {self.startup_timeout:.0f} s "
                               f"on {self.url}; server log:\n{self.log_tail()}")
            if "already in use" not in self.log_tail():
                break
        raise LabError(f"JupyterLab exited with code {self.proc.returncode} while starting; "
                       f"server log:\n{self.log_tail()}")

    def kernels(self) -> list[dict] | None:
        """The server's kernels with their execution_state; None if it did not answer."""
        try:
            return self.api("/api/kernels")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        children = _descendants(proc.pid)          # kernels live in sessions of their own
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                self.api("/api/shutdown", method="POST", timeout=3)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
                    try:
                        proc.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        _reap(children + _descendants(proc.pid))


# --------------------------------------------------------------------------- the browser
def start_browser(workdir: Path, window=WINDOW):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium manager: no telemetry
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={window[0]},{window[1]}", "--force-device-scale-factor=1",
                f"--user-data-dir={workdir / 'chrome'}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--lang=en-US", "--mute-audio"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(90)
    driver.set_script_timeout(30)
    driver.set_window_size(*window)
    return driver


def stop_browser(driver, timeout: float = 20.0) -> None:
    if driver is None:
        return
    proc = getattr(getattr(driver, "service", None), "process", None)
    children = _descendants(proc.pid) if proc is not None else []
    _call_with_timeout(driver.quit, timeout)
    if proc is not None:
        import psutil
        with contextlib.suppress(psutil.Error):
            children += [psutil.Process(proc.pid)]
    _reap(children)


# --------------------------------------------------------------------------- the page
_JS_PROMPTS = """
return Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
  .map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
"""

_JS_OUTPUT_TEXTS = """
return Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output'))
  .map(o => ({mime: o.getAttribute('data-mime-type') || '', text: o.innerText || ''}));
"""

_JS_PLOTLY = """
const root = arguments[0] || document;
return Array.from(root.querySelectorAll('.js-plotly-plot')).map(p => {
  const r = p.getBoundingClientRect();
  const svg = p.querySelector('svg.main-svg');
  return {width: r.width, height: r.height,
          svgs: p.querySelectorAll('svg.main-svg').length,
          traces: p.querySelectorAll('.trace, .scatterlayer path, .barlayer path, .heatmaplayer image, .imagelayer image').length,
          svg_children: svg ? svg.childElementCount : 0,
          title: (p.querySelector('.gtitle') || {}).textContent || '',
          widget: !!p.closest('.jupyter-widgets, .widget-box, [class*="anywidget"]')};
});
"""


class Lab:
    """A running JupyterLab and a browser on it (made by ``lab_session``)."""

    def __init__(self, server: LabServer, driver, shots: Path | None, prefix: str = ""):
        self.server, self.driver, self.shots, self.prefix = server, driver, shots, prefix
        self.screenshots: list[Path] = []
        self.console: list[dict] = []

    # ---- navigation
    def open(self, path: str, timeout: float = 120.0, sidebar: bool = False) -> None:
        """Open a notebook (relative to the root folder) and wait for its idle kernel;
        the left sidebar (file browser) is collapsed unless ``sidebar``."""
        from selenium.webdriver.common.by import By
        self.driver.get(f"{self.server.url}/lab/tree/{quote(path)}?token={self.server.token}")
        self.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR,
                                                ".jp-NotebookPanel .jp-Notebook .jp-Cell"),
                      timeout, f"notebook {path} did not appear in JupyterLab")
        if not sidebar:
            self.collapse_left_sidebar()
        self.wait_kernel_idle(timeout, path)

    def collapse_left_sidebar(self) -> None:
        """Click the open tab of the left sidebar (as a user closes the file browser)."""
        from selenium.webdriver.common.by import By
        for tab in self.driver.find_elements(
                By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"):
            with contextlib.suppress(Exception):
                tab.click()
        with contextlib.suppress(LabError):
            self.wait_for(lambda d: not any(e.is_displayed() for e in d.find_elements(
                By.CSS_SELECTOR, "#jp-left-stack")), 5, "left sidebar still open")

    def _accept_dialog(self) -> None:
        from selenium.webdriver.common.by import By
        for b in self.driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
            with contextlib.suppress(Exception):
                b.click()

    def wait_kernel_idle(self, timeout: float = 120.0, what: str = "the notebook") -> None:
        """A kernel session exists and the server reports it idle."""
        def idle(_):
            self._accept_dialog()            # a 'Select Kernel' dialog: take the default
            ks = self.server.kernels()
            return bool(ks) and all(k.get("execution_state") == "idle" for k in ks)
        self.wait_for(idle, timeout, f"no idle kernel for {what}")

    def wait_for(self, cond, timeout: float, message: str, poll: float = 0.25):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=poll).until(cond)
        except TimeoutException:
            raise LabError(f"{message} (after {timeout:.0f} s)") from None

    # ---- running
    def prompts(self) -> list[str]:
        return [p.strip() for p in self.driver.execute_script(_JS_PROMPTS)]

    def run_all(self, timeout: float = 300.0) -> float:
        """Run > Run All Cells through the menu bar; returns when no cell is queued or
        running and the kernel is idle. Returns the seconds it took."""
        from selenium.webdriver.common.by import By
        t0 = time.monotonic()
        before = self.prompts()
        self.click_menu("Run", "runmenu:run-all")
        # the click is asynchronous: wait until the run has visibly started (a [*] or a new
        # execution count), then until it is over
        self.wait_for(lambda _: self.prompts() != before or "[*]:" in self.prompts(), 30,
                      "Run All Cells did not start any cell")
        state = {"calm": 0}

        def finished(_):
            prompts = self.prompts()
            ks = self.server.kernels()
            busy = any("*" in p for p in prompts) or not ks or any(
                k.get("execution_state") != "idle" for k in ks)
            state["calm"] = 0 if busy else state["calm"] + 1
            return state["calm"] >= 3           # idle on three polls in a row
        try:
            self.wait_for(finished, timeout, "Run All Cells did not finish", poll=0.5)
        except LabError as e:
            raise LabError(f"{e}; prompts: {self.prompts()}; errors: {self.error_outputs()}") \
                from None
        self.driver.find_element(By.TAG_NAME, "body")   # page still alive
        return time.monotonic() - t0

    def click_menu(self, menu: str, command: str) -> None:
        """Click a top menu ('Run') and then the item bound to ``command``."""
        from selenium.webdriver.common.by import By
        items = [e for e in self.driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                 if e.text.strip() == menu]
        if not items:
            raise LabError(f"no menu {menu!r} in the menu bar")
        items[0].click()
        entry = self.wait_for(
            lambda d: [e for e in d.find_elements(
                By.CSS_SELECTOR, f'.lm-Menu .lm-Menu-item[data-command="{command}"]')
                if e.is_displayed()],
            10, f"no item {command} in menu {menu}")[0]
        if "lm-mod-disabled" in (entry.get_attribute("class") or ""):
            raise LabError(f"menu item {command} is disabled")
        entry.click()

    # ---- reading the page
    def output_texts(self) -> list[dict]:
        return self.driver.execute_script(_JS_OUTPUT_TEXTS)

    def error_outputs(self) -> list[str]:
        """Texts of error outputs: tracebacks, and widgets that failed to display."""
        out = []
        for o in self.output_texts():
            text = o["text"]
            if "Error displaying widget" in text or (
                    o["mime"] in ("application/vnd.jupyter.stderr",
                                  "application/vnd.jupyter.error") and ERROR_RE.search(text)):
                out.append(text[:2000])
        return out

    def plotly_figures(self, within=None) -> list[dict]:
        return self.driver.execute_script(_JS_PLOTLY, within)

    def rendered_plotly(self, within=None) -> list[dict]:
        """The plotly figures that drew something: a sized plot with SVG content."""
        return [f for f in self.plotly_figures(within)
                if f["width"] > 50 and f["height"] > 50 and f["svgs"] and f["svg_children"]]

    def wait_plotly_rendered(self, timeout: float = 30.0, within=None) -> list[dict]:
        """Wait until every plotly figure (on the page, or ``within``) has drawn; returns
        them. Fails naming the figures that did not draw and the console errors."""
        try:
            self.wait_for(lambda _: self.plotly_figures(within) and not self.unrendered_plotly(within),
                          timeout, "", poll=0.5)
        except LabError:
            figs = self.plotly_figures(within)
            raise LabError(
                ("no plotly figure on the page" if not figs else
                 f"{len(self.unrendered_plotly(within))} of {len(figs)} plotly figures drew "
                 f"nothing after {timeout:.0f} s: {self.unrendered_plotly(within)}")
                + f"; browser console errors: {self.console_errors()}") from None
        return self.plotly_figures(within)

    def browser_log(self) -> list[dict]:
        """Every browser console entry so far (chromedriver hands each out once: kept here)."""
        try:
            self.console += self.driver.get_log("browser")
        except Exception:
            pass
        return list(self.console)

    def console_errors(self) -> list[str]:
        """SEVERE console entries: uncaught exceptions and console.error (not failed fetches
        of optional resources, which the page reports as 'network')."""
        return [m.get("message", "")[:600] for m in self.browser_log()
                if m.get("level") == "SEVERE" and m.get("source") != "network"]

    def unrendered_plotly(self, within=None) -> list[dict]:
        """Plotly figures on the page that drew nothing (no size or no SVG content)."""
        return [f for f in self.plotly_figures(within)
                if not (f["width"] > 50 and f["height"] > 50 and f["svgs"] and f["svg_children"])]

    # ---- widgets (ipywidgets 8 DOM)
    KINDS = {"slider": ".widget-slider", "dropdown": ".widget-dropdown", "text": ".widget-text",
             "checkbox": ".widget-checkbox", "toggle": ".widget-toggle-buttons",
             "radio": ".widget-radio", "button": ".widget-button", "select": ".widget-select",
             "inttext": ".widget-inttext, .widget-text"}

    def widgets(self, kind: str, within=None) -> list:
        from selenium.webdriver.common.by import By
        return (within or self.driver).find_elements(By.CSS_SELECTOR, self.KINDS.get(kind, kind))

    def widget(self, kind: str, label: str | None = None, within=None, timeout: float = 30.0):
        """The first widget of ``kind`` (a name in KINDS or a CSS selector) whose
        description (or text) matches the regular expression ``label``."""
        def find(_):
            for w in self.widgets(kind, within):
                if label is None or re.search(label, self.describe(w), re.IGNORECASE):
                    return w
            return None
        return self.wait_for(find, timeout, f"no {kind} widget"
                             + (f" labelled /{label}/" if label else "") + " on the page")

    def describe(self, w) -> str:
        """A widget's description label (or its own text for buttons)."""
        from selenium.webdriver.common.by import By
        for sel in (".widget-label", ".widget-label-basic"):
            found = w.find_elements(By.CSS_SELECTOR, sel)
            if found:
                return (found[0].get_attribute("textContent") or "").strip()
        return (w.get_attribute("textContent") or "").strip()

    def slider_range(self, w) -> tuple[float, float]:
        from selenium.webdriver.common.by import By
        h = w.find_element(By.CSS_SELECTOR, ".noUi-handle")
        return float(h.get_attribute("aria-valuemin")), float(h.get_attribute("aria-valuemax"))

    def slider_value(self, w) -> str:
        from selenium.webdriver.common.by import By
        return w.find_element(By.CSS_SELECTOR, ".widget-readout").get_attribute("textContent").strip()

    def set_slider(self, w, value) -> None:
        """Type a value into the slider's readout (Enter commits it, as a user would)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        ro = w.find_element(By.CSS_SELECTOR, ".widget-readout")
        self.scroll_to(w)
        ro.click()
        self.driver.execute_script(
            "const r = document.createRange(); r.selectNodeContents(arguments[0]);"
            "const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);", ro)
        ro.send_keys(str(value), Keys.ENTER)
        self.driver.execute_script("arguments[0].blur();", ro)
        self.wait_for(lambda _: self.slider_value(w) == str(value), 10,
                      f"slider did not take the value {value} (shows {self.slider_value(w)})")

    def nudge_slider(self, w, steps: int = 1) -> None:
        """Move the slider's handle with the arrow keys."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        handle = w.find_element(By.CSS_SELECTOR, ".noUi-handle")
        self.scroll_to(w)
        key = Keys.ARROW_RIGHT if steps > 0 else Keys.ARROW_LEFT
        handle.click()
        handle.send_keys(*([key] * abs(steps)))

    def dropdown_options(self, w) -> list[str]:
        from selenium.webdriver.support.ui import Select
        return [o.text for o in Select(self._select(w)).options]

    def dropdown_value(self, w) -> str:
        from selenium.webdriver.support.ui import Select
        return Select(self._select(w)).first_selected_option.text

    def choose(self, w, option: str | int) -> str:
        """Pick an option of a dropdown / select widget by its text or index; returns its text."""
        from selenium.webdriver.support.ui import Select
        self.scroll_to(w)
        sel = Select(self._select(w))
        sel.select_by_index(option) if isinstance(option, int) else sel.select_by_visible_text(option)
        return sel.first_selected_option.text

    def _select(self, w):
        from selenium.webdriver.common.by import By
        return w.find_element(By.TAG_NAME, "select")

    def type_text(self, w, text: str, enter: bool = True) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        box = w.find_element(By.CSS_SELECTOR, "input, textarea")
        self.scroll_to(w)
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text, *([Keys.ENTER] if enter else []))

    def toggle(self, w, option: str | None = None) -> None:
        """Click a checkbox, or the button ``option`` of a ToggleButtons / RadioButtons."""
        from selenium.webdriver.common.by import By
        self.scroll_to(w)
        if option is None:
            w.find_element(By.CSS_SELECTOR, "input[type=checkbox], button").click()
            return
        for b in w.find_elements(By.CSS_SELECTOR, "button, label"):
            if (b.get_attribute("textContent") or "").strip() == option:
                b.click()
                return
        raise LabError(f"no option {option!r} in {self.describe(w)!r}")

    def scroll_to(self, el, block: str = "center") -> None:
        self.driver.execute_script("arguments[0].scrollIntoView({block: arguments[1]});",
                                   el, block)
        time.sleep(0.2)

    def settle(self, seconds: float = 0.5, timeout: float = 60.0) -> None:
        """After an interaction: wait until the kernel is idle again, then a little."""
        time.sleep(seconds)
        self.wait_kernel_idle(timeout, "the widget callback")
        time.sleep(seconds)

    # ---- evidence
    def shot(self, name: str, el=None) -> Path | None:
        if self.shots is None:
            return None
        if el is not None:                       # its top just under the toolbar
            self.scroll_to(el, "start")
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{self.prefix}{name}.png"
        self.driver.save_screenshot(str(path))
        self.screenshots.append(path)
        return path

    def save_failure(self) -> None:
        if self.shots is None:
            return
        with contextlib.suppress(Exception):
            self.shot("FAILED")
        with contextlib.suppress(Exception):
            (self.shots / f"{self.prefix}FAILED_console.json").write_text(
                json.dumps(self.browser_log(), indent=1))
        with contextlib.suppress(Exception):
            shutil.copy(self.server.log_path, self.shots / f"{self.prefix}FAILED_server.log")


@contextlib.contextmanager
def lab_session(root_dir: str | Path, env: dict | None = None, shots: str | Path | None = None,
                prefix: str = "", startup_timeout: float = 90.0, window=WINDOW):
    """A JupyterLab on ``root_dir`` and a headless Chromium driving it (see the module doc)."""
    missing = missing_requirements()
    if missing:
        raise LabError("the browser test needs: " + "; ".join(missing))
    workdir = Path(tempfile.mkdtemp(prefix="mir-lab-"))
    server, driver, lab = LabServer(root_dir, env, workdir, startup_timeout), None, None
    try:
        server.start()
        driver = start_browser(workdir, window)
        lab = Lab(server, driver, Path(shots) if shots else None, prefix)
        yield lab
    except BaseException:
        if lab is not None:
            lab.save_failure()
        elif shots:
            with contextlib.suppress(Exception):
                Path(shots).mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log_path, Path(shots) / f"{prefix}FAILED_server.log")
        raise
    finally:
        try:
            stop_browser(driver)
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def inject_parameters(nb_path: str | Path, params: dict) -> list[str]:
    """Papermill-style: a cell right after the ``parameters`` cell assigning those of
    ``params`` that the parameters cell defines. Returns the names it set."""
    import ast

    import nbformat
    nb = nbformat.read(str(nb_path), as_version=4)
    idx = next((i for i, c in enumerate(nb.cells)
                if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if idx is None:
        raise LabError(f"{nb_path} has no cell tagged 'parameters'")
    names = {t.id for node in ast.walk(ast.parse(nb.cells[idx].source))
             if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name)}
    chosen = {k: v for k, v in params.items() if k in names}
    if chosen:
        src = "# Injected by the browser test\n" + "".join(f"{k} = {v!r}\n" for k, v in chosen.items())
        cell = nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(idx + 1, cell)
        nbformat.write(nb, str(nb_path))
    return sorted(chosen)


# --------------------------------------------------------------------------- self-check
DEMO_CELLS = [
    "import ipywidgets as W\nimport plotly.graph_objects as go\nimport numpy as np",
    "fig = go.Figure(go.Bar(x=list('abcde'), y=[3, 1, 4, 1, 5]))\n"
    "fig.update_layout(title='static figure', height=300)\nfig.show()",
    "fw = go.FigureWidget(go.Scatter(x=np.arange(10), y=np.arange(10) ** 1.0, mode='lines+markers'))\n"
    "fw.update_layout(title='power 1.0', height=300)\n"
    "slider = W.IntSlider(value=1, min=0, max=5, description='Power')\n"
    "pick = W.Dropdown(options=['red', 'green', 'blue'], value='red', description='Colour')\n"
    "label = W.HTML('power 1, red')\n"
    "def update(_=None):\n"
    "    with fw.batch_update():\n"
    "        fw.data[0].y = np.arange(10) ** float(slider.value)\n"
    "        fw.data[0].line.color = pick.value\n"
    "        fw.layout.title.text = f'power {slider.value}, {pick.value}'\n"
    "    label.value = f'power {slider.value}, {pick.value}'\n"
    "slider.observe(update, 'value'); pick.observe(update, 'value')\n"
    "box = W.VBox([W.HBox([slider, pick, label]), fw]); box.add_class('demo-box'); box",
]


def write_demo_notebook(path: Path) -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# harness self-check")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in DEMO_CELLS]
    nbformat.write(nb, str(path))
    return path


def self_check(shots: Path) -> None:
    from selenium.webdriver.common.by import By
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_notebook(Path(tmp) / "demo.ipynb")
        with lab_session(tmp, shots=shots, prefix="selfcheck_") as lab:
            lab.open("demo.ipynb")
            lab.shot("1_open")
            took = lab.run_all(120)
            print(f"run all: {took:.1f} s, prompts {lab.prompts()}")
            box = lab.widget(".demo-box")
            slider = lab.widget("slider", "power", within=box)
            assert len(lab.wait_plotly_rendered(30)) == 2
            lab.shot("2_run_all", box)
            lab.set_slider(slider, 3)
            lab.settle()
            lab.wait_for(lambda _: "power 3" in box.text, 20, "slider change not applied")
            lab.shot("3_slider", box)
            lab.choose(lab.widget("dropdown", "colour", within=box), "blue")
            lab.settle()
            lab.wait_for(lambda _: "power 3, blue" in box.text, 20, "dropdown change not applied")
            titles = [f["title"] for f in lab.rendered_plotly(box)]
            assert titles == ["power 3, blue"], titles
            lab.shot("4_dropdown", box)
            assert not lab.error_outputs(), lab.error_outputs()
            print("figures:", lab.plotly_figures())
            assert not lab.console_errors(), lab.console_errors()
            print("page text ok:", "power 3, blue" in lab.driver.find_element(By.TAG_NAME, "body").text)
    print(f"self-check passed in {time.monotonic() - t0:.1f} s; screenshots in {shots}")


if __name__ == "__main__":
    self_check(Path(__file__).resolve().parent.parent / "outputs" / "browser")
