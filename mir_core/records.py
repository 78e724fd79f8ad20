"""Scrapbook-style records: values a notebook "glues" so that tests, later notebooks and
docs can read them back without parsing notebook outputs.

    rec = Recorder("outputs/04_training")     # one folder per notebook run
    rec.glue("summary", summary_dict)         # -> outputs/04_training/records.json
    Recorder.read("outputs/04_training")["summary"]

Values must be JSON-serialisable; pandas DataFrames are stored as lists of records.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict") and hasattr(value, "columns"):       # DataFrame
        return [to_jsonable(r) for r in value.to_dict(orient="records")]
    if hasattr(value, "to_dict") and hasattr(value, "index"):         # Series
        return {str(k): to_jsonable(v) for k, v in value.to_dict().items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


class Recorder:
    """Appends named values to ``<folder>/records.json`` (atomic rewrite on each glue)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "records.json"

    def glue(self, name: str, value: Any, display: bool = False) -> None:
        """Record ``value`` under ``name``. Returns None, so that a glue ending a cell echoes
        nothing (a cell shows its tables once); ``display=True`` shows the value."""
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        data[name] = to_jsonable(value)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)
        if display:
            try:
                from IPython.display import display as _show
                _show(value)
            except ImportError:
                print(name, value)

    @staticmethod
    def read(folder: str | Path) -> dict:
        return json.loads((Path(folder) / "records.json").read_text())
