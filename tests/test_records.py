"""Recorder.glue stores a value and returns None, so a glue ending a notebook cell does not
echo the value a second time (notebook 01 used to print a four-screen dict)."""
from __future__ import annotations

import pandas as pd

from mir_core.records import Recorder


def test_glue_returns_none_and_records(tmp_path):
    rec = Recorder(tmp_path / "nb")
    table = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")]})
    assert rec.glue("table", table) is None
    assert rec.glue("n", 3) is None
    back = Recorder.read(tmp_path / "nb")
    assert back["table"] == [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    assert back["n"] == 3


def test_glue_displays_only_when_asked(tmp_path, capsys):
    rec = Recorder(tmp_path)
    rec.glue("quiet", {"x": 1})
    assert capsys.readouterr().out == ""
    assert rec.glue("shown", {"x": 2}, display=True) is None
    assert "{'x': 2}" in capsys.readouterr().out             # IPython's display, outside a kernel
