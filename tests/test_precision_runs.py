"""The run's precision setting: validated, resolved once (auto: measured or cached), applied
to the cached features and to the training autocast, recorded where a run is compared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import write_precision_choice
from mir_core import paths
from mir_core.training import ConfigError, RunError, RunSpec, preset, run
from mir_core.training.inputs import SplitInputs
from mir_core.training.loop import predict

TINY = dict(dataset="MIntRec2.0", method="lgsrr", seeds=(0,), max_train=40, max_eval=24)
QUIET = dict(log=lambda *_: None)


def test_presets_precision_and_bad_values():
    assert preset("MIntRec2.0", "official").precision == "fp32"        # as the official code
    assert preset("MIntRec2.0", "cpu").precision == "auto"
    assert preset("IEMOCAP-DA", "cpu-ft").precision == "auto"
    with pytest.raises(ConfigError, match="precision must be one of.*fp32.*bf16.*auto"):
        preset("MIntRec2.0", "cpu", precision="fp16")
    with pytest.raises(ConfigError, match="mixed_precision is now precision"):
        preset("MIntRec2.0", "cpu", mixed_precision="bf16")


def test_accelerate_mixed_precision_is_refused(monkeypatch):
    from mir_core.training.distributed import make_accelerator
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ConfigError, match="--set precision="):
        make_accelerator()


@pytest.mark.fault(area="training runs", case="bf16 and fp32 runs of one configuration",
                   before="no precision in the fingerprint or the feature key: a bf16 "
                          "resume could reuse fp32 seeds and features",
                   after="the resolved precision keys the features and the fingerprint; a "
                         "changed choice is a RunError naming precision")
def test_auto_resolution_is_recorded_and_never_mixes(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MIR_CACHE_DIR", str(tmp_path / "cache"))
    spec = RunSpec(**TINY, name="auto", overrides={"epochs": 1})
    write_precision_choice(paths.cache_dir(), "bf16")
    lines: list[str] = []
    s = run(spec, data_root=data_root, out_dir=tmp_path, log=lines.append)
    folder = Path(s["folder"])
    assert s["precision"] == "bf16"
    assert any("precision auto: cached bf16 for minilm-l6" in line for line in lines)
    config = json.loads((folder / "config.json").read_text())
    assert config["train_config"]["precision"] == "bf16"
    assert config["precision"]["reason"] == "written by the test"
    fp = json.loads((folder / "seed_0" / "fingerprint.json").read_text())
    assert fp["train_config"]["precision"] == "bf16"
    settings = [json.loads(p.read_text()).get("settings", {})
                for p in (tmp_path / "cache").rglob("manifest.json")]
    text_entries = [st for st in settings if st.get("pooling") == "mean+cls"]
    assert text_entries and all(st.get("precision") == "bf16" for st in text_entries)

    write_precision_choice(paths.cache_dir(), "fp32")   # the same command where fp32 wins
    with pytest.raises(RunError, match=r"train_config.precision: 'bf16' -> 'fp32'"):
        run(spec, data_root=data_root, out_dir=tmp_path, **QUIET)
    fresh = run(spec, data_root=data_root, out_dir=tmp_path, resume=False, **QUIET)
    assert fresh["precision"] == "fp32"
    assert fresh["per_seed"][0]["F1"] >= 0


class _Probe(torch.nn.Module):
    """Records whether its forward ran under CPU bf16 autocast."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.seen: list[bool] = []

    def forward(self, feats):
        self.seen.append(torch.is_autocast_enabled("cpu"))
        out = self.lin(feats)
        return type("Out", (), {"logits": out, "scores": {}})()


@pytest.mark.parametrize("precision, autocast_on", [("fp32", False), ("bf16", True)])
def test_predict_applies_the_precision(precision, autocast_on):
    from mir_core.data import load_split
    split = load_split("MIntRec2.0", "dev").subset(10, seed=0)
    inputs = SplitInputs(split, {"feats": torch.randn(10, 4),
                                 "labels": torch.zeros(10, dtype=torch.long)}, ("feats",))
    model = _Probe()
    out = predict(model, inputs, 4, trim=False, precision=precision)
    assert model.seen == [autocast_on] * 3
    assert out["logits"].dtype.name == "float32" and out["logits"].shape == (10, 3)
