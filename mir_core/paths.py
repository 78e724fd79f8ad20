"""Where the workspace reads and writes. No hard-coded absolute paths: every location
comes from an argument, then an environment variable, then a default under the project
root, so JupyterLab (kernels start in ``notebooks/``), papermill and the command line all
use the same folders whatever their working directory.

The project root is the folder holding ``pyproject.toml`` next to the ``mir_core`` package
(a source checkout, editable install included); when the package is installed elsewhere
(e.g. site-packages) there is no such marker and the root is the current working directory.
Relative values of the variables below, like relative arguments, are taken relative to the
current working directory.

| variable            | meaning                                              | default     |
|---------------------|------------------------------------------------------|-------------|
| ``MIR_DATA_DIR``    | downloaded datasets                                  | ``<root>/data``    |
| ``MIR_OUTPUT_DIR``  | results, executed notebooks, runs                    | ``<root>/outputs`` |
| ``MIR_CACHE_DIR``   | feature store, converted models, LLM reply caches    | ``<MIR_DATA_DIR>/cache`` |
| ``MIR_DATA_MIRROR`` | local mirror of the upstream files (offline machines) | unset       |
| ``MIR_OFFLINE``     | ``1``: never touch the network                       | unset       |
| ``MIR_CUSTOM_SPLITS`` | ``1``: accept unpublished split sizes / shared keys | unset       |
| ``MIR_DATASET_SPEC`` | spec file(s) of your own datasets (``os.pathsep``)  | unset       |
"""
from __future__ import annotations

import os
from pathlib import Path

# The folder above the package; it is the project root when it holds this marker.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
ROOT_MARKER = "pyproject.toml"


def project_root() -> Path:
    """The repository root (``pyproject.toml`` next to ``mir_core/``), else the cwd."""
    if (_PACKAGE_PARENT / ROOT_MARKER).is_file() and (_PACKAGE_PARENT / "mir_core").is_dir():
        return _PACKAGE_PARENT
    return Path.cwd()


def _env_path(var: str, default: str | Path) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path(default)


def data_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else _env_path("MIR_DATA_DIR", project_root() / "data")


def output_dir(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return _env_path("MIR_OUTPUT_DIR", project_root() / "outputs")


def cache_dir(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return _env_path("MIR_CACHE_DIR", data_dir() / "cache")


def notebook_output(stem: str, path: str | Path | None = None) -> Path:
    """A notebook's own output folder: ``path`` if given (papermill passes one), else
    ``<output_dir()>/<stem>``, e.g. ``outputs/04_training`` at the project root."""
    return Path(path) if path is not None else output_dir() / stem


def mirror_dir(path: str | Path | None = None) -> Path | None:
    if path is not None:
        return Path(path)
    value = os.environ.get("MIR_DATA_MIRROR")
    return Path(value) if value else None


def offline() -> bool:
    return os.environ.get("MIR_OFFLINE", "").strip().lower() in {"1", "true", "yes"}
