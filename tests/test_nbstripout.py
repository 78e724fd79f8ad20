"""Outputs stay out of git, also for JupyterLab users: `make env` installs the nbstripout
filter (tools/install_nbstripout.sh) that the committed .gitattributes names."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "install_nbstripout.sh"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def _install(repo: Path) -> subprocess.CompletedProcess:
    """What `make env` runs (the Makefile passes the venv's python and the checkout)."""
    return subprocess.run(["sh", str(SCRIPT), sys.executable, str(repo)], capture_output=True,
                          text=True, check=True)


def _notebook_with_outputs() -> nbformat.NotebookNode:
    nb = new_notebook()
    code = new_code_cell("print('hi')\n{'big': list(range(3))}", execution_count=3,
                         outputs=[new_output("stream", name="stdout", text="hi\n"),
                                  new_output("execute_result", execution_count=3,
                                             data={"text/plain": "{'big': [0, 1, 2]}"}),
                                  new_output("display_data", data={
                                      "application/vnd.jupyter.widget-view+json":
                                          {"model_id": "abc", "version_major": 2,
                                           "version_minor": 0}})])
    code["id"] = "cell-01"
    md = new_markdown_cell("# title")
    md["id"] = "cell-00"
    nb.cells = [md, code]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_the_makefile_installs_the_filter_with_the_script():
    make = (REPO / "Makefile").read_text()
    env_recipe = make.split("\nenv:", 1)[1].split("\n\n", 1)[0]
    assert "tools/install_nbstripout.sh" in env_recipe
    assert "filter=nbstripout" in (REPO / ".gitattributes").read_text()


def test_a_notebook_is_staged_without_outputs(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copy(REPO / ".gitattributes", repo / ".gitattributes")
    first = _install(repo)
    assert "installed" in first.stdout
    assert sys.executable in _git(repo, "config", "--get", "filter.nbstripout.clean")
    assert _install(repo).stdout == ""                          # a second run changes nothing

    nbformat.write(_notebook_with_outputs(), repo / "nb.ipynb")
    _git(repo, "add", "nb.ipynb")
    staged = json.loads(_git(repo, "show", ":nb.ipynb"))
    code = staged["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "".join(code["source"]) == "print('hi')\n{'big': list(range(3))}"
    assert [c["id"] for c in staged["cells"]] == ["cell-00", "cell-01"]    # ids kept
    assert "widgets" not in staged["metadata"]
    # the working copy keeps its outputs; git sees no change against the stripped index
    assert len(nbformat.read(repo / "nb.ipynb", as_version=4).cells[1].outputs) == 3
    assert "nb.ipynb" not in _git(repo, "diff", "--name-only")


def test_the_tracked_notebooks_pass_the_filter_unchanged(tmp_path):
    """Installing the filter does not make the committed notebooks look modified."""
    clean = []
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if not any(c.get("outputs") for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]):
            clean.append(shutil.copy(nb, tmp_path / nb.name))   # skip any executed here
    assert clean
    subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", *map(str, clean)],
                   check=True)                                  # in place, on the copies
    for copy in clean:
        assert Path(copy).read_bytes() == (REPO / "notebooks" / Path(copy).name).read_bytes(), \
            Path(copy).name


def test_harmless_outside_a_git_checkout(tmp_path):
    r = _install(tmp_path)                      # a tarball: no .git
    assert r.returncode == 0 and "not a git checkout" in r.stdout
    assert not (tmp_path / ".git").exists()
