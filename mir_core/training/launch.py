"""Start a run in several processes from a notebook kernel (``accelerate.notebook_launcher``).

``python -m mir_core train`` is started in several processes by ``accelerate launch`` or
``torchrun``; a JupyterLab kernel cannot be started that way, so :func:`run_in_processes`
forks ``num_processes`` workers from the kernel with accelerate's notebook launcher, each
running the same :func:`~mir_core.training.runs.run`, and returns the summary the main
worker wrote. ``num_processes=1`` runs in the kernel itself, as before.

accelerate allows a multi-process launch only from a kernel that has not created an
``Accelerator`` yet: restart the kernel after single-process runs (its error says so).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import paths
from ..data import get_spec
from .runs import RunError, RunSpec, run


def _worker(spec: RunSpec, kwargs: dict) -> None:
    run(spec, **kwargs)


def run_in_processes(spec: RunSpec, num_processes: int = 1, **kwargs) -> dict:
    """The summary of ``run(spec, **kwargs)`` trained by ``num_processes`` processes (GPUs
    where there are as many, else CPU processes with gloo)."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes == 1:
        return run(spec, **kwargs)
    from accelerate import notebook_launcher

    notebook_launcher(_worker, (spec, kwargs), num_processes=num_processes)
    root = kwargs.get("data_root")
    name = get_spec(spec.dataset, Path(root) if root else paths.data_dir() / "lgsrr").name
    folder = paths.output_dir(kwargs.get("out_dir")) / "runs" / name / spec.run_name()
    summary = folder / "summary.json"
    if not summary.exists():
        raise RunError(f"the {num_processes} processes ended without writing {summary}")
    return json.loads(summary.read_text())
