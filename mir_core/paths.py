"""Where the workspace reads and writes. No hard-coded absolute paths: every location
comes from an argument, then an environment variable, then a default relative to the
current working directory (the repository root when run through `make`).

| variable            | meaning                                              | default     |
|---------------------|------------------------------------------------------|-------------|
| ``MIR_DATA_DIR``    | downloaded datasets                                  | ``data``    |
| ``MIR_OUTPUT_DIR``  | results, executed notebooks, runs                    | ``outputs`` |
| ``MIR_CACHE_DIR``   | feature store, converted models, LLM reply caches    | ``<MIR_DATA_DIR>/cache`` |
| ``MIR_DATA_MIRROR`` | local mirror of the upstream files (offline machines) | unset       |
| ``MIR_OFFLINE``     | ``1``: never touch the network                       | unset       |
| ``MIR_CUSTOM_SPLITS`` | ``1``: accept unpublished split sizes / shared keys | unset       |
| ``MIR_DATASET_SPEC`` | spec file(s) of your own datasets (``os.pathsep``)  | unset       |
"""
from __future__ import annotations

import os
from pathlib import Path


def _env_path(var: str, default: str | Path) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path(default)


def data_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else _env_path("MIR_DATA_DIR", "data")


def output_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else _env_path("MIR_OUTPUT_DIR", "outputs")


def cache_dir(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return _env_path("MIR_CACHE_DIR", data_dir() / "cache")


def mirror_dir(path: str | Path | None = None) -> Path | None:
    if path is not None:
        return Path(path)
    value = os.environ.get("MIR_DATA_MIRROR")
    return Path(value) if value else None


def offline() -> bool:
    return os.environ.get("MIR_OFFLINE", "").strip().lower() in {"1", "true", "yes"}
