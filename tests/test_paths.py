"""Paths resolve from the project root whatever the working directory (JupyterLab starts its
kernels in notebooks/, papermill in the root, the CLI wherever it is called); environment
variables win over the defaults, explicit arguments over both."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mir_core import paths

REPO = Path(__file__).resolve().parent.parent
VARS = ("MIR_DATA_DIR", "MIR_OUTPUT_DIR", "MIR_CACHE_DIR")


@pytest.fixture
def no_env(monkeypatch):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("where", ["tmp", "notebooks"])
def test_defaults_come_from_the_project_root(no_env, monkeypatch, tmp_path, where):
    monkeypatch.chdir(tmp_path if where == "tmp" else REPO / "notebooks")
    assert paths.project_root() == REPO
    assert paths.data_dir() == REPO / "data"
    assert paths.output_dir() == REPO / "outputs"
    assert paths.cache_dir() == REPO / "data" / "cache"
    assert paths.notebook_output("04_training") == REPO / "outputs" / "04_training"
    assert all(p.is_absolute() for p in (paths.data_dir(), paths.output_dir(), paths.cache_dir()))


def test_environment_variables_win(no_env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MIR_OUTPUT_DIR", str(tmp_path / "o"))
    assert paths.data_dir() == tmp_path / "d"
    assert paths.output_dir() == tmp_path / "o"
    assert paths.cache_dir() == tmp_path / "d" / "cache"        # follows MIR_DATA_DIR
    assert paths.notebook_output("01_data_download") == tmp_path / "o" / "01_data_download"
    monkeypatch.setenv("MIR_CACHE_DIR", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"


def test_arguments_win_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MIR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MIR_OUTPUT_DIR", str(tmp_path / "o"))
    monkeypatch.setenv("MIR_CACHE_DIR", str(tmp_path / "c"))
    assert paths.data_dir(tmp_path / "x") == tmp_path / "x"
    assert paths.output_dir("rel") == Path("rel")
    assert paths.cache_dir(tmp_path / "y") == tmp_path / "y"
    assert paths.notebook_output("04_training", tmp_path / "z") == tmp_path / "z"


def test_installed_elsewhere_falls_back_to_cwd(tmp_path):
    """A copy of the package without pyproject.toml next to it (as in site-packages)."""
    site = tmp_path / "site-packages"
    (site / "mir_core").mkdir(parents=True)
    (site / "mir_core" / "__init__.py").write_text("")
    shutil.copy(REPO / "mir_core" / "paths.py", site / "mir_core" / "paths.py")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    env["PYTHONPATH"] = str(site)
    code = ("import json, mir_core.paths as p; print(json.dumps([p.__file__, str(p.project_root()),"
            " str(p.data_dir()), str(p.output_dir())]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                         capture_output=True, text=True, check=True).stdout
    file, root, data, outputs = json.loads(out)
    assert Path(file).parent == site / "mir_core"           # the copy, not the checkout
    assert Path(root) == work and Path(data) == work / "data" and Path(outputs) == work / "outputs"


def test_cli_and_demo_defaults_follow_paths():
    """No cwd-relative 'outputs' default is left in the CLI, the demo or run_notebook."""
    import inspect

    from mir_core import __main__ as cli
    from mir_core.demo import run_demo
    from mir_core.notebooks import run_notebook
    assert inspect.signature(run_demo).parameters["out"].default is None
    assert inspect.signature(run_notebook).parameters["output_dir"].default is None
    assert 'default="outputs"' not in inspect.getsource(cli)


def test_notebook_from_the_lab_folder_writes_where_the_cli_does(data_root, monkeypatch, tmp_path):
    """Notebook 01 run as JupyterLab runs it (kernel in notebooks/, no output_dir given):
    records land in $MIR_OUTPUT_DIR/01_data_download, data is read from $MIR_DATA_DIR, and
    nothing is written under notebooks/."""
    import papermill as pm

    from mir_core.notebooks import NOTEBOOK_DIR, notebook_path
    from mir_core.records import Recorder

    monkeypatch.setenv("MIR_OUTPUT_DIR", str(tmp_path / "outputs"))
    stray = [NOTEBOOK_DIR / "outputs", NOTEBOOK_DIR / "data"]
    before = [p.exists() for p in stray]
    pm.execute_notebook(str(notebook_path("01")), str(tmp_path / "executed.ipynb"),
                        parameters={"datasets": ["MIntRec2.0"]}, cwd=str(NOTEBOOK_DIR),
                        progress_bar=False)
    rec = Recorder.read(tmp_path / "outputs" / "01_data_download")
    assert rec["all_verified"] is True
    assert rec["sizes"][0]["rows"] == 6165
    assert [p.exists() for p in stray] == before                # no notebooks/outputs, data
    assert paths.data_dir() == Path(os.environ["MIR_DATA_DIR"]) and data_root.parent == paths.data_dir()
