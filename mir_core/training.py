"""Training and evaluation: presets, the seed loop, run folders.

Two settings share one loop (AdamW + linear warmup, early stopping on dev macro-F1 with
patience, best state restored, test metrics via scikit-learn):

* ``paper`` presets: the paper's hyper-parameters, the encoder fine-tuned end to end
  (GPU users; ``accelerate launch -m mir_core train ...`` for several GPUs).
* ``cpu`` presets: the encoder frozen and run once; per-layer pooled features come from the
  feature store and only the relational head (+ a projection) is trained. Seconds per epoch.

A run folder ``<out>/<dataset>/<run name>/`` holds ``config.json``, ``seed_<k>/metrics.json``,
``seed_<k>/predictions.csv`` (per-sample prediction, importance weights alpha, beta, gamma),
``seed_<k>/best.pt``, and ``summary.json`` / ``summary.md`` (mean +- std over seeds).
Finished seeds are skipped when the run is started again (resumable).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from . import paths
from .data import ASPECT_SHORT, MIRSplit, get_spec, load_split
from .metrics import METRICS, classification_metrics, format_summary, summarize
from .models import CachedConfig, CachedLGSRR, CachedTextOnly, LGSRR, LGSRRConfig, TextOnly

SOURCE_NAMES = ("T", *ASPECT_SHORT)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (the presets below fill them per dataset)."""

    encoder: str = "minilm-l6"
    frozen: bool = True               # True: cached features (CPU preset); False: fine-tune
    pooling: str = "mean"             # mean (Eq. 5-6) | cls
    layers: int = 1                   # cached layers mixed (last k hidden states)
    proj_dim: int = 0                 # CPU preset: trainable projection of frozen features
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 100
    warmup_ratio: float = 0.1
    weight_decay: float = 0.05
    grad_clip: float = -1.0           # <= 0: no clipping
    dropout: float = 0.4
    weight_hidden: int = 768          # weight network hidden size (Eq. 7)
    patience: int = 5
    rank_weight: float = 1.0          # lambda (Eq. 18)
    ndcg_temperature: float = 1.0
    text_len: int | None = None       # None: the dataset's paper value
    desc_len: int | None = None
    eval_batch_size: int = 256
    mixed_precision: str = "no"       # no | bf16 (autocast through accelerate)
    num_threads: int = 0              # CPU threads for torch (0: leave torch's default)

    def replace(self, **kw) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - names)
        if bad:
            raise KeyError(f"unknown TrainConfig field(s) {bad}; known: {sorted(names)}")
        return dataclasses.replace(self, **kw)


# The paper's hyper-parameters (Sec. 4.1 and the official run scripts as summarised in
# issue #2): bert-large-uncased fine-tuned, batch 32, 100 epochs, patience 5.
PAPER = {
    "MIntRec2.0": TrainConfig(encoder="bert-large-uncased", frozen=False, pooling="cls",
                              lr=6e-6, batch_size=32, epochs=100, warmup_ratio=0.1,
                              weight_decay=0.05, dropout=0.4, weight_hidden=768, patience=5),
    "IEMOCAP-DA": TrainConfig(encoder="bert-large-uncased", frozen=False, pooling="mean",
                              lr=1e-5, batch_size=32, epochs=100, warmup_ratio=0.05,
                              weight_decay=0.1, grad_clip=0.4, dropout=0.4, weight_hidden=768,
                              patience=5),
}
# CPU presets: frozen offline encoder, cached features, head-only training. Chosen on the
# dev split (docs/RESULTS.md, "Tuning the CPU preset").
CPU = {
    "MIntRec2.0": TrainConfig(encoder="minilm-l6", frozen=True, pooling="mean", layers=4,
                              proj_dim=512, lr=1e-3, batch_size=32, epochs=40,
                              warmup_ratio=0.1, weight_decay=0.05, dropout=0.4,
                              weight_hidden=256, patience=6, num_threads=1),
    "IEMOCAP-DA": TrainConfig(encoder="minilm-l6", frozen=True, pooling="mean", layers=4,
                              proj_dim=512, lr=1e-3, batch_size=32, epochs=40,
                              warmup_ratio=0.05, weight_decay=0.1, grad_clip=0.4, dropout=0.4,
                              weight_hidden=256, patience=6, num_threads=1),
}
CPU["MIntRec"] = CPU["MIntRec2.0"]
PAPER["MIntRec"] = PAPER["MIntRec2.0"]
PRESETS = {"paper": PAPER, "cpu": CPU}


def preset(dataset: str, name: str = "cpu", **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name][get_spec(dataset).name].replace(**overrides)


# --------------------------------------------------------------------------- inputs
@dataclass
class SplitTensors:
    split: MIRSplit
    tensors: dict[str, torch.Tensor]       # model forward kwargs, first axis = sample


def cached_tensors(split: MIRSplit, cfg: TrainConfig, method: str, store=None,
                   progress: bool = False) -> SplitTensors:
    """feats (N, 4, layers, D) float32 from the feature store (encoded once, then reused)."""
    from .features.text import split_text_features

    sources = ("text",) if method == "text" else ("text", *ASPECT_SHORT)
    feats = split_text_features(split, cfg.encoder, sources, store=store, text_len=cfg.text_len,
                                desc_len=cfg.desc_len, progress=progress)
    stack = [np.asarray(feats[s][cfg.pooling][:, -cfg.layers:], dtype=np.float32)
             for s in sources]                                          # each (N, layers, D)
    t = {"feats": torch.from_numpy(np.stack(stack, axis=1)),            # (N, S, layers, D)
         "labels": torch.from_numpy(split.label_ids)}
    if split.has_ranks:
        t["rank_order"] = torch.from_numpy(split.rank_order)
    return SplitTensors(split, t)


def token_tensors(split: MIRSplit, cfg: TrainConfig, tokenizer) -> SplitTensors:
    """Token ids for fine-tuning: text (N, l_T+2), descriptions (N, 3, l_D+2)."""
    spec = get_spec(split.dataset)
    lt, ld = (cfg.text_len or spec.text_len) + 2, (cfg.desc_len or spec.desc_len) + 2
    tt = tokenizer(split.texts, padding="max_length", truncation=True, max_length=lt,
                   return_tensors="pt")
    t = {"text_ids": tt["input_ids"], "text_mask": tt["attention_mask"],
         "labels": torch.from_numpy(split.label_ids)}
    if split.has_descriptions:
        dd = [tokenizer(split.descriptions(a), padding="max_length", truncation=True,
                        max_length=ld, return_tensors="pt") for a in range(3)]
        t["desc_ids"] = torch.stack([d["input_ids"] for d in dd], 1)
        t["desc_mask"] = torch.stack([d["attention_mask"] for d in dd], 1)
    if split.has_ranks:
        t["rank_order"] = torch.from_numpy(split.rank_order)
    return SplitTensors(split, t)


def build_model(method: str, cfg: TrainConfig, num_labels: int, fusion: str = "paper",
                feat_dim: int | None = None, encoder=None, ablation: dict | None = None):
    """A model by method name: 'lgsrr' or 'text', cached (frozen) or fine-tuned."""
    if method not in ("lgsrr", "text"):
        raise KeyError(f"unknown method {method!r}; known: ['lgsrr', 'text']")
    if cfg.frozen:
        cached = CachedConfig(in_dim=feat_dim, num_layers=cfg.layers, proj_dim=cfg.proj_dim)
        if method == "text":
            return CachedTextOnly(num_labels, cached, dropout=cfg.dropout)
        lcfg = LGSRRConfig(num_labels=num_labels, weight_hidden=cfg.weight_hidden,
                           dropout=cfg.dropout, fusion=fusion, rank_weight=cfg.rank_weight,
                           ndcg_temperature=cfg.ndcg_temperature, **(ablation or {}))
        return CachedLGSRR(lcfg, cached)
    if method == "text":
        return TextOnly(num_labels, encoder, pooling=cfg.pooling)
    lcfg = LGSRRConfig(num_labels=num_labels, weight_hidden=cfg.weight_hidden,
                       dropout=cfg.dropout, fusion=fusion, rank_weight=cfg.rank_weight,
                       ndcg_temperature=cfg.ndcg_temperature, **(ablation or {}))
    return LGSRR(lcfg, encoder, pooling=cfg.pooling)


# --------------------------------------------------------------------------- loop
def _loader(t: SplitTensors, keys: Sequence[str], batch_size: int, shuffle: bool,
            seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    ds = TensorDataset(*[t.tensors[k] for k in keys])
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g)


def _batch_kwargs(keys, batch):
    return dict(zip(keys, batch))


@torch.no_grad()
def predict(model, t: SplitTensors, batch_size: int, accelerator=None) -> dict[str, np.ndarray]:
    """Logits-argmax predictions plus relation scores (alpha, beta, gamma) when the model has them."""
    model.eval()
    keys = [k for k in t.tensors if k not in ("labels", "rank_order")]
    loader = _loader(t, keys, batch_size, shuffle=False, seed=0)
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    outs: dict[str, list] = {}
    for batch in loader:
        out = model(**_batch_kwargs(keys, batch))
        for k in ("logits", "alpha", "beta", "gamma"):
            if k in out:
                v = out[k].float()
                if accelerator is not None:
                    v = accelerator.gather_for_metrics(v)
                outs.setdefault(k, []).append(v.cpu().numpy())
    res = {k: np.concatenate(v) for k, v in outs.items()}
    res["pred"] = res["logits"].argmax(-1)
    return res


def train_one_seed(method: str, cfg: TrainConfig, seed: int, train: SplitTensors,
                   dev: SplitTensors, test: SplitTensors, num_labels: int,
                   fusion: str = "paper", encoder_factory=None, ablation: dict | None = None,
                   log=print) -> tuple[dict, dict, dict]:
    """Train with early stopping on dev macro-F1; returns (metrics, test predictions, state)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    feat_dim = train.tensors["feats"].shape[-1] if cfg.frozen else None
    encoder = encoder_factory() if encoder_factory is not None else None
    model = build_model(method, cfg, num_labels, fusion, feat_dim, encoder, ablation)

    keys = [k for k in train.tensors]
    loader = _loader(train, keys, cfg.batch_size, shuffle=True, seed=seed)
    no_decay = ("bias", "LayerNorm.weight", "norm.weight", "mix.logits")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(x in n for x in no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(x in n for x in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    steps = math.ceil(len(loader) / accelerator.num_processes) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    best = {"f1": -1.0, "epoch": -1, "state": None}
    history = []
    t0 = time.perf_counter()
    wait = 0
    for epoch in range(cfg.epochs):
        model.train()
        te = time.perf_counter()
        tot, n = 0.0, 0
        for batch in loader:
            out = model(**_batch_kwargs(keys, batch))
            accelerator.backward(out["loss"])
            if cfg.grad_clip and cfg.grad_clip > 0:
                accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            tot += float(out["loss"].detach()) * len(batch[0])
            n += len(batch[0])
        dev_pred = predict(model, dev, cfg.eval_batch_size, accelerator)["pred"]
        dev_m = classification_metrics(dev.tensors["labels"].numpy(), dev_pred)
        history.append({"epoch": epoch + 1, "train_loss": tot / max(n, 1), "dev_F1": dev_m["F1"],
                        "dev_ACC": dev_m["ACC"], "seconds": time.perf_counter() - te})
        if dev_m["F1"] > best["f1"]:
            best = {"f1": dev_m["F1"], "epoch": epoch + 1,
                    "state": copy.deepcopy(accelerator.unwrap_model(model).state_dict())}
            wait = 0
        else:
            wait += 1
            if wait >= cfg.patience:
                break
    train_seconds = time.perf_counter() - t0
    accelerator.unwrap_model(model).load_state_dict(best["state"])
    test_out = predict(model, test, cfg.eval_batch_size, accelerator)
    dev_out = predict(model, dev, cfg.eval_batch_size, accelerator)
    metrics = {
        "seed": seed, **classification_metrics(test.tensors["labels"].numpy(), test_out["pred"]),
        "dev": classification_metrics(dev.tensors["labels"].numpy(), dev_out["pred"]),
        "best_epoch": best["epoch"], "epochs_run": len(history),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 3),
        "history": history,
    }
    log(f"seed {seed}: test F1 {metrics['F1']:.2f} ACC {metrics['ACC']:.2f} "
        f"(best epoch {best['epoch']}, {train_seconds:.1f} s)")
    return metrics, test_out, best["state"]


def predictions_frame(split: MIRSplit, out: dict) -> pd.DataFrame:
    df = pd.DataFrame({"key": split.keys, "text": split.texts, "label": split.frame["label"],
                       "label_id": split.label_ids, "pred_id": out["pred"]})
    df["pred"] = [split.labels[i] for i in out["pred"]]
    for name, width in (("alpha", 4), ("beta", 3), ("gamma", 3)):
        if name in out:
            srcs = SOURCE_NAMES if width == 4 else SOURCE_NAMES[1:]
            for j, s in enumerate(srcs):
                df[f"{name}_{s}"] = out[name][:, j]
    return df


@dataclass
class RunSpec:
    dataset: str = "MIntRec2.0"
    method: str = "lgsrr"
    preset: str = "cpu"
    fusion: str = "paper"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    overrides: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)   # LGSRRConfig switches (Table 8)
    max_train: int | None = None                   # subsample (smoke tests); None = all
    max_eval: int | None = None
    name: str | None = None

    def run_name(self) -> str:
        if self.name:
            return self.name
        parts = [self.method] + ([self.fusion] if self.method == "lgsrr" else []) + [self.preset]
        parts += [f"{k}={v}" for k, v in sorted(self.overrides.items())]
        parts += [f"{k}={v}" for k, v in sorted(self.ablation.items())]
        if self.max_train:
            parts.append(f"n{self.max_train}")
        return "-".join(str(p) for p in parts)


def run(spec: RunSpec, data_root: str | Path | None = None, out_dir: str | Path | None = None,
        store=None, resume: bool = True, log=print) -> dict:
    """Train and test one configuration over seeds; returns the summary dict."""
    ds = get_spec(spec.dataset)
    cfg = preset(ds.name, spec.preset, **spec.overrides)
    folder = paths.output_dir(out_dir) / "runs" / ds.name / spec.run_name()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"spec": asdict(spec), "train_config": asdict(cfg)}, indent=2, default=str))

    splits = {s: load_split(ds.name, s, data_root) for s in ("train", "dev", "test")}
    splits["train"] = splits["train"].subset(spec.max_train, seed=0)
    splits["dev"] = splits["dev"].subset(spec.max_eval, seed=0)
    splits["test"] = splits["test"].subset(spec.max_eval, seed=0)
    t0 = time.perf_counter()
    encoder_factory = None
    if cfg.frozen:
        tens = {s: cached_tensors(sp, cfg, spec.method, store) for s, sp in splits.items()}
    else:
        from .modelpack import load_text_encoder
        tok, _ = load_text_encoder(cfg.encoder)
        tens = {s: token_tensors(sp, cfg, tok) for s, sp in splits.items()}
        encoder_factory = lambda: load_text_encoder(cfg.encoder)[1].train()  # noqa: E731
    feature_seconds = time.perf_counter() - t0

    rows = []
    for seed in spec.seeds:
        sdir = folder / f"seed_{seed}"
        mfile = sdir / "metrics.json"
        if resume and mfile.exists():
            rows.append(json.loads(mfile.read_text()))
            log(f"seed {seed}: done already ({mfile})")
            continue
        metrics, test_out, state = train_one_seed(
            spec.method, cfg, seed, tens["train"], tens["dev"], tens["test"],
            ds.num_labels, spec.fusion, encoder_factory, spec.ablation, log=log)
        sdir.mkdir(parents=True, exist_ok=True)
        torch.save(state, sdir / "best.pt")
        predictions_frame(splits["test"], test_out).to_csv(sdir / "predictions.csv", index=False)
        tmp = mfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(metrics, indent=2))
        tmp.replace(mfile)          # written last: a seed counts as done only when complete
        rows.append(metrics)

    summary = {
        "dataset": ds.name, "method": spec.method, "fusion": spec.fusion, "preset": spec.preset,
        "encoder": cfg.encoder, "run": spec.run_name(), "folder": str(folder),
        "seeds": [r["seed"] for r in rows], "test": summarize(rows, METRICS),
        "dev": summarize([r["dev"] for r in rows], METRICS),
        "per_seed": [{k: r[k] for k in ("seed", *METRICS, "best_epoch", "train_seconds")}
                     for r in rows],
        "feature_seconds": round(feature_seconds, 2),
        "train_seconds_total": round(sum(r["train_seconds"] for r in rows), 2),
        "n_train": len(splits["train"]), "n_test": len(splits["test"]),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "summary.md").write_text(summary_markdown(summary))
    log(f"{ds.name} {spec.run_name()}: {format_summary(summary['test'])}")
    return summary


def summary_markdown(summary: dict) -> str:
    head = "| seed | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    rows = "".join(f"| {r['seed']} | " + " | ".join(f"{r[k]:.2f}" for k in METRICS) + " |\n"
                   for r in summary["per_seed"])
    mean = ("| mean ± std | " + " | ".join(
        f"{summary['test'][k]['mean']:.2f} ± {summary['test'][k]['std']:.2f}" for k in METRICS)
        + " |\n")
    return f"# {summary['dataset']} — {summary['run']}\n\n{head}{rows}{mean}"
