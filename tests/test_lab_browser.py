"""Notebook 06 (case studies) in a real JupyterLab, in headless Chromium: open it, Run All
Cells through the menu, then use the RankingInspector as a user would (change the sample,
apply the gold-label filter) and check that the widget and the plotly figures render and
that no cell or widget shows an error. Screenshots: outputs/browser/06_*.png.

Needs Chromium and chromedriver (tools/install_browser.sh) and jupyterlab + selenium
(requirements.txt); without them the test fails and says what is missing.

The notebook reads a small finished run made here (LGSRR, cpu preset, official fusion, 120
train / 60 test samples, 2 epochs, seed 0) in a temporary outputs folder, where notebook 04
puts its runs (``<MIR_OUTPUT_DIR>/runs/MIntRec2.0/<run>/``). The JupyterLab server, hence
the kernel, gets MIR_OUTPUT_DIR / MIR_DATA_DIR / MIR_CACHE_DIR pointing at the test's
folders (nothing is written under the repository's outputs/ but the screenshots), and a
cell injected after the parameters cell (papermill style) sets ``run_dir``, ``data_root``,
``dataset``, ``progress=False`` and ``attribution_steps=8``. The notebook runs from a
temporary copy of notebooks/, so the repository's notebooks are never modified.

How the inspector's controls are found (ipywidgets DOM), first match wins:
* the inspector: an element with CSS class ``mir-inspector`` (``widget.add_class``), else the
  output holding a widget labelled like a gold-label filter;
* the sample picker: class ``mir-sample``, else a slider, dropdown or text box whose
  description matches /sample|index|utterance|example|search|key/ (and not the filter's);
* the gold-label filter: class ``mir-filter-gold``, else a dropdown whose description
  matches /gold|label|intent/.

Each step's screenshot is taken before that step's checks (06_2_attention.png: the
inspector's attention map, the lower panel of its figure); on a failure the harness adds
06_FAILED.png, 06_FAILED_console.json (browser console) and 06_FAILED_server.log, and
06_timings.json gives the seconds of each phase.

MIR_LAB_NOTEBOOK=<file.ipynb> runs the same checks on another notebook (debugging).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lab_harness import Lab, inject_parameters, lab_session, missing_requirements

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = Path(os.environ.get("MIR_LAB_NOTEBOOK") or REPO / "notebooks" / "06_case_studies.ipynb")
SHOTS = REPO / "outputs" / "browser"
DATASET = "MIntRec2.0"
TINY = dict(max_train=120, max_eval=60, overrides={"epochs": 2})

SAMPLE_LABEL = r"sample|index|utterance|example|search|key"
GOLD_LABEL = r"gold|label|intent"

pytestmark = [pytest.mark.slow, pytest.mark.browser]   # about 1.5-2 minutes on a 2-core CPU


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory):
    """A finished LGSRR run where notebook 04 and the CLI leave theirs
    (``<outputs>/runs/<dataset>/<run>/``): (outputs folder, run folder, seconds)."""
    from mir_core.training import RunSpec, run
    out = tmp_path_factory.mktemp("browser_outputs")
    t0 = time.perf_counter()
    spec = RunSpec(dataset=DATASET, method="lgsrr", preset="cpu", seeds=(0,),
                   options={"fusion": "official"}, **TINY)
    summary = run(spec, data_root=data_root, out_dir=out, log=lambda *_: None)
    return out, Path(summary["folder"]), time.perf_counter() - t0


def _controls_text(lab: Lab, el) -> str:
    """What the inspector shows, without its form controls (a dropdown lists every option)."""
    return lab.driver.execute_script("""
        const c = arguments[0].cloneNode(true);
        c.querySelectorAll('select, option, input, .widget-readout, .widget-label, button')
         .forEach(e => e.remove());
        return c.textContent.replace(/\\s+/g, ' ').trim();""", el)


def _inspector_messages(lab: Lab, inspector) -> str:
    """The text of the inspector's own Output widgets (its callbacks report errors there)."""
    return lab.driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.widget-output'))"
        ".map(e => e.innerText).join('\\n');", inspector)


def _find_inspector(lab: Lab):
    def find(d):
        from selenium.webdriver.common.by import By
        marked = d.find_elements(By.CSS_SELECTOR, ".mir-inspector")
        if marked:
            return marked[0]
        for out in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"):
            if any(re.search(GOLD_LABEL, lab.describe(w), re.I)
                   for w in lab.widgets("dropdown", out)):
                return out
        return None
    return lab.wait_for(find, 60, "no RankingInspector on the page (no element of class "
                        "mir-inspector, no output with a gold-label dropdown)")


def _find_sample_picker(lab: Lab, inspector):
    def find(_):
        for w in lab.widgets(".mir-sample", inspector):
            return w
        for kind in ("slider", "dropdown", "select", "inttext", "text"):
            for w in lab.widgets(kind, inspector):
                if re.search(SAMPLE_LABEL, lab.describe(w), re.I) and not re.search(
                        GOLD_LABEL + "|filter", lab.describe(w), re.I):
                    return w
        return None
    return lab.wait_for(find, 20, "no sample picker in the inspector (class mir-sample, or a "
                        f"slider / dropdown / text box labelled /{SAMPLE_LABEL}/)")


def _find_gold_filter(lab: Lab, inspector, picker):
    def find(_):
        for w in lab.widgets(".mir-filter-gold", inspector):
            return w
        for w in lab.widgets("dropdown", inspector):
            if w != picker and re.search(GOLD_LABEL, lab.describe(w), re.I):
                return w
        return None
    return lab.wait_for(find, 20, "no gold-label filter in the inspector (class "
                        f"mir-filter-gold, or a dropdown labelled /{GOLD_LABEL}/)")


def _change_sample(lab: Lab, picker, preds: pd.DataFrame) -> str:
    """Move the picker to another sample, as a user would; returns what it shows now."""
    cls = picker.get_attribute("class") or ""
    if "widget-slider" in cls:
        now = int(float(lab.slider_value(picker)))
        low, high = lab.slider_range(picker)
        assert high > low, f"the sample slider has a single position ({low})"
        lab.set_slider(picker, now + 1 if now + 1 <= high else now - 1)
        return lab.slider_value(picker)
    if "widget-dropdown" in cls or "widget-select" in cls:
        opts = lab.dropdown_options(picker)
        assert len(opts) > 1, f"the sample picker offers {opts}"
        current = lab.dropdown_value(picker)
        return lab.choose(picker, next(i for i, o in enumerate(opts) if o != current))
    text = str(preds["text"].iloc[1])                    # a text search: the 2nd utterance
    lab.type_text(picker, text)
    return text


def _pick_gold_option(options: list[str], preds: pd.DataFrame) -> int:
    """The option naming the most frequent gold label of the test predictions."""
    counts = Counter(preds["label"])
    for label, _ in counts.most_common():
        for i, o in enumerate(options):
            if re.match(rf"\s*{re.escape(label)}\b", o):
                return i
    raise AssertionError(f"no gold-label option names a label of the run; options: {options[:12]}")


def test_case_studies_inspector_in_jupyterlab(tmp_path, request):
    t_start = time.perf_counter()
    assert NOTEBOOK.exists(), (
        f"{NOTEBOOK.relative_to(REPO) if NOTEBOOK.is_relative_to(REPO) else NOTEBOOK} does not "
        "exist: the browser test opens notebook 06 (case studies, the RankingInspector) in "
        "JupyterLab and cannot run without it")
    missing = missing_requirements()
    assert not missing, "the browser test needs: " + "; ".join(missing)
    data_root = request.getfixturevalue("data_root")           # only after the checks above
    out, run_folder, run_seconds = request.getfixturevalue("tiny_run")
    preds = pd.read_csv(run_folder / "seed_0" / "predictions.csv")

    root = tmp_path / "notebooks"          # a copy: JupyterLab may save into what it opens
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = root / "06_case_studies.ipynb"
    shutil.copy(NOTEBOOK, nb)
    injected = inject_parameters(nb, {        # those the parameters cell defines
        "dataset": DATASET, "data_root": str(data_root), "run_dir": str(run_folder),
        "progress": False, "attribution_steps": 8})
    assert "run_dir" in injected, ("notebook 06's parameters cell has no run_dir: the test "
                                   "cannot point it at its run")
    env = {"MIR_OUTPUT_DIR": str(out), "MIR_DATA_DIR": str(data_root.parent),
           "MIR_CACHE_DIR": os.environ.get("MIR_CACHE_DIR", str(out / "cache")),
           "MIR_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MPLBACKEND": "agg"}
    for old in SHOTS.glob("06_*"):
        old.unlink()
    timings = {"tiny_run_s": round(run_seconds, 1), "injected_parameters": injected}

    t_lab = time.perf_counter()
    try:
        with lab_session(root, env=env, shots=SHOTS, prefix="06_") as lab:
            _drive(lab, nb.name, preds, timings)
        timings["lab_s"] = round(time.perf_counter() - t_lab, 1)
    finally:
        timings["test_s"] = round(time.perf_counter() - t_start, 1)
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "06_timings.json").write_text(json.dumps(timings, indent=1))


def _card_texts(lab: Lab, inspector) -> list[str]:
    """The texts of the inspector's card table (plotly table cells), as drawn."""
    return lab.driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.js-plotly-plot .table .cell-text'))"
        ".map(e => e.textContent);", inspector)


def _check_card(lab: Lab, inspector, when: str) -> None:
    """The card table shows its text, the wrapped cells too (plotly.js blanks the cells it
    wraps when it draws them off the page, as the FigureWidget's first draw does)."""
    def drawn(_):
        texts = " ".join(_card_texts(lab, inspector))
        return ("LLM rank" in texts and "Speakers" in texts
                and re.search(r"\((train|dev|test)\)", texts) is not None)
    lab.wait_for(drawn, 20, f"{when}: the card table of the inspector is blank (cell texts "
                 f"{_card_texts(lab, inspector)[:20]})")


def _check_page(lab: Lab, inspector, when: str) -> None:
    """No traceback or widget error, every plotly figure drew, the card table shows its
    text, the inspector's own message area and the browser console are free of errors."""
    errors = lab.error_outputs()
    assert not errors, f"{when}: the notebook shows errors:\n" + "\n---\n".join(errors)
    lab.wait_plotly_rendered(30)
    assert lab.rendered_plotly(inspector), (
        f"{when}: the inspector has no plotly figure that drew: "
        f"{lab.plotly_figures(inspector)}; browser console errors: {lab.console_errors()}")
    _check_card(lab, inspector, when)
    messages = _inspector_messages(lab, inspector)
    assert not re.search(r"\w(Error|Exception)\b|failed", messages), \
        f"{when}: the inspector reported errors: {messages[:2000]}"
    console = lab.console_errors()
    assert not console, f"{when}: errors in the browser console: {console}"


def _drive(lab: Lab, name: str, preds: pd.DataFrame, timings: dict) -> None:
    """Open, Run All, change the sample, filter by gold label; a screenshot at each step
    (taken before that step's checks, so a failing step still leaves its picture)."""
    t0 = time.perf_counter()
    lab.open(name)
    timings["open_s"] = round(time.perf_counter() - t0, 1)
    lab.shot("1_open")

    timings["run_all_s"] = round(lab.run_all(timeout=300), 1)
    try:
        inspector = _find_inspector(lab)
    finally:
        lab.shot("2_run_all", locals().get("inspector"))
    prompts = lab.prompts()
    assert prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), (
        f"not every code cell ran: prompts {prompts}; errors: {lab.error_outputs()}")
    _check_page(lab, inspector, "after Run All Cells")
    timings["figures"] = len(lab.plotly_figures())
    # the lower panel of the inspector's figure: the attention map of the case
    from selenium.webdriver.common.by import By
    view = inspector.find_element(By.CSS_SELECTOR, ".js-plotly-plot")
    lab.scroll_to(view, "end")
    lab.shot("2_attention")
    assert view.find_elements(By.CSS_SELECTOR, ".heatmaplayer image"), \
        "the inspector's figure has no attention heatmap"

    picker = _find_sample_picker(lab, inspector)
    before = _controls_text(lab, inspector)
    shown = _change_sample(lab, picker, preds)
    lab.settle()
    try:
        lab.wait_for(lambda _: _controls_text(lab, inspector) != before, 30,
                     f"the inspector did not change after picking sample {shown!r}")
    finally:
        lab.shot("3_sample", inspector)
    _check_page(lab, inspector, f"after picking sample {shown!r}")

    gold = _find_gold_filter(lab, inspector, picker)
    option = _pick_gold_option(lab.dropdown_options(gold), preds)
    before = _controls_text(lab, inspector)
    label = lab.choose(gold, option)
    lab.settle()
    gold_label = next(lbl for lbl in preds["label"].unique()
                      if re.match(rf"\s*{re.escape(lbl)}\b", label))
    try:
        lab.wait_for(lambda _: _controls_text(lab, inspector) != before, 30,
                     f"the inspector did not change after filtering on gold label {label!r}")
        lab.wait_for(lambda _: gold_label in _controls_text(lab, inspector), 30,
                     f"after filtering on gold label {gold_label!r} the inspector does not "
                     f"show it: {_controls_text(lab, inspector)[:500]!r}")
    finally:
        lab.shot("4_filter", inspector)
    _check_page(lab, inspector, f"after filtering on gold label {label!r}")
