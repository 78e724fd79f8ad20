"""Train + evaluate XMEI-Qwen over seeds into a run folder (what ``python -m mir_core xmei``
and notebook 07 call).

    outputs/xmei/<dataset>/<name>/
        config.json                 the config, data sizes, unknown-emotion counts, inputs
        seed_<s>/metrics.json       intent six metrics, emotion metrics, unparsed share,
                                    throughput, memory, explanation metrics (if references)
        seed_<s>/predictions.csv    raw answer, parsed emotion / intent, parsed flags
        summary.json, summary.md    mean ± std over the seeds

Resume: a seed whose ``metrics.json`` carries the run's fingerprint (config + data + features)
is read back, not retrained; a folder holding another configuration is refused (choose
another ``name``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..machine import cpu_facts
from ..metrics import METRICS, summarize
from ..models.xmei_qwen import XMEIConfig, XMEIQwen
from ..training.runs import RunLock, _write_json
from . import sft
from .data import XData
from .explain import explanation_metrics
from .text import reason_of

EMOTION_METRICS = ("ACC", "WF1")


class XMEIRunError(ValueError):
    """A run folder that holds another configuration, or inputs that do not fit."""


@dataclass
class SeedResult:
    seed: int
    metrics: dict
    predictions: pd.DataFrame
    reused: bool = False
    model: XMEIQwen | None = None          # kept for inspection when trained now
    tokenizer: object = None
    test_items: list = field(default_factory=list)


@dataclass
class XMEIRun:
    folder: Path
    config: dict
    seeds: list[SeedResult]
    summary: dict


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_fp(d: XData) -> dict:
    return {"name": d.name, "split": d.split, "n": len(d),
            "keys": _digest([s.key for s in d.samples]),
            "content": _digest([(s.text, s.intent, s.emotion, s.captions, s.explanation)
                                for s in d.samples])}


def _feat_fp(features: dict | None) -> dict | None:
    if not features:
        return None
    return {m: {"shape": list(np.shape(f)), "sum": round(float(np.asarray(f, np.float64).sum()), 4)}
            for m, (f, _) in features.items()}


def run_dir(dataset: str, name: str, root: str | Path | None = None) -> Path:
    base = Path(root) if root is not None else paths.output_dir() / "xmei"
    return base / dataset / name


def run_xmei(train_data: XData, test_data: XData, cfg: XMEIConfig, *, seeds=(0,),
             name: str = "default", out_root: str | Path | None = None,
             train_features: dict | None = None, test_features: dict | None = None,
             unknown_emotion: str = "drop", device: str | None = None,
             progress: bool = True, keep_model: bool = False,
             log: Callable[[str], None] = print, lm_loader=None,
             checkpoint_every: int = 50) -> XMEIRun:
    """Train a fresh LoRA + LQ-Former per seed on ``train_data``, answer ``test_data``.

    ``checkpoint_every``: optimizer steps between training checkpoints
    (``seed_<s>/train_checkpoint.pt``, also written after the last step, and the answers
    batch by batch in ``seed_<s>/answers_partial.jsonl``; both removed when the seed is done;
    0: none). A seed killed mid-training resumes from its last checkpoint to the same
    parameters as an uninterrupted run, and one killed mid-generation at its first missing
    batch without training again, so a long SFT (a real-size epoch on a CPU, then 1,884
    answers) can span sessions."""
    if unknown_emotion not in ("drop", "mark"):
        raise XMEIRunError(f"unknown_emotion must be 'drop' or 'mark', got {unknown_emotion!r}")
    if set(cfg.modalities) - set(train_features or {}) or set(cfg.modalities) - set(test_features or {}):
        raise XMEIRunError(f"modalities {list(cfg.modalities)} need train and test features "
                           f"(given: {sorted(train_features or {})}, {sorted(test_features or {})})")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    log(train_data.unknown_note())
    log(test_data.unknown_note())
    if unknown_emotion == "drop":
        keep = [i for i, s in enumerate(train_data.samples) if s.emotion is not None]
        fit = train_data.without_unknown_emotion()
        if train_features:
            train_features = {m: (f[keep], k[keep]) for m, (f, k) in train_features.items()}
        log(f"training on {len(fit)} of {len(train_data)} train samples (unknown emotions "
            "dropped from the training targets)")
    else:
        fit = train_data.with_unknown_marked()
    config = {"xmei": dataclasses.asdict(cfg), "train": _data_fp(train_data),
              "test": _data_fp(test_data), "n_train_fit": len(fit),
              "unknown_emotion": unknown_emotion,
              "unknown_emotions": {"train": train_data.unknown_emotions,
                                   "test": test_data.unknown_emotions},
              "features": {"train": _feat_fp(train_features), "test": _feat_fp(test_features)},
              "inputs": "text + captions + LQ-Former features" if cfg.modalities
              else "text + captions only (no modality features)"}
    fp = _digest(config)
    config["fingerprint"] = fp
    folder = run_dir(test_data.name, name, out_root)
    cfile = folder / "config.json"
    if cfile.exists():
        old = json.loads(cfile.read_text())
        if old.get("fingerprint") != fp:
            raise XMEIRunError(f"{folder} holds another configuration (fingerprint "
                               f"{old.get('fingerprint')} != {fp}); choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    with RunLock(folder):           # one writer per run folder, as the classification runs
        _write_json(cfile, config)
        results = _seeds(folder, fp, seeds, cfg, fit, train_features, test_data, test_features,
                         device, lm_loader, keep_model, progress, log, checkpoint_every)
        summary = summarize_seeds([r.metrics for r in results])
        summary["config_fingerprint"] = fp
        summary["inputs"] = config["inputs"]
        _write_json(folder / "summary.json", summary)
        (folder / "summary.md").write_text(summary_markdown(summary, test_data))
    return XMEIRun(folder, config, results, summary)


def _seeds(folder, fp, seeds, cfg, fit, train_features, test_data, test_features, device,
           lm_loader, keep_model, progress, log, checkpoint_every=0) -> list[SeedResult]:
    """Train and evaluate each seed, reusing finished seeds whose fingerprint matches;
    ``metrics.json`` is written last (atomically): a killed seed leaves none and reruns from
    its training checkpoint, if any, and its answers so far (``answers_partial.jsonl``)."""
    results: list[SeedResult] = []
    tok = lm = None
    tr_items = te_items = None      # the prompts do not depend on the seed: encoded once
    for seed in seeds:
        sdir = folder / f"seed_{seed}"
        mfile = sdir / "metrics.json"
        if mfile.exists():
            m = json.loads(mfile.read_text())
            if m.get("fingerprint") == fp:
                log(f"seed {seed}: reused {mfile}")
                results.append(SeedResult(seed, m, pd.read_csv(sdir / "predictions.csv",
                                                               keep_default_na=False),
                                          reused=True))
                continue
        torch.manual_seed(seed)
        np.random.seed(seed)
        loader = lm_loader or (lambda: sft.load_llm(cfg.llm, device, log=log))
        tok, lm = loader()
        dims = {m: int(np.shape(train_features[m][0])[-1]) for m in cfg.modalities}
        model = XMEIQwen(cfg, lm, dims).to(device)
        if tr_items is None:
            tr_items = sft.encode_all(tok, fit, cfg, with_answer=True, features=train_features)
            te_items = sft.encode_all(tok, test_data, cfg, with_answer=False,
                                      features=test_features)
        precision = sft.resolve_precision(model, tr_items, cfg, tok.pad_token_id, device, log=log)
        ckpt = sdir / "train_checkpoint.pt"
        stats = sft.train(model, tr_items, cfg, pad_id=tok.pad_token_id, seed=seed,
                          device=device, precision=precision, progress=progress, log=log,
                          checkpoint=ckpt, checkpoint_every=checkpoint_every,
                          checkpoint_key=f"{fp}:seed{seed}:{precision}")
        answers, gen_s = sft.generate(model, tok, te_items, cfg, device=device,
                                      precision=precision, progress=progress,
                                      partial=sdir / "answers_partial.jsonl"
                                      if checkpoint_every else None,
                                      partial_key=f"{fp}:seed{seed}:{precision}", log=log)
        frame = sft.predictions_frame(test_data, answers)
        metrics = sft.label_metrics(frame, test_data)
        refs = [s.explanation for s in test_data.samples]
        if all(refs):
            metrics["explanation"] = explanation_metrics([reason_of(a) for a in answers], refs)
        else:
            metrics["explanation"] = None
        metrics.update({
            "seed": seed, "fingerprint": fp, "precision": precision, "device": device,
            "cpu": cpu_facts().ident, "torch_threads": torch.get_num_threads(),
            "train": {k: v for k, v in dataclasses.asdict(stats).items() if k != "losses"},
            "loss_first": stats.losses[0] if stats.losses else None,
            "loss_last": float(np.mean(stats.losses[-max(1, len(stats.losses) // 10):]))
            if stats.losses else None,
            "generate_seconds": round(gen_s, 2),
            "generate_samples_per_s": round(len(answers) / max(gen_s, 1e-9), 3),
            "peak_rss_mb": round(sft.peak_rss_mb(), 1),
            "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if device.startswith("cuda") else None,
        })
        sdir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(sdir / "predictions.csv", index=False)
        (sdir / "losses.json").write_text(json.dumps(stats.losses))
        _write_json(mfile, metrics)
        ckpt.unlink(missing_ok=True)
        (sdir / "answers_partial.jsonl").unlink(missing_ok=True)
        log(f"seed {seed}: intent ACC {metrics['intent']['ACC']:.2f} F1 "
            f"{metrics['intent']['F1']:.2f}; unparsed {100 * metrics['unparsed_share']:.1f} %; "
            f"{stats.tokens_per_s:.0f} train tokens/s")
        results.append(SeedResult(seed, metrics, frame, model=model if keep_model else None,
                                  tokenizer=tok if keep_model else None,
                                  test_items=te_items if keep_model else []))
        if not keep_model:
            del model, lm
    return results


def summarize_seeds(rows: list[dict]) -> dict:
    out = {"seeds": [r["seed"] for r in rows],
           "intent": summarize([r["intent"] for r in rows], METRICS)}
    emo = [r["emotion"] for r in rows if r.get("emotion")]
    out["emotion"] = summarize(emo, EMOTION_METRICS) if emo else None
    out["unparsed_share"] = summarize([{"u": 100 * r["unparsed_share"]} for r in rows], ("u",))["u"]
    out["train_tokens_per_s"] = summarize([{"t": r["train"]["tokens_per_s"]} for r in rows],
                                          ("t",))["t"]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    out["n_test"] = rows[0]["n"]
    out["n_emotion_scored"] = rows[0]["n_emotion_scored"]
    ex = [r["explanation"] for r in rows if r.get("explanation")]
    if ex:
        keys = [k for k in ("BLEU-4", "ROUGE-L", "METEOR", "BERTScore", "CIDEr")
                if all(e.get(k) is not None for e in ex)]
        out["explanation"] = summarize(ex, keys)
        out["explanation_unavailable"] = ex[0].get("unavailable", {})
        out["meteor_impl"] = ex[0].get("METEOR_impl", "")
    return out


def summary_markdown(summary: dict, test_data: XData) -> str:
    def ms(d):
        return f"{d['mean']:.2f} ± {d['std']:.2f}"
    lines = [f"# XMEI-Qwen on {test_data.name}/{test_data.split} (seeds {summary['seeds']})", "",
             f"Inputs: {summary['inputs']}. Test samples: {summary['n_test']} (emotion scored on "
             f"{summary['n_emotion_scored']}; unknown emotions excluded).", "",
             "| task | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|",
             "| intent (dialogue act) | " + " | ".join(ms(summary["intent"][k]) for k in METRICS)
             + " |", ""]
    if summary.get("emotion"):
        lines += [f"Emotion ACC {ms(summary['emotion']['ACC'])}, weighted F1 "
                  f"{ms(summary['emotion']['WF1'])}.", ""]
    lines += [f"Unparsable answers: {ms(summary['unparsed_share'])} %. Train throughput "
              f"{ms(summary['train_tokens_per_s'])} tokens/s; peak RSS "
              f"{summary['peak_rss_mb']:.0f} MB.", ""]
    if summary.get("explanation"):
        lines.append("Explanations: " + ", ".join(f"{k} {ms(v)}" for k, v in
                                                 summary["explanation"].items())
                     + (f" (METEOR: {summary['meteor_impl']})" if summary.get("meteor_impl")
                        else ""))
        for k, why in summary.get("explanation_unavailable", {}).items():
            lines.append(f"- {k} unavailable: {why}")
    return "\n".join(lines) + "\n"
