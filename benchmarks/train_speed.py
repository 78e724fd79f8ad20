"""Seconds per training epoch on cached features vs re-encoding the inputs every epoch,
and the wall time of a whole multi-seed CPU run.

    python benchmarks/train_speed.py --dataset MIntRec2.0 --seeds 0 1 2 3 4

* cached epoch: the CPU preset's mean seconds per epoch (head on cached features).
* re-encoding epoch: what each epoch would cost if the frozen encoder ran again on the
  utterance and the three descriptions of every train sample (forward only, no grad) —
  measured on ``--encode-sample`` train samples and scaled linearly to the split — plus the
  cached epoch's head time.
* whole run: wall time of ``mir_core.training.run`` over the seeds with a warm feature cache,
  and the one-off encoding time read from the feature store's manifests.
Writes outputs/benchmarks/train_speed_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from mir_core import data
from mir_core.data import ASPECT_SHORT
from mir_core.features.store import FeatureStore
from mir_core.features.text import encode_texts, source_texts
from mir_core.modelpack import load_text_encoder
from mir_core.training import RunSpec, preset, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--encode-sample", type=int, default=512)
    ap.add_argument("--out", default="outputs/benchmarks")
    a = ap.parse_args()

    spec = data.get_spec(a.dataset)
    cfg = preset(spec.name, "cpu")
    root = data.download(spec.name, log=lambda *_: None)
    train = data.load_split(spec.name, "train", root)

    # 1) one-off encoding cost recorded by the feature store
    store = FeatureStore()
    enc_seconds = {}
    for split in data.SPLITS:
        for src in ("text", *ASPECT_SHORT):
            for mf in (store.root / spec.name / split / f"text-{src}").glob(
                    f"{cfg.encoder}-*/manifest.json"):
                m = json.loads(mf.read_text())
                enc_seconds[f"{split}/{src}"] = m["seconds"]

    # 2) whole run, warm cache
    t0 = time.perf_counter()
    summary = run(RunSpec(dataset=spec.name, method="lgsrr", preset="cpu", seeds=tuple(a.seeds),
                          name="bench-train-speed"), out_dir=Path(a.out) / "runs", resume=False)
    run_seconds = time.perf_counter() - t0
    folder = Path(summary["folder"])
    per_epoch = [json.loads((folder / f"seed_{s}" / "metrics.json").read_text())["seconds_per_epoch"]
                 for s in a.seeds]
    cached_epoch = sum(per_epoch) / len(per_epoch)

    # 3) re-encoding cost per epoch, measured on a sample and scaled to the split
    sample = train.subset(a.encode_sample, seed=0, stratify=False)
    tok, model = load_text_encoder(cfg.encoder)
    t0 = time.perf_counter()
    for src in ("text", *ASPECT_SHORT):
        max_len = cfg.max_lens(spec.name)[0 if src == "text" else 1]
        encode_texts(source_texts(sample, src), tok, model, max_len=max_len, batch_size=64)
    enc_sample_seconds = time.perf_counter() - t0
    reencode_epoch = enc_sample_seconds * len(train) / len(sample) + cached_epoch

    result = {
        "dataset": spec.name, "encoder": cfg.encoder, "seeds": a.seeds,
        "cached_seconds_per_epoch": round(cached_epoch, 3),
        "reencode_seconds_per_epoch": round(reencode_epoch, 2),
        "speedup": round(reencode_epoch / cached_epoch, 1),
        "encode_sample": len(sample), "encode_sample_seconds": round(enc_sample_seconds, 2),
        "whole_run_seconds_warm_cache": round(run_seconds, 1),
        "one_off_encoding_seconds": round(sum(enc_seconds.values()), 1),
        "one_off_encoding_by_entry": enc_seconds,
        "test_F1": summary["test"]["F1"], "test_ACC": summary["test"]["ACC"],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, threads {torch.get_num_threads()}",
    }
    out = Path(a.out) / f"train_speed_{spec.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
