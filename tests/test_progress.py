"""No library progress bar: loading an encoder after `import mir_core` draws no bar on
stderr (transformers' "Loading weights" bars showed as widgets in JupyterLab, one per model,
and read "Error displaying widget" once the notebook was reopened)."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

LOAD = ("import mir_core\n"
        "from mir_core import modelpack\n"
        "modelpack.load_text_encoder('minilm-l6')\n"
        "print('loaded')\n")


def _load(**env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in {"HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                         "MIR_LIBRARY_PROGRESS"}}
    return subprocess.run([sys.executable, "-c", LOAD], env={**full, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quiet():
    return _load()


def test_loading_an_encoder_shows_no_library_bar(quiet):
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "loaded"
    assert "Loading weights" not in quiet.stderr and "%|" not in quiet.stderr, quiet.stderr


def test_the_bars_are_there_without_it():
    """Control: with MIR_LIBRARY_PROGRESS=1 the same load shows transformers' bar, so the
    test above checks the switch and not a library that stopped drawing bars."""
    loud = _load(MIR_LIBRARY_PROGRESS="1")
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr


def test_quiet_libraries_reaches_imported_modules(monkeypatch):
    import transformers  # noqa: F401  (already imported before the switch, as in a notebook)
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    from mir_core.progress import quiet_libraries
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")     # the module
    monkeypatch.delenv("MIR_LIBRARY_PROGRESS", raising=False)
    monkeypatch.setattr(hub_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", None)    # as if unset
    enable_progress_bars()
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
    try:
        assert quiet_libraries()
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    finally:
        quiet_libraries(force=True)
