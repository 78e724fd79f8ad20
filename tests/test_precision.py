"""The precision setting (fp32 | bf16 | auto): choices from injected probes, the choice
cache, and fp32 vs bf16 text features of the real minilm-l6 encoder in the feature store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mir_core import precision as P
from mir_core.features.store import FeatureStore
from mir_core.machine import Cpu


class FakeProbe:
    """Returns fixed 'seconds' per precision and counts its calls."""

    def __init__(self, fp32: float, bf16: float):
        self.seconds = {"fp32": fp32, "bf16": bf16}
        self.calls: list[str] = []

    def __call__(self, precision: str) -> float:
        self.calls.append(precision)
        return self.seconds[precision]


def _resolve(tmp_path, probe, encoder="minilm-l6", log=None):
    lines: list[str] = []
    choice = P.resolve("auto", encoder=encoder, device="cpu", probe=probe,
                       cache_path=tmp_path / "precision.json", log=log or lines.append)
    return choice, lines


@pytest.mark.parametrize("fp32, bf16, want", [
    (1.0, 0.5, "bf16"),          # bf16 twice as fast
    (1.0, 1.6, "fp32"),          # bf16 slower (the Intel Xeon case): never chosen
    (1.0, 0.97, "fp32"),         # 1.03x: within the margin, fp32 stays the reference
])
def test_auto_on_cpu_takes_the_measured_faster(tmp_path, fp32, bf16, want):
    probe = FakeProbe(fp32, bf16)
    choice, lines = _resolve(tmp_path, probe)
    assert choice.precision == want and not choice.cached
    assert sorted(probe.calls) == ["bf16", "fp32"]
    assert (choice.fp32_seconds, choice.bf16_seconds) == (fp32, bf16)
    assert choice.encoder == "minilm-l6" and choice.threads == torch.get_num_threads()
    assert choice.torch == torch.__version__ and choice.cpu
    assert len(lines) == 1 and lines[0].startswith(f"precision auto: measured {want}")
    assert f"fp32 {fp32:.3f} s" in lines[0] and f"bf16 {bf16:.3f} s" in lines[0]


def test_cache_hit_costs_no_probe_call(tmp_path):
    first, _ = _resolve(tmp_path, FakeProbe(1.0, 0.5))
    probe = FakeProbe(1.0, 2.0)                     # would choose fp32 if it were asked
    again, lines = _resolve(tmp_path, probe)
    assert probe.calls == []
    assert again.precision == "bf16" and again.cached
    assert (again.fp32_seconds, again.bf16_seconds) == (1.0, 0.5)
    assert len(lines) == 1 and lines[0].startswith("precision auto: cached bf16")
    assert "fp32 1.000 s, bf16 0.500 s" in lines[0]
    cached, _ = _resolve(tmp_path, None)            # a cached choice needs no probe
    assert cached.precision == "bf16"


@pytest.mark.parametrize("change", ["encoder", "threads", "torch", "cpu"])
def test_cache_is_keyed_by_encoder_threads_torch_and_cpu(tmp_path, monkeypatch, change):
    _resolve(tmp_path, FakeProbe(1.0, 0.5))
    encoder = "minilm-l6"
    if change == "encoder":
        encoder = "all-mpnet-base-v2"
    elif change == "threads":
        monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "9.9.9+test")
    else:
        monkeypatch.setattr(P, "cpu_facts", lambda: Cpu("AMD EPYC 7B13", "AuthenticAMD", ()))
    probe = FakeProbe(1.0, 2.0)
    choice, _ = _resolve(tmp_path, probe, encoder=encoder)
    assert sorted(probe.calls) == ["bf16", "fp32"] and choice.precision == "fp32"
    entries = json.loads((tmp_path / "precision.json").read_text())
    assert len(entries) == 2                        # both machines' choices are kept
    assert sorted(e["precision"] for e in entries.values()) == ["bf16", "fp32"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe garbage"])
def test_corrupt_cache_file_is_reported_once_and_measured_again(tmp_path, content):
    (tmp_path / "precision.json").write_bytes(content.encode("latin-1"))
    probe = FakeProbe(1.0, 0.5)
    choice, lines = _resolve(tmp_path, probe)
    assert choice.precision == "bf16" and sorted(probe.calls) == ["bf16", "fp32"]
    problems = [ln for ln in lines if "unreadable" in ln]
    assert len(problems) == 1 and "\n" not in problems[0]
    assert str(tmp_path / "precision.json") in problems[0]
    assert len(json.loads((tmp_path / "precision.json").read_text())) == 1   # rewritten
    assert _resolve(tmp_path, None)[0].cached


def test_invalid_cache_entry_is_reported_and_measured_again(tmp_path):
    _resolve(tmp_path, FakeProbe(1.0, 0.5))
    path = tmp_path / "precision.json"
    entries = json.loads(path.read_text())
    for entry in entries.values():
        entry["precision"] = "fp16"
    path.write_text(json.dumps(entries))
    probe = FakeProbe(1.0, 0.5)
    choice, lines = _resolve(tmp_path, probe)
    assert len(probe.calls) == 2 and choice.precision == "bf16"
    assert sum("not a valid choice" in ln for ln in lines) == 1


def test_fixed_precisions_pass_through_without_probe_or_log(tmp_path):
    for value in ("fp32", "bf16"):
        lines: list[str] = []
        choice = P.resolve(value, encoder="minilm-l6", device=None, probe=None,
                           cache_path=tmp_path / "precision.json", log=lines.append)
        assert choice.precision == value and choice.reason == "requested" and lines == []
    assert not (tmp_path / "precision.json").exists()


def test_auto_without_probe_or_cache_is_one_clear_error(tmp_path):
    with pytest.raises(P.PrecisionError, match="needs a probe"):
        _resolve(tmp_path, None)


def test_bad_value_is_a_precision_error_naming_the_allowed_values():
    with pytest.raises(P.PrecisionError) as err:
        P.resolve("fp16", encoder="minilm-l6", device=None, probe=None)
    msg = str(err.value)
    assert "\n" not in msg and all(v in msg for v in P.PRECISIONS) and "'fp16'" in msg
    assert isinstance(err.value, ValueError)
    with pytest.raises(P.PrecisionError, match="fp32, bf16; got 'auto'"):
        P.autocast("auto", "cpu")                   # resolve first


def test_autocast_runs_bf16_only_when_asked():
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with P.autocast("fp32", "cpu"):
        assert lin(x).dtype == torch.float32
    with P.autocast("bf16", torch.device("cpu")):
        assert lin(x).dtype == torch.bfloat16


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_native_bf16_support(tmp_path, monkeypatch, native, want):
    monkeypatch.setattr(P, "_cuda_bf16", lambda dev: native)
    monkeypatch.setattr(P, "_gpu_name", lambda dev: "Tesla T4")
    probe, lines = FakeProbe(1.0, 0.5), []
    choice = P.resolve("auto", encoder="minilm-l6", device="cuda:0", probe=probe,
                       cache_path=tmp_path / "precision.json", log=lines.append)
    assert choice.precision == want and "Tesla T4" in choice.reason and probe.calls == []
    assert lines == [f"precision auto: {want} for minilm-l6; {choice.reason}"]
    assert not (tmp_path / "precision.json").exists()             # nothing to cache
    if not native:
        with pytest.raises(P.PrecisionError, match="Tesla T4"):
            P.resolve("bf16", encoder="minilm-l6", device="cuda", probe=None)


def test_text_probe_loads_at_first_call_and_times_sorted_spread_batches(monkeypatch):
    from mir_core import modelpack

    seen: list[list[str]] = []
    loads: list[str] = []

    def tokenizer(batch, **kwargs):
        seen.append(list(batch))
        return {"input_ids": torch.zeros(len(batch), 3, dtype=torch.long)}

    def model(input_ids, output_hidden_states):
        return None

    def load(name, device=None):
        loads.append(name)
        return tokenizer, model

    monkeypatch.setattr(modelpack, "load_text_encoder", load)
    texts = [("w " * k).strip() for k in range(100, 0, -1)]       # longest first
    probe = P.text_probe("minilm-l6", texts, batch_size=8, batches=3)
    assert loads == []                                             # nothing loaded yet
    assert probe("fp32") >= 0 and probe("bf16") >= 0
    assert loads == ["minilm-l6"] and len(seen) == 3               # tokenised once
    flat = [t for b in seen for t in b]
    assert len(flat) == 24 and flat == sorted(flat, key=len)
    assert len(flat[0]) == 1 and len(flat[-1]) == len(texts[0])    # the whole length range
    with pytest.raises(ValueError, match="no texts"):
        P.text_probe("minilm-l6", [])


# ------------------------------------------------------------------ real encoder, real store
def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _settings(root, modality: str) -> list[dict]:
    return [json.loads(m.read_text())["settings"]
            for m in sorted(root.glob(f"MIntRec2.0/dev/{modality}/*/manifest.json"))]


def test_bf16_text_features_match_fp32_in_their_own_store_entries(data_root, tmp_path,
                                                                  monkeypatch, capsys):
    from mir_core.data import load_split
    from mir_core.features.text import split_text_features
    from mir_core.features.tokens import split_token_features

    monkeypatch.setenv("MIR_CACHE_DIR", str(tmp_path / "cache"))
    sp = load_split("MIntRec2.0", "dev", data_root).subset(5, seed=0)
    store = FeatureStore(tmp_path / "features")
    f32 = split_text_features(sp, "minilm-l6", ("text",), store=store, progress=False)
    b16 = split_text_features(sp, "minilm-l6", ("text",), store=store, progress=False,
                              precision="bf16")
    for pool in ("mean", "cls"):
        assert b16["text"][pool].dtype == f32["text"][pool].dtype == np.float16
        assert _cosines(f32["text"][pool], b16["text"][pool]).min() > 0.999
    assert not np.array_equal(f32["text"]["mean"], b16["text"]["mean"])
    settings = _settings(tmp_path / "features", "text-text")
    assert len(settings) == 2                                      # two entries, never mixed
    # bf16 is keyed as such; fp32 keeps the key it had before precision existed
    assert sorted(s.get("precision", "fp32") for s in settings) == ["bf16", "fp32"]

    # auto, resolved from a cached choice (bf16 here) before the store is consulted
    P.resolve("auto", encoder="minilm-l6", device=None, probe=FakeProbe(1.0, 0.5))
    capsys.readouterr()
    auto = split_text_features(sp, "minilm-l6", ("text",), store=store, progress=False,
                               precision="auto")
    assert "cached bf16" in capsys.readouterr().out
    np.testing.assert_array_equal(auto["text"]["mean"], b16["text"]["mean"])
    assert len(_settings(tmp_path / "features", "text-text")) == 2  # served from bf16's

    t32 = split_token_features(sp, "minilm-l6", ("text",), store=store, progress=False)
    t16 = split_token_features(sp, "minilm-l6", ("text",), store=store, progress=False,
                               precision="bf16")
    assert t16["text"]["tokens"].dtype == np.float16 and t16["text"]["pooled"].dtype == np.float32
    np.testing.assert_array_equal(t32["text"]["mask"], t16["text"]["mask"])
    assert _cosines(t32["text"]["pooled"], t16["text"]["pooled"]).min() > 0.999
    tok = _settings(tmp_path / "features", "tokens-text")
    assert sorted(s.get("precision", "fp32") for s in tok) == ["bf16", "fp32"]
    with pytest.raises(P.PrecisionError):          # before the store or encoder is touched
        split_token_features(sp, "minilm-l6", ("A",), store=store, precision="half")
    assert not (tmp_path / "features" / "MIntRec2.0" / "dev" / "tokens-A").exists()
