"""Progress output of the workspace: our own long loops (training epochs, feature encoding)
show one ``tqdm.auto`` bar each; the libraries underneath show none.

Without this, loading a model in JupyterLab shows transformers' "Loading weights" widget
bars (one per model, per seed) and the hub's download bars instead of the training bar, and
those widgets read "Error displaying widget: model not found" once the notebook is reopened.
``import mir_core`` calls :func:`quiet_libraries`; set ``MIR_LIBRARY_PROGRESS=1`` to keep
the libraries' bars and info messages (e.g. to watch a slow download).
"""
from __future__ import annotations

import os
import sys

# Read by huggingface_hub and transformers when they are imported.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _keep_library_bars() -> bool:
    return os.environ.get("MIR_LIBRARY_PROGRESS", "").strip().lower() in {"1", "true", "yes"}


def quiet_libraries(force: bool = False) -> bool:
    """Silence the progress bars and info logging of huggingface_hub and transformers.

    Sets the environment variables of ``QUIET_ENV`` (values already set by the user win)
    so that the libraries start quiet, and switches the bars off in those already imported
    (no import is triggered here: ``import mir_core`` stays cheap). Returns False, doing
    nothing, when ``MIR_LIBRARY_PROGRESS=1`` and not ``force``.
    """
    if not force and _keep_library_bars():
        return False
    for var, value in QUIET_ENV.items():
        if force:
            os.environ[var] = value
        else:
            os.environ.setdefault(var, value)
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub.utils import disable_progress_bars
            disable_progress_bars()
        except ImportError:
            pass
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:
            pass
    return True


def quiet_module_bars(module: str) -> bool:
    """Switch off the bars of a library module that calls ``tqdm.auto.tqdm`` directly,
    past transformers' switch (e.g. ``transformers.modeling_gguf_pytorch_utils``, the GGUF
    conversion of the local LLMs). Returns whether it did (not with MIR_LIBRARY_PROGRESS=1)."""
    if _keep_library_bars():
        return False
    import functools
    import importlib

    mod = importlib.import_module(module)
    bar = getattr(mod, "tqdm", None)
    if bar is None or getattr(bar, "_mir_quiet", False):
        return bar is not None
    quiet = functools.partial(bar, disable=True)
    quiet._mir_quiet = True
    mod.tqdm = quiet
    return True
