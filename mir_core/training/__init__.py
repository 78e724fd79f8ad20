"""Training and evaluation: configs and presets (:mod:`.config`), model inputs per regime
(:mod:`.inputs`), the one loop (:mod:`.loop`), run folders (:mod:`.runs`), several
processes (:mod:`.distributed`; from a notebook: :func:`.launch.run_in_processes`).

    from mir_core.training import RunSpec, run, preset
    run(RunSpec(dataset="MIntRec2.0", method="lgsrr", preset="cpu", options={"fusion": "eq12"}))
"""
from .config import PRESETS, ConfigError, TrainConfig, preset
from .inputs import RegimeInputs, SplitInputs, build_inputs
from .loop import predict, train_one_seed
from .launch import run_in_processes
from .runs import RunError, RunSpec, predictions_frame, run, summary_markdown

__all__ = ["PRESETS", "ConfigError", "TrainConfig", "preset", "RegimeInputs", "SplitInputs",
           "build_inputs", "predict", "train_one_seed", "RunError", "RunSpec",
           "predictions_frame", "run", "run_in_processes", "summary_markdown"]
