"""Case studies of a trained LGSRR run (notebook 06): which run to read, its per-sample
case table, Table 7 of the LLM ranks next to the same counts from the learned importance
weights, and where the two agree, overall and per intent class.

    >>> run = load_run(latest_run("MIntRec2.0"))        # newest full LGSRR run under outputs/
    >>> cases = case_table(run)                         # train + test, one row per sample
    >>> stats = rank_statistics(llm_orders, learned_train, learned_test, train_label_ids,
    ...                         labels)                 # DataFrames: Table 7 x 3, agreement
    >>> importance_by_class(cases[cases.split == "test"], labels)   # mean alpha per class

What the release gives: LLM ranks (GPT-3.5) for the **train** split only. So the learned
aspect order (alpha_A, alpha_E, alpha_I sorted, :func:`mir_core.importance.learned_orders`)
is compared with the LLM order on train; on test only the learned counts exist. The run's
folder holds test predictions (``predictions.csv``) and train scores (``train_scores.csv``,
no predictions); :func:`case_table` recomputes the train predictions from ``best.pt`` (a
forward pass of the trained head over the cached features) so that train cases can be
filtered by correct / incorrect too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import paths
from .annotation.agreement import agreement, kendall_tau, table7, trivial_orders
from .data import ASPECT_SHORT, MIRSplit, get_spec, load_split
from .importance import SOURCES, learned_orders

# Fusion forms whose per-sample scores carry a learned alpha over (T, A, E, I).
ALPHA_FUSIONS = ("official", "eq12")
ALPHA_COLUMNS = tuple(f"alpha_{s}" for s in SOURCES)


class CaseError(RuntimeError):
    """A run folder cannot serve the case studies (the message says why and what to do)."""


# --------------------------------------------------------------------------- run folders
@dataclass
class RunInfo:
    """One run folder (``<out>/runs/<dataset>/<run name>/``) as the case studies read it."""

    folder: Path
    summary: dict
    config: dict

    @property
    def dataset(self) -> str:
        return self.summary["dataset"]

    @property
    def method(self) -> str:
        return self.summary["method"]

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.summary["seeds"]]

    @property
    def options(self) -> dict:
        return dict(self.config.get("options") or self.summary.get("options") or {})

    @property
    def spec(self) -> dict:
        return dict(self.config.get("spec") or {})

    @property
    def max_train(self) -> int | None:
        return self.spec.get("max_train")

    @property
    def max_eval(self) -> int | None:
        return self.spec.get("max_eval")

    @property
    def name(self) -> str:
        return self.summary.get("run", self.folder.name)

    def train_config(self):
        """The run's :class:`~mir_core.training.TrainConfig` (fields unknown to this
        version are dropped, missing ones take their defaults)."""
        from .training.config import TrainConfig
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        saved = dict(self.config["train_config"])
        if "precision" not in saved and saved.get("mixed_precision") == "bf16":
            saved["precision"] = "bf16"        # runs from before the setting was renamed
        return TrainConfig(**{k: v for k, v in saved.items() if k in names})

    def seed(self, seed: int | None = None) -> int:
        if seed is None:
            return self.seeds[0]
        if int(seed) not in self.seeds:
            raise CaseError(f"{self.folder}: no seed {seed}; it has seeds {self.seeds}")
        return int(seed)

    def seed_dir(self, seed: int | None = None) -> Path:
        return self.folder / f"seed_{self.seed(seed)}"

    def predictions(self, seed: int | None = None) -> pd.DataFrame:
        return pd.read_csv(self.seed_dir(seed) / "predictions.csv", keep_default_na=False,
                           na_values=[""])

    def train_scores(self, seed: int | None = None) -> pd.DataFrame | None:
        f = self.seed_dir(seed) / "train_scores.csv"
        return pd.read_csv(f) if f.exists() else None

    def splits(self, root: str | Path | None = None) -> dict[str, MIRSplit]:
        """The train / dev / test samples the run used (the same subsets, same order)."""
        out = {s: load_split(self.dataset, s, root) for s in ("train", "dev", "test")}
        out["train"] = out["train"].subset(self.max_train, seed=0)
        out["dev"] = out["dev"].subset(self.max_eval, seed=0)
        out["test"] = out["test"].subset(self.max_eval, seed=0)
        return out

    @property
    def has_alpha(self) -> bool:
        opts = self.options
        return (self.method == "lgsrr" and opts.get("fusion", "official") in ALPHA_FUSIONS
                and opts.get("use_importance", True))


def load_run(run_dir: str | Path) -> RunInfo:
    """Read ``summary.json`` and ``config.json`` of a finished run folder."""
    folder = Path(run_dir)
    sfile, cfile = folder / "summary.json", folder / "config.json"
    if not sfile.exists():
        raise CaseError(f"{folder} is not a finished run folder (no summary.json); train one "
                        "with notebook 04 or `python -m mir_core train`, or pass run_dir=None "
                        "to use the newest one")
    summary = json.loads(sfile.read_text())
    config = json.loads(cfile.read_text()) if cfile.exists() else {}
    if "train_config" not in config:
        raise CaseError(f"{cfile}: missing or without 'train_config'; the run folder is "
                        "incomplete (retrain it)")
    return RunInfo(folder, summary, config)


def _is_full_lgsrr(info: RunInfo) -> bool:
    """The full LGSRR (no ablation): learned alpha over all four sources trained with
    L_rank, complementarity and inconsistency on, and a usable first seed."""
    opts = info.options
    if (not info.has_alpha or opts.get("aspects", "AEI") != "AEI" or not info.seeds
            or opts.get("fusion", "official") not in ("official", "eq12")
            or not opts.get("use_importance", True)
            or not opts.get("use_complementarity", True)
            or not opts.get("use_inconsistency", True)
            or float(info.config["train_config"].get("rank_weight", 1.0)) <= 0):
        return False
    sdir = info.seed_dir()
    if not (sdir / "best.pt").exists() or not (sdir / "predictions.csv").exists():
        return False
    with open(sdir / "predictions.csv") as fh:
        header = fh.readline().strip().split(",")
    return all(c in header for c in ALPHA_COLUMNS)


def find_runs(dataset: str, search: Sequence[str | Path] | str | Path | None = None,
              method: str = "lgsrr") -> list[Path]:
    """Run folders of ``dataset`` usable by the case studies, newest first.

    ``search``: folders to look under (default: the outputs folder, ``paths.output_dir()``),
    at any depth (``<search>/**/runs/<dataset>/<run>/summary.json``: notebook 04 writes to
    ``outputs/04_training/runs/...``). For ``method="lgsrr"`` only the full model counts:
    fusion official or eq12, alpha over all four sources, importance, complementarity and
    inconsistency on, ``rank_weight`` > 0; the ablation variants of notebook 05 are
    skipped. Newest: by the time ``summary.json`` was written."""
    name = get_spec(dataset).name
    if search is None:
        roots = [paths.output_dir()]
    elif isinstance(search, (str, Path)):
        roots = [Path(search)]
    else:
        roots = [Path(s) for s in search]
    found: dict[Path, float] = {}
    for root in roots:
        if not root.exists():
            continue
        for sfile in root.glob(f"**/runs/{name}/*/summary.json"):
            try:
                info = load_run(sfile.parent)
            except (CaseError, json.JSONDecodeError, OSError):
                continue
            if info.method != method or info.dataset != name:
                continue
            if method == "lgsrr" and not _is_full_lgsrr(info):
                continue
            found[sfile.parent.resolve()] = sfile.stat().st_mtime
    return sorted(found, key=lambda p: -found[p])


def latest_run(dataset: str, search: Sequence[str | Path] | str | Path | None = None,
               method: str = "lgsrr") -> Path | None:
    """The newest usable run folder of ``dataset`` (:func:`find_runs`), or None."""
    runs = find_runs(dataset, search, method)
    return runs[0] if runs else None


# --------------------------------------------------------------------------- the trained model
def load_model(run: RunInfo, seed: int | None = None, feat_dim: int | None = None):
    """The trained model of one seed, rebuilt through the method registry and loaded from
    its ``best.pt`` (eval mode). Returns ``(model, train_config, method, options)``.

    The source encoder is the one the run's regime trains (:mod:`mir_core.models.encoders`):
    frozen: ``PooledFeatures`` over the encoder's hidden size (``feat_dim``; None: read off
    the trained projection, else the encoder's config); partial / full: the pretrained
    encoder, loaded here (its weights are then replaced by the trained ones)."""
    import torch

    from .models import get_method
    from .models.encoders import FullEncoder, PooledFeatures, TopLayers
    from .models.registry import BuildContext

    cfg = run.train_config()
    method = get_method(run.method)
    known = {f.name for f in dataclasses.fields(method.options)}
    options = method.make_options({k: v for k, v in run.options.items() if k in known})
    state = torch.load(run.seed_dir(seed) / "best.pt", map_location="cpu", weights_only=True)
    if cfg.regime == "frozen":
        if feat_dim is None and "encoder.proj.0.weight" in state:
            feat_dim = int(state["encoder.proj.0.weight"].shape[1])
        if feat_dim is None:
            from transformers import AutoConfig

            from .modelpack import _is_offline, resolve_text_encoder
            feat_dim = int(AutoConfig.from_pretrained(
                str(resolve_text_encoder(cfg.encoder)),
                local_files_only=_is_offline()).hidden_size)
        encoder = PooledFeatures(feat_dim, cfg.layers, cfg.proj_dim)
    else:
        from .modelpack import load_text_encoder
        base = load_text_encoder(cfg.encoder)[1]
        encoder = (TopLayers.from_encoder(base, cfg.finetune_layers, cfg.pooling)
                   if cfg.regime == "partial" else FullEncoder(base, cfg.pooling))
    spec = get_spec(run.dataset)
    # state: fixed inputs kept in it (A-MESS's description embeddings) need not be rebuilt
    model = method.build(BuildContext(num_labels=spec.num_labels, train_config=cfg,
                                      encoder=encoder, options=options,
                                      labels=tuple(spec.labels), dataset=spec.name,
                                      state=state))
    model.load_state_dict(state)
    return model.eval(), cfg, method, options


def split_inputs(run: RunInfo, split: MIRSplit, store=None):
    """The model inputs of ``split`` in the run's regime (frozen / partial: from the feature
    store, encoded once; full: tokenised), as training built them."""
    from .models import get_method
    from .training.inputs import build_inputs

    cfg = run.train_config()
    method = get_method(run.method)
    # build_inputs reads the feature size off the "train" entry: the split goes in under
    # that name (the store still files it under its own split name)
    data = build_inputs({"train": split}, cfg, method.sources, False, method.name,
                        store=store)
    return data.splits["train"], data.trim, data.precision


def predict_split(run: RunInfo, split: MIRSplit, seed: int | None = None, store=None,
                  model=None) -> dict[str, np.ndarray]:
    """Logits, predictions and scores of the trained model on ``split``, in split order and
    in batches of the run's ``eval_batch_size`` (the official fusion's gamma is a batch
    mean, so this reproduces what training wrote for the same split)."""
    import torch

    from .training.loop import predict, scoped_determinism

    if model is None:
        model = load_model(run, seed)[0]
    cfg = run.train_config()
    with scoped_determinism(cfg.num_threads), torch.no_grad():
        inputs, trim, precision = split_inputs(run, split, store)
        return predict(model, inputs, cfg.eval_batch_size, trim, precision=precision)


# --------------------------------------------------------------------------- the case table
def order_text(order, names: Sequence[str] = ASPECT_SHORT) -> str:
    """(2, 0, 1) -> 'I > A > E'; None -> ''."""
    if order is None or (isinstance(order, float) and np.isnan(order)):
        return ""
    return " > ".join(names[int(i)] for i in order)


def _frame(split: MIRSplit, scores: pd.DataFrame, pred_id, labels) -> pd.DataFrame:
    df = pd.DataFrame({"key": split.keys, "split": split.split, "text": split.texts,
                       "label": split.frame["label"].tolist(), "label_id": split.label_ids})
    for s in ASPECT_SHORT:
        df[f"desc_{s}"] = (split.descriptions(s) if split.has_descriptions
                           else [""] * len(split))
    if pred_id is not None:
        df["pred_id"] = np.asarray(pred_id, dtype=np.int64)
        df["pred"] = [labels[int(i)] for i in df["pred_id"]]
        df["correct"] = df["pred_id"] == df["label_id"]
    else:
        df["pred_id"] = -1
        df["pred"] = ""
        df["correct"] = pd.array([pd.NA] * len(df), dtype="boolean")
    for c in ALPHA_COLUMNS:
        df[c] = scores[c].to_numpy(dtype=float)
    learned = learned_orders(scores)
    df["learned_order"] = [tuple(int(x) for x in r) for r in learned]
    if split.has_ranks:
        llm = split.rank_order
        df["llm_order"] = [tuple(int(x) for x in r) for r in llm]
        df["top1_agrees"] = pd.array(learned[:, 0] == llm[:, 0], dtype="boolean")
        df["order_agrees"] = pd.array((learned == llm).all(1), dtype="boolean")
        df["tau"] = [kendall_tau(a, b) for a, b in zip(learned, llm)]
    else:
        df["llm_order"] = None
        df["top1_agrees"] = pd.array([pd.NA] * len(df), dtype="boolean")
        df["order_agrees"] = pd.array([pd.NA] * len(df), dtype="boolean")
        df["tau"] = np.nan
    df["learned"] = [order_text(o) for o in df["learned_order"]]
    df["llm"] = [order_text(o) for o in df["llm_order"]]
    return df


def case_table(run: RunInfo, seed: int | None = None, root: str | Path | None = None,
               splits: Sequence[str] = ("train", "test"), predict_train: bool = True,
               store=None, max_samples: int | None = None) -> pd.DataFrame:
    """One row per sample of the run's train and/or test split: key, split, text, the three
    descriptions, gold and predicted label, ``correct``, alpha over (T, A, E, I), the learned
    aspect order, the LLM order (train only), whether they agree (``top1_agrees``,
    ``order_agrees``, Kendall ``tau``), and ``learned`` / ``llm`` as text ('I > A > E').

    Test rows come from ``predictions.csv``. Train rows: alpha from ``train_scores.csv``; the
    predictions are recomputed from ``best.pt`` (:func:`predict_split`) when
    ``predict_train`` (else ``pred`` is empty and ``correct`` NA); the largest difference
    between the recomputed train alpha and ``train_scores.csv`` is kept in
    ``table.attrs["train_alpha_max_abs_diff"]`` (float noise only). ``max_samples`` keeps a
    reproducible, label-stratified sample of that many rows per split (all when None)."""
    if not run.has_alpha:
        raise CaseError(f"{run.folder}: method {run.method!r} with options {run.options} has "
                        "no learned importance alpha; the case studies need an LGSRR run "
                        "(fusion official or eq12)")
    spec = get_spec(run.dataset)
    labels = spec.labels
    all_splits = run.splits(root)
    frames = []
    check: dict[str, float] = {}
    for name in splits:
        split = all_splits[name]
        if name == "test":
            pred = run.predictions(seed)
            if pred["key"].astype(str).tolist() != split.keys:
                raise CaseError(f"{run.seed_dir(seed)}/predictions.csv: keys differ from the "
                                f"test split the run used (max_eval={run.max_eval})")
            frames.append(_frame(split, pred, pred["pred_id"].to_numpy(), labels))
        elif name == "train":
            tr = run.train_scores(seed)
            if tr is None:
                raise CaseError(f"{run.seed_dir(seed)} has no train_scores.csv")
            if tr["key"].astype(str).tolist() != split.keys:
                raise CaseError(f"{run.seed_dir(seed)}/train_scores.csv: keys differ from the "
                                f"train split the run used (max_train={run.max_train})")
            pred_id = None
            if predict_train:
                res = predict_split(run, split, seed, store)
                pred_id = res["pred"]
                if "alpha" in res:   # the recomputation reproduces what training wrote
                    check["train_alpha_max_abs_diff"] = float(np.abs(
                        res["alpha"] - tr[list(ALPHA_COLUMNS)].to_numpy()).max())
            frames.append(_frame(split, tr, pred_id, labels))
        else:
            raise ValueError(f"splits must be 'train' and/or 'test', got {name!r}")
    out = []
    for f in frames:
        if max_samples is not None and max_samples < len(f):
            keep = _stratified(f["label_id"].to_numpy(), max_samples)
            f = f.iloc[keep]
        out.append(f)
    table = pd.concat(out, ignore_index=True)
    table.attrs.update(check)
    return table


def _stratified(label_ids: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted row positions of a round-robin-over-labels sample of n rows."""
    rng = np.random.default_rng(seed)
    by = {lab: rng.permutation(np.flatnonzero(label_ids == lab)).tolist()
          for lab in np.unique(label_ids)}
    order: list[int] = []
    while len(order) < n:
        for lab in list(by):
            if by[lab] and len(order) < n:
                order.append(by[lab].pop())
    return np.sort(np.asarray(order, dtype=np.int64))


def pick_cases(cases: pd.DataFrame, keys: Sequence[str] = (), n: int = 3) -> pd.DataFrame:
    """The featured cases: the rows of ``keys`` found in ``cases`` (train rows first: they
    carry the LLM rank), topped up to ``n`` with contrasting train cases when some are
    missing: learned order = LLM order and correct, top-1 disagreement, a wrong prediction."""
    rows: list[int] = []
    for k in keys:
        hit = cases.index[cases["key"].astype(str) == str(k)].tolist()
        hit.sort(key=lambda i: cases.at[i, "split"] != "train")
        if hit and hit[0] not in rows:
            rows.append(hit[0])
    pool = cases[cases["split"] == "train"] if (cases["split"] == "train").any() else cases
    wanted = [pool["order_agrees"].fillna(False) & pool["correct"].fillna(False),
              ~pool["top1_agrees"].fillna(True),
              ~pool["correct"].fillna(True),
              pd.Series(True, index=pool.index)]
    for mask in wanted:
        if len(rows) >= n:
            break
        extra = [i for i in pool.index[mask.to_numpy(dtype=bool)] if i not in rows]
        if extra:
            rows.append(extra[0])
    while len(rows) < min(n, len(cases)):
        rows.append(next(i for i in cases.index if i not in rows))
    return cases.loc[rows]


# --------------------------------------------------------------------------- rank statistics
def _orders(x) -> np.ndarray:
    if isinstance(x, pd.DataFrame):
        return learned_orders(x)
    return np.asarray(x, dtype=np.int64)


@dataclass
class RankStats:
    """Table 7 of the LLM ranks next to the learned importance, and their agreement.

    ``llm``, ``learned_train``, ``learned_test``: Table 7 form (rows A, E, I as printed in
    the paper; columns Rank@1/2/3; counts). ``overall``: one row per comparison with the LLM
    order on train (the learned order; the trivial ranker I > A > E for reference): n,
    top1, exact, mean_tau (mean over samples of Kendall's tau between the two orders).
    ``per_class``: the same per gold intent class (dataset order), with the most frequent
    first aspect of each ranker and ``first_choice_tv``, the total-variation distance
    between the two first-choice distributions of the class."""

    llm: pd.DataFrame
    learned_train: pd.DataFrame
    learned_test: pd.DataFrame | None
    overall: pd.DataFrame
    per_class: pd.DataFrame | None

    def table7(self) -> pd.DataFrame:
        """The three Table 7 counts side by side (columns '<source> Rank@k')."""
        parts = {"LLM ranks (train)": self.llm, "learned α (train)": self.learned_train}
        if self.learned_test is not None:
            parts["learned α (test)"] = self.learned_test
        return pd.concat(parts, axis=1)

    def most_disagreeing(self, k: int = 5, min_n: int = 1) -> pd.DataFrame:
        """The k classes where the learned order agrees least with the LLM order: lowest
        mean tau first, then lowest top-1, then the largest first-choice distance."""
        if self.per_class is None:
            raise CaseError("no per-class agreement: pass train_labels to rank_statistics")
        pc = self.per_class[self.per_class["n"] >= min_n]
        return pc.sort_values(["mean_tau", "top1", "first_choice_tv"],
                              ascending=[True, True, False]).head(k)

    def as_dict(self) -> dict:
        out = {"llm": self.llm, "learned_train": self.learned_train,
               "overall": self.overall.reset_index()}
        if self.learned_test is not None:
            out["learned_test"] = self.learned_test
        if self.per_class is not None:
            out["per_class"] = self.per_class.reset_index()
        return {k: (v.reset_index().rename(columns={"index": "aspect"})
                    if k in ("llm", "learned_train", "learned_test") else v)
                for k, v in out.items()}


def _first_counts(orders: np.ndarray) -> np.ndarray:
    return np.bincount(orders[:, 0], minlength=3)[:3]


def rank_statistics(llm_orders, learned_train, learned_test=None,
                    train_labels: Sequence[int] | None = None,
                    labels: Sequence[str] | None = None) -> RankStats:
    """Counts of each aspect at Rank@1/2/3 (the paper's Table 7) from the LLM ranks and from
    the learned alpha (train, and test when given), and the agreement of the learned order
    with the LLM order on train, overall and per intent class.

    ``llm_orders``: (N, 3) aspect indices best first (``MIRSplit.rank_order`` of train).
    ``learned_train`` / ``learned_test``: (N, 3) orders, or frames with the alpha_A/E/I
    columns (``train_scores.csv`` / ``predictions.csv``), sorted descending here.
    ``train_labels``: gold label ids of the train rows (for the per-class table);
    ``labels``: the dataset's label names (its order is kept)."""
    llm = _orders(llm_orders)
    tr = _orders(learned_train)
    if llm.shape != tr.shape:
        raise ValueError(f"llm_orders {llm.shape} and learned_train {tr.shape} must be the "
                         "same train rows")
    te = _orders(learned_test) if learned_test is not None else None
    comparisons = {"learned α": tr, "trivial I > A > E": trivial_orders(len(llm))}
    rows = []
    for name, orders in comparisons.items():
        a = agreement(orders, llm)
        rows.append({"ranker": name, "n": a.n, "top1": a.top1, "exact": a.exact,
                     "mean_tau": a.mean_tau})
    overall = pd.DataFrame(rows).set_index("ranker")
    per_class = None
    if train_labels is not None:
        y = np.asarray(train_labels, dtype=np.int64)
        if len(y) != len(llm):
            raise ValueError(f"train_labels has {len(y)} rows, the orders {len(llm)}")
        names = list(labels) if labels is not None else [str(i) for i in range(y.max() + 1)]
        prow = []
        for lab_id, lab in enumerate(names):
            sel = y == lab_id
            if not sel.any():
                continue
            a = agreement(tr[sel], llm[sel])
            f_llm, f_tr = _first_counts(llm[sel]), _first_counts(tr[sel])
            prow.append({"label": lab, "n": int(sel.sum()), "top1": a.top1, "exact": a.exact,
                         "mean_tau": a.mean_tau,
                         "llm_first": ASPECT_SHORT[int(f_llm.argmax())],
                         "learned_first": ASPECT_SHORT[int(f_tr.argmax())],
                         "first_choice_tv": float(0.5 * np.abs(f_llm / sel.sum()
                                                               - f_tr / sel.sum()).sum())})
        per_class = pd.DataFrame(prow).set_index("label")
    return RankStats(table7(llm), table7(tr), table7(te) if te is not None else None,
                     overall, per_class)


def importance_by_class(scores: pd.DataFrame, labels: Sequence[str],
                        label_column: str = "label_id") -> pd.DataFrame:
    """Mean alpha of each source (T, A, E, I) per gold intent class, classes in the
    dataset's order (absent ones dropped), with the number of samples ``n``."""
    y = scores[label_column].to_numpy()
    if label_column != "label_id" or y.dtype.kind not in "iu":
        y = np.array([list(labels).index(v) if not isinstance(v, (int, np.integer)) else v
                      for v in y], dtype=np.int64)
    rows = []
    for lab_id, lab in enumerate(labels):
        sel = y == lab_id
        if sel.any():
            rows.append({"label": lab, **{s: float(scores.loc[sel, f"alpha_{s}"].mean())
                                          for s in SOURCES}, "n": int(sel.sum())})
    return pd.DataFrame(rows).set_index("label")


def per_class_recall(y_true, y_pred, labels: Sequence[str]) -> pd.DataFrame:
    """Recall and support per class (dataset order; NaN recall for absent classes)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    support = np.bincount(y_true, minlength=len(labels))[:len(labels)]
    hits = np.bincount(y_true[y_true == y_pred], minlength=len(labels))[:len(labels)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return pd.DataFrame({"recall": recall, "support": support}, index=list(labels))


# --------------------------------------------------------------------------- saving figures
def save_figures(figures: Mapping[str, object], folder: str | Path) -> dict[str, dict[str, str]]:
    """Write each plotly figure as ``<name>.json`` (plotly JSON, ``plotly.io.read_json``) and
    ``<name>.html`` into ``folder``; the HTML files share one ``plotly.min.js`` in that
    folder (offline, small). Returns {name: {"json": path, "html": path}}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fig in figures.items():
        j, h = folder / f"{name}.json", folder / f"{name}.html"
        fig.write_json(str(j))
        fig.write_html(str(h), include_plotlyjs="directory", full_html=True)
        out[name] = {"json": str(j), "html": str(h)}
    return out

