"""Ablation grids: the LGSRR paper's Tables 1, 2, 5, 6 and 8 and A-MESS's ablation as
multi-seed experiments.

A grid is a list of :class:`Variant` rows (one switch each, :data:`VARIANTS`) crossed with a
dataset, a preset and seeds. :func:`run_grid` trains them in order through
:func:`mir_core.training.runs.run`, so every seed is fingerprinted: a finished seed is
reused only when its fingerprint matches, a stale one is retrained (or refused, ``stale=
"error"``), a killed run restarts where it stopped. Variants that compute the same thing
(Table 2's "w/o SRR" and Table 5's "Or" are both summation fusion) share one run folder.
Every finished seed is appended to ``<out>/ablations/<dataset>/<preset>/results.jsonl``
(never rewritten); the tables are aggregated from the run folders.

Statistics (:func:`compare`): per variant, mean ± std over seeds of the six metrics; the
paired per-seed difference to the table's reference row (:data:`TABLE_REFERENCE`: the full
LGSRR model, A-MESS in A-MESS's ablation — LGSRR where A-MESS has no finished seed, e.g.
without label descriptions, said in the heading (:func:`versus`); same seeds), with the
number of seeds whose difference has the sign of the mean, a paired t-test
(``scipy.stats.ttest_rel``) and the reading "inside the seed spread" when ``|mean diff| <= pooled std`` of the two rows' seed
values. The paper's number and its difference to the paper's full model sit beside each row.

The variants here run on the released text + VideoLLaMA2 descriptions only: no video/audio
features of the benchmarks exist on this machine, so Table 2's "w/o LGSE" (the paper: text,
video and audio features of BERT, Swin and WavLM) is text alone here, and Table 6's
additional aspects (TMS, IS, SD) were never released: its spirit (how many aspects help) is
measured as subsets of A, E, I instead, with no paper number beside them. Table 1's
multimodal baselines and A-MESS (issue #12) take the three descriptions' token states as
their nonverbal streams (:data:`SUBSTITUTION`, named in every such row); they train on the
partial regime only (``cpu-ft``), so a ``cpu`` grid leaves them out by name.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths, reference
from .data import one_line
from .metrics import METRICS
from .training.config import ConfigError
from .training.runs import RunSpec, run

TABLES = ("1", "2", "5", "6", "8", "fusion", "amess")
# The row every other row of a table is paired with (default: the full LGSRR model).
TABLE_REFERENCE = {"amess": "amess"}
# Where a table's paper numbers come from: the first source holding the row's name wins.
PAPER_SOURCES = {
    "1": (("LGSRR Table 1", reference.TABLE1), ("A-MESS Table I", reference.AMESS_TABLE1)),
    "2": (("LGSRR Table 2", reference.TABLE2),),
    "5": (("LGSRR Table 5", reference.TABLE5),),
    "6": (("LGSRR Table 6", reference.TABLE6),),
    "8": (("LGSRR Table 8", reference.TABLE8),),
    "amess": (("A-MESS Sec. IV-E", reference.AMESS_ABLATION),),
}
TITLES = {"1": "Table 1: the methods", "fusion": "Fusion form",
          "amess": "A-MESS ablation (Sec. IV-E)"}
# The stand-in every multimodal baseline runs with here (issue #12): no benchmark video or
# audio features exist on this machine.
SUBSTITUTION = ("nonverbal streams = the three VideoLLaMA2 descriptions' token states, not "
                "video/audio features")


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: a method and the one switch that differs."""

    key: str                       # short id used on the command line, e.g. "no_rank"
    label: str                     # the row's name in the table
    tables: tuple[str, ...]        # which tables show it
    method: str = "lgsrr"
    options: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)   # {table: row name in PAPER_SOURCES[table]}
    note: str = ""

    def spec(self, dataset: str, preset: str, seeds, extra: dict | None = None,
             max_train=None, max_eval=None) -> RunSpec:
        return RunSpec(dataset=dataset, method=self.method, preset=preset, seeds=tuple(seeds),
                       options=dict(self.options), overrides={**(extra or {}), **self.overrides},
                       max_train=max_train, max_eval=max_eval)


FULL = Variant("full", "LGSRR (full, official fusion)",
               tuple(t for t in TABLES if TABLE_REFERENCE.get(t, "full") == "full"),
               paper={"1": "LGSRR", "2": "Full", "5": "LGSRR", "6": "LGSRR (A+E+I)",
                      "8": "Full"})

VARIANTS: tuple[Variant, ...] = (
    FULL,
    # Table 2: the modules
    Variant("text", "w/o LGSE: text only", ("1", "2"), method="text",
            paper={"2": "w/o LGSE"},
            note="no video/audio features exist here: text alone, not BERT+Swin+WavLM"),
    # Table 1: the multimodal baselines and A-MESS (issue #12), on the descriptions
    Variant("mag_bert", "MAG-BERT [descriptions as nonverbal streams]", ("1",),
            method="mag_bert", paper={"1": "MAG-BERT"}, note=SUBSTITUTION),
    Variant("mult", "MulT [descriptions as nonverbal streams]", ("1",), method="mult",
            paper={"1": "MulT"}, note=SUBSTITUTION),
    Variant("amess", "A-MESS [descriptions as nonverbal streams]", ("1", "amess"),
            method="amess", paper={"1": "A-MESS", "amess": "A-MESS"}, note=SUBSTITUTION),
    # A-MESS's ablation: each row one module off, paired with A-MESS
    Variant("amess_no_ame", "A-MESS w/o A-ME", ("amess",), method="amess",
            options={"use_ame": False}, paper={"amess": "w/o A-ME"}),
    Variant("amess_no_ss", "A-MESS w/o SS", ("amess",), method="amess",
            options={"use_ss": False}, paper={"amess": "w/o SS"}, note=SUBSTITUTION),
    Variant("amess_no_both", "A-MESS w/o SS and A-ME", ("amess",), method="amess",
            options={"use_ame": False, "use_ss": False},
            paper={"amess": "w/o SS and A-ME"}),
    Variant("no_rank", "w/o L_rank (lambda = 0)", ("2",), overrides={"rank_weight": 0.0},
            paper={"2": "w/o Lrank"}),
    Variant("no_srr", "w/o SRR: summation fusion", ("2",), options={"fusion": "sum"},
            paper={"2": "w/o SRR"}),
    # Table 8: the three relations
    Variant("no_importance", "w/o relative importance (uniform alpha, no L_rank)", ("8",),
            options={"use_importance": False}, paper={"8": "w/o Relative Importance"}),
    Variant("no_complementarity", "w/o complementarity (beta = 1)", ("8",),
            options={"use_complementarity": False}, paper={"8": "w/o Complementarity"}),
    Variant("no_inconsistency", "w/o inconsistency", ("8",),
            options={"use_inconsistency": False}, paper={"8": "w/o Inconsistency"}),
    # Table 5: classic relations on the four features
    Variant("or", "Or (sum)", ("5",), options={"fusion": "sum"}, paper={"5": "Or"}),
    Variant("and", "And (Hadamard product)", ("5",), options={"fusion": "and"},
            paper={"5": "And"}),
    Variant("not", "Not (pairwise differences + nonlinear layer)", ("5",),
            options={"fusion": "not"}, paper={"5": "Not"}),
    Variant("combination", "Combination (Or, And, Not + nonlinear layer)", ("5",),
            options={"fusion": "combination"}, paper={"5": "Combination"}),
    # Table 6 spirit: number of aspects
    *(Variant(f"aspects_{a}", f"aspects {'+'.join(a)}", ("6",), options={"aspects": a},
              note="subset of the released aspects (the paper's Table 6 adds unreleased ones)")
      for a in ("A", "E", "I", "AE", "AI", "EI")),
    # the fusion form
    Variant("eq12", "fusion eq12 (the paper's equations)", ("fusion",),
            options={"fusion": "eq12"}),
)

BY_KEY = {v.key: v for v in VARIANTS}


def select(tables=None, variants=None) -> list[Variant]:
    """The grid's rows: the chosen tables' (or named) variants with the reference rows they
    are paired with (the full model first), in :data:`VARIANTS` order."""
    tables = [str(t) for t in (tables or [])]
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise ConfigError(f"unknown table(s) {bad}; choose from {list(TABLES)}")
    names = list(variants or [])
    unknown = [n for n in names if n not in BY_KEY]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; choose from {sorted(BY_KEY)}")
    if not tables and not names:
        raise ConfigError("name at least one table (--tables) or variant (--variants)")
    picked = {v.key for v in VARIANTS if v.key in names or any(t in v.tables for t in tables)}
    # each table's reference row comes along: the full model, or A-MESS in its ablation
    refs = {reference_of(t) for t in tables}
    for key in names:
        first = next((t for t in BY_KEY[key].tables if reference_of(t) != key), None)
        refs.add(reference_of(first) if first else key)
    keep = picked | refs
    return [v for v in VARIANTS if v.key in keep]


def grid_dir(dataset: str, preset: str, out_dir=None) -> Path:
    return paths.output_dir(out_dir) / "ablations" / dataset / preset


def run_grid(dataset: str, variants: list[Variant], seeds, preset: str = "cpu",
             overrides: dict | None = None, data_root=None, out_dir=None, store=None,
             stale: str = "retrain", max_train=None, max_eval=None, progress: bool = True,
             log=print, train: bool = True) -> dict:
    """Train every (variant, seed) in order, reusing matching seeds (seeds another process
    of the same grid is training are left to it and collected at the end); returns
    ``{"summaries": {variant key: run summary}, "wall_seconds": ..., "trained": n}``.
    ``train=False``: train nothing, collect the finished seeds whose fingerprint matches
    (the tables then pair each row with the full model over the seeds both have)."""
    seeds = [int(s) for s in seeds]
    specs = {v.key: v.spec(dataset, preset, seeds, overrides, max_train, max_eval)
             for v in variants}
    not_run = {}                        # rows whose method cannot run in this preset's regime
    for key, s in specs.items():
        why = regime_refusal(s)
        if why:
            not_run[key] = why
    if not_run:
        log("left out (regime): " + "; ".join(f"{k}: {w}" for k, w in not_run.items()))
        variants = [v for v in variants if v.key not in not_run]
        specs = {k: s for k, s in specs.items() if k not in not_run}
    unusable = {}                       # train=False: rows whose inputs cannot be read now
    for key, s in specs.items():        # every bad setting is named before any training
        try:
            s.validate()
        except ValueError as e:         # ConfigError, DataError (e.g. label descriptions)
            if train:
                raise
            # no seed of it can match a fingerprint now: a table row left out, with why
            unusable[key] = one_line(e, limit=600)
    if unusable:
        log("left out (inputs): " + "; ".join(f"{k}: {w}" for k, w in unusable.items()))
        variants = [v for v in variants if v.key not in unusable]
        not_run = {**not_run, **unusable}
    folder = grid_dir(dataset, preset, out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "results.jsonl"
    bar = None
    if progress and train:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(variants) * len(seeds), desc=f"ablations {dataset} {preset}",
                   unit="seed")        # finished seeds found on the way leave the total
    t0 = time.perf_counter()
    trained = 0
    run_of: dict[str, str] = {}         # variant key -> run name (rows may share a run)
    by_run: dict[str, dict] = {}
    waits = []                          # (spec, run name, on_seed) of runs with held seeds
    try:
        for v in variants:
            spec = specs[v.key]
            name = spec.run_name()
            if name in by_run:          # the same computation under another row's name
                run_of[v.key] = name
                if bar is not None:
                    bar.total -= len(seeds)
                    bar.refresh()
                continue

            def on_seed(metrics, reused, v=v, name=name):
                nonlocal trained
                trained += 0 if reused else 1
                if not train:
                    return
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "dataset": dataset,
                        "preset": preset, "variant": v.key, "run": name,
                        "seed": metrics["seed"], "reused": reused,
                        **{k: metrics[k] for k in METRICS},
                        "train_seconds": metrics.get("train_seconds")}) + "\n")
                if bar is not None:
                    bar.set_postfix_str(f"{v.key} seed {metrics['seed']}: "
                                        f"F1 {metrics['F1']:.2f}")
                    if reused:          # the bar counts seeds to train: an honest ETA
                        bar.total -= 1
                        bar.refresh()
                    else:
                        bar.update(1)

            try:
                summ = run(spec, data_root=data_root, out_dir=out_dir, store=store,
                           stale=stale, log=log, on_seed=on_seed, train=train,
                           wait_for_held=False)
            except ValueError as e:     # e.g. no label descriptions: no fingerprint to match
                if train:
                    raise
                unusable[v.key] = one_line(e, limit=600)
                log(f"left out (inputs): {v.key}: {unusable[v.key]}")
                continue
            run_of[v.key], by_run[name] = name, summ
            if summ["held"]:            # another process trains these seeds: come back later
                waits.append((spec, name, on_seed))
        # the seeds other processes held, once this process has nothing else to train:
        # reused when their holders finished them, trained here when a holder died
        for spec, name, on_seed in waits:
            def on_held(metrics, reused, on_seed=on_seed, held=by_run[name]["held"]):
                if metrics["seed"] in held:          # the rest were counted in the first pass
                    on_seed(metrics, reused)
            by_run[name] = run(spec, data_root=data_root, out_dir=out_dir, store=store,
                               stale=stale, log=log, on_seed=on_held, train=train)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    summaries = {key: by_run[name] for key, name in run_of.items()}
    variants = [v for v in variants if v.key not in unusable]
    not_run = {**not_run, **unusable}
    missing = [k for k, s in summaries.items() if not s["per_seed"]]
    refs = [v.key for v in variants if v.key == FULL.key or v.key in TABLE_REFERENCE.values()]
    if refs and all(k in missing for k in refs):
        raise ConfigError(f"no finished seed of {' or '.join(refs)} for {dataset} ({preset}): "
                          "train the grid first (without --only-finished)")
    keep = [v.key for v in variants if v.key not in missing]
    if missing:
        log(f"left out (no finished seed): {missing}")
    return {"dataset": dataset, "preset": preset, "seeds": seeds,
            "summaries": {k: summaries[k] for k in keep}, "variants": keep,
            "wall_seconds": round(wall, 1), "trained": trained, "left_out": missing,
            "not_run": not_run}


def regime_refusal(spec: RunSpec) -> str | None:
    """Why ``spec``'s method cannot run in its preset's regime (None when it can)."""
    return spec.regime_refusal()


def _per_seed(summary: dict, metric: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[metric]) for r in summary["per_seed"]}


def paired(variant: dict[int, float], full: dict[int, float]) -> dict:
    """Paired per-seed difference variant - full over the seeds both have."""
    from scipy import stats
    seeds = sorted(set(variant) & set(full))
    d = np.array([variant[s] - full[s] for s in seeds])
    v = np.array([variant[s] for s in seeds])
    f = np.array([full[s] for s in seeds])
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    out = {"n": n, "delta": round(mean, 2),
           "delta_std": round(float(d.std(ddof=1)), 2) if n > 1 else 0.0,
           "same_sign": int(np.sum(np.sign(d) == np.sign(mean))) if n and mean != 0 else 0,
           "p": float("nan")}
    if n > 1 and np.any(d != d[0]):
        out["p"] = round(float(stats.ttest_rel(v, f).pvalue), 4)
    pooled = math.sqrt((v.std(ddof=1) ** 2 + f.std(ddof=1) ** 2) / 2) if n > 1 else 0.0
    out["spread"] = round(pooled, 2)
    out["inside_spread"] = bool(n < 2 or abs(mean) <= pooled)
    return out


def reading(p: dict) -> str:
    """A plain-language verdict for one paired comparison: first whether the mean difference
    exceeds the seed spread, then what the paired seeds say."""
    if p["n"] < 2:
        return "one seed: no spread to compare against"
    sign = "higher" if p["delta"] > 0 else "lower"
    pval = p["p"]
    ptxt = "p n/a" if pval != pval else ("p < 0.01" if pval < 0.01 else f"p = {pval:.2f}")
    paired_txt = f"{p['same_sign']}/{p['n']} seeds agree in sign, paired t-test {ptxt}"
    if p["inside_spread"]:
        return f"inside the seed spread (±{p['spread']:.2f}); {paired_txt}"
    strong = p["same_sign"] == p["n"] and pval == pval and pval < 0.05
    return (f"{sign}, beyond the seed spread"
            + ("" if strong else " but not in every seed / not significant") + f"; {paired_txt}")


def _paper_row(dataset: str, table: str, row: str | None) -> tuple[str, dict] | None:
    """(source, the paper's numbers) of a row, or None where no paper reports it."""
    if row is None:
        return None
    for source, tab in PAPER_SOURCES.get(table, ()):
        if row in tab.get(dataset, {}):
            return source, tab[dataset][row]
    return None


def reference_of(table: str) -> str:
    """The variant every other row of ``table`` is paired with."""
    return TABLE_REFERENCE.get(table, FULL.key)


def versus(table: str, summaries: dict) -> str:
    """The row ``table``'s rows are paired with in a grid: its reference, or the full LGSRR
    model where the reference has no finished seed (A-MESS on a dataset without label
    descriptions) and LGSRR has; the table's heading and every row's ``versus`` say which."""
    ref = reference_of(table)
    if ref not in summaries and FULL.key in summaries:
        return FULL.key
    return ref


def compare(grid: dict, metric: str = "F1") -> pd.DataFrame:
    """One row per (table, variant): mean ± std of the six metrics, the paired difference of
    ``metric`` to the table's reference row (the full LGSRR model; A-MESS in its own
    ablation), its reading, and the paper's numbers (``paper_source`` names the table)."""
    dataset = grid["dataset"]
    keys = grid["variants"]
    shown = [t for t in TABLES
             if any(t in BY_KEY[k].tables for k in keys if k != reference_of(t))]
    rows = []
    for table in shown:
        ref_key = versus(table, grid["summaries"])
        ref = grid["summaries"].get(ref_key)
        others = [k for k in keys if table in BY_KEY[k].tables
                  and k not in (ref_key, reference_of(table))]
        members = ([ref_key] if ref is not None else []) + others
        for key in members:
            v = BY_KEY[key]
            s = grid["summaries"][key]
            row = {"table": table, "variant": key, "row": v.label, "method": v.method,
                   "run": s["run"], "seeds": len(s["per_seed"]), "versus": ref_key}
            for m in METRICS:
                row[m] = s["test"][m]["mean"]
                row[f"{m}_std"] = s["test"][m]["std"]
            if key != ref_key:
                if ref is None:
                    row["reading"] = f"no finished seed of {ref_key} to pair with"
                else:
                    p = paired(_per_seed(s, metric), _per_seed(ref, metric))
                    row.update({f"d{metric}": p["delta"], f"d{metric}_std": p["delta_std"],
                                "same_sign": p["same_sign"], "p": p["p"],
                                "inside_spread": p["inside_spread"], "reading": reading(p)})
            paper = _paper_row(dataset, table, v.paper.get(table))
            paper_ref = _paper_row(dataset, table, BY_KEY[ref_key].paper.get(table))
            value = paper[1].get(metric, float("nan")) if paper else float("nan")
            row[f"paper_{metric}"] = value
            row["paper_source"] = paper[0] if paper else ""
            if paper and paper_ref and key != ref_key and metric in paper_ref[1] \
                    and value == value and f"d{metric}" in row:
                row[f"paper_d{metric}"] = round(value - paper_ref[1][metric], 2)
                row["sign_as_paper"] = bool(np.sign(row[f"paper_d{metric}"])
                                            == np.sign(row[f"d{metric}"]))
            row["note"] = v.note
            rows.append(row)
    return pd.DataFrame(rows)


def seed_deltas(grid: dict, metric: str = "F1") -> pd.DataFrame:
    """Per-seed paired differences variant - reference (one row per variant and seed; the
    reference is that of the variant's first table)."""
    rows = []
    for key in grid["variants"]:
        v = BY_KEY[key]
        table = next((t for t in v.tables if reference_of(t) != key), None)
        ref_key = versus(table, grid["summaries"]) if table else None
        if ref_key not in grid["summaries"]:
            continue
        ref = _per_seed(grid["summaries"][ref_key], metric)
        for seed, val in sorted(_per_seed(grid["summaries"][key], metric).items()):
            if seed in ref:
                rows.append({"variant": key, "row": v.label, "table": table,
                             "seed": seed, "delta": round(val - ref[seed], 4)})
    return pd.DataFrame(rows, columns=["variant", "row", "table", "seed", "delta"])


def markdown(df: pd.DataFrame, grid: dict, metric: str = "F1") -> str:
    """The comparison as markdown tables, one per paper table."""
    out = [f"### {grid['dataset']}, preset `{grid['preset']}`, seeds {grid['seeds']}\n"]
    for table, part in df.groupby("table", sort=False):
        title = TITLES.get(table, f"Table {table}")
        ref_key = part["versus"].iloc[0]
        ref = BY_KEY[ref_key].label
        if ref_key != reference_of(table):          # the table's own reference did not run
            ref += f" (no finished seed of {BY_KEY[reference_of(table)].label})"
        sources = "; ".join(src for src, _ in PAPER_SOURCES.get(table, ()))
        out.append(f"\n**{title}** (mean ± std over seeds; Δ = paired per-seed difference of "
                   f"{metric} to {ref}" + (f"; paper: {sources}" if sources else "")
                   + ")\n\n")
        out.append("| row | " + " | ".join(METRICS) + f" | Δ{metric} | reading | paper {metric}"
                   f" | paper Δ |\n|---|" + "---|" * (len(METRICS) + 4))
        for _, r in part.iterrows():
            cells = [f"{r[m]:.2f} ± {r[m + '_std']:.2f}" for m in METRICS]
            d = r.get(f"d{metric}")
            dtxt = "" if d is None or d != d else f"{d:+.2f} ± {r[f'd{metric}_std']:.2f}"
            pap = r.get(f"paper_{metric}")
            ptxt = "" if pap is None or pap != pap else f"{pap:.2f}"
            if ptxt and len(PAPER_SOURCES.get(table, ())) > 1:
                ptxt += f" ({r['paper_source']})"
            pd_ = r.get(f"paper_d{metric}")
            pdtxt = "" if pd_ is None or pd_ != pd_ else f"{pd_:+.2f}"
            read = r.get("reading")
            read = "" if not isinstance(read, str) else read
            if isinstance(r.get("note"), str) and r["note"]:
                read = f"{read} ({r['note']})" if read else r["note"]
            label = r["row"] if r["seeds"] == len(grid["seeds"]) else \
                f"{r['row']} ({r['seeds']} seeds)"
            out.append(f"\n| {label} | " + " | ".join(cells)
                       + f" | {dtxt} | {read} | {ptxt} | {pdtxt} |")
        out.append("\n")
    runs = {s["folder"]: s for s in grid["summaries"].values()}
    train_s = sum(r.get("train_seconds", 0.0) for s in runs.values() for r in s["per_seed"])
    n_seeds = sum(len(s["per_seed"]) for s in runs.values())
    out.append(f"\nTraining time summed over the {len(runs)} runs' {n_seeds} seeds: "
               f"{train_s:.0f} s. Wall time of this call: {grid['wall_seconds']:.0f} s "
               f"({grid['trained']} seeds trained, the rest reused).\n")
    if grid.get("left_out"):
        out.append(f"Left out (no finished seed yet): {', '.join(grid['left_out'])}.\n")
    for key, why in (grid.get("not_run") or {}).items():
        out.append(f"Not run: {BY_KEY[key].label} ({why}).\n")
    return "".join(out)


def save(grid: dict, df: pd.DataFrame, out_dir=None, metric: str = "F1") -> Path:
    folder = grid_dir(grid["dataset"], grid["preset"], out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "table.csv", index=False)
    (folder / "table.md").write_text(markdown(df, grid, metric))
    slim = {k: v for k, v in grid.items() if k != "summaries"}
    slim["runs"] = {k: s["folder"] for k, s in grid["summaries"].items()}
    (folder / "grid.json").write_text(json.dumps(slim, indent=2))
    return folder
