"""Run the numbered notebooks headless with papermill (what `make demo` and the tests do)."""
from __future__ import annotations

import time
from pathlib import Path

from . import paths

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_path(name: str) -> Path:
    """'04' or '04_training' or a path -> the notebook file."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p
    matches = sorted(NOTEBOOK_DIR.glob(f"{name}*.ipynb"))
    if not matches:
        raise FileNotFoundError(f"no notebook matching {name!r} in {NOTEBOOK_DIR}")
    return matches[0]


def run_notebook(name: str, parameters: dict | None = None,
                 output_dir: str | Path | None = None,
                 cwd: str | Path | None = None, kernel_name: str | None = None,
                 log_output: bool = False) -> Path:
    """Execute a notebook with papermill; the executed copy goes to
    ``<output_dir>/notebooks/<name>.ipynb`` (``output_dir`` None: ``paths.output_dir()``,
    i.e. $MIR_OUTPUT_DIR or ``outputs/`` at the project root). ``parameters['output_dir']``
    defaults to ``<output_dir>/<notebook stem>`` so each notebook's records land in its own
    folder. The kernel starts in the project root unless ``cwd`` says otherwise; the
    notebooks do not depend on it."""
    import papermill as pm

    src = notebook_path(name)
    out_dir = paths.output_dir(output_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    params = dict(parameters or {})
    params.setdefault("output_dir", str((out_dir / src.stem).resolve()))
    dst = out_dir / "notebooks" / src.name
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(dst), parameters=params,
                        cwd=str(cwd or paths.project_root()), kernel_name=kernel_name,
                        log_output=log_output, progress_bar=False)
    print(f"{src.name}: {time.perf_counter() - t0:.1f} s -> {dst}")
    return dst
