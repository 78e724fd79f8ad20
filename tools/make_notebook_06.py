"""Authoring script of notebooks/06_case_studies.ipynb (run once; then edit the notebook).

    .venv/bin/python tools/make_notebook_06.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbbuild import build  # noqa: E402

CELLS = [
    ("md", r'''
# 06 · Case studies: does the learned importance follow the LLM's ranking?

LGSRR has a weight network that gives every sample importance weights **α over the four
sources**: the utterance (T) and the three LLM descriptions, **A** Speakers' Actions, **E**
Facial Expressions, **I** Interaction with Others (Eq. 7-8). During training these weights
are pulled towards the LLM's ranking of the three aspects by NeuralNDCG (Eq. 9; the release
has GPT-3.5 ranks for the train split only). The paper's claim is that this LLM guidance
helps. This step checks, for one trained run, whether the model actually uses it:

* **Confusion matrix and recall per intent** (Figure 2): where the model is right and wrong.
* **Table 7** (Appendix D): how often each aspect is ranked 1st / 2nd / 3rd, from the
  released ranks (checked against the paper's numbers), next to the same counts from the
  learned α on train and test, and how often the two orders agree (top-1, Kendall τ),
  overall and **per intent class**. The classes where they disagree most are listed.
* **Importance per intent**: mean α of T, A, E, I per gold class.
* **Case cards** (Figures 3-5): utterance, descriptions, LLM rank, learned weights,
  prediction vs gold, for a few samples.
* **Tokens**: the text encoder's self-attention over one sample, and an integrated-gradients
  attribution of the trained model's prediction over the tokens of the utterance and of
  each description (`mir_core.attention`: through the trained head, evaluated inside its
  own evaluation batch).
* **The inspector**: browse every case with filters (gold label, correct / incorrect,
  learned order ≠ LLM order); a static copy of its view is saved with the notebook.

The run is the newest full LGSRR run under the outputs folder (notebook 04 and the CLI write
them to `outputs/runs/<dataset>/`; ablation variants are skipped), unless `run_dir` names
one; when there is none, a small one is trained there first, so the notebook also works on
its own. Figures are
written as plotly JSON and HTML to `<out_dir>/figures/`, the numbers to
`<out_dir>/records.json`.
'''),
    ("code", r'''
# Parameters (papermill overrides these)
dataset = "MIntRec2.0"            # MIntRec2.0 | IEMOCAP-DA (both have released LLM ranks)
run_dir = None                    # a run folder (.../runs/<dataset>/<run>); None: the newest LGSRR run under the outputs folder
sample_ids = ["3_9", "19_0", "3_0"]   # cases to feature (train keys carry the LLM rank); missing ones are replaced by contrasting cases
data_root = None                  # None: $MIR_DATA_DIR/lgsrr
out_dir = None                    # figures and records; None: output_dir below
seed = None                       # which seed of the run (None: its first)
max_samples = None                # cases per split kept for the cards and the inspector (None: all)
fallback = {"max_train": 1200, "max_eval": 400, "seeds": [0], "overrides": {"epochs": 10}}  # the run trained when none exists (cpu preset)
runs_dir = None                   # where runs are looked for and the fallback is trained (None: the shared output root, outputs/runs/, as notebook 04)
attribution_steps = 32            # integration steps of the token attribution
attention_layer = -1              # encoder layer of the attention maps (-1: the last)
attention_head = None             # None: the mean over the heads
output_dir = None                 # set by make demo / papermill (None: $MIR_OUTPUT_DIR/06_case_studies); out_dir wins
progress = True                   # progress bars while the fallback run trains
'''),
    ("code", r'''
import json
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mir_core import attention, cases, data, paths, plots
from mir_core.annotation.agreement import table7_check
from mir_core.inspector import DISAGREES, RankingInspector
from mir_core.records import Recorder
from mir_core.training import RunSpec, run

out = paths.notebook_output("06_case_studies", out_dir or output_dir)
fig_dir = out / "figures"
rec = Recorder(out)
spec = data.get_spec(dataset, data_root)
figures = {}                      # name -> figure, saved at the end

# the run: given, else the newest full LGSRR run under the outputs folder (any depth)
trained_here = False
if run_dir is None:
    run_dir = cases.latest_run(spec.name, [paths.output_dir(runs_dir), paths.output_dir()])
if run_dir is None:
    display(Markdown(f"No LGSRR run of {spec.name} under `{paths.output_dir(runs_dir)}`: training "
                     f"a small one (cpu preset, {fallback})."))
    rs = RunSpec(dataset=spec.name, method="lgsrr", preset="cpu",
                 seeds=tuple(fallback.get("seeds", [0])), max_train=fallback.get("max_train"),
                 max_eval=fallback.get("max_eval"), overrides=dict(fallback.get("overrides", {})))
    run_dir = run(rs, data_root=data_root, out_dir=runs_dir, progress=progress)["folder"]
    trained_here = True
info = cases.load_run(run_dir)
seed = info.seed(seed)
cfg = info.train_config()
s = info.summary
display(Markdown(
    f"**Run** `{info.name}` ({info.folder}) · seed {seed} · preset `{s.get('preset')}` · encoder "
    f"`{cfg.encoder}` · regime `{cfg.regime}` · fusion `{info.options.get('fusion')}` · "
    f"{s.get('n_train')} train / {s.get('n_test')} test samples · test macro-F1 "
    f"{s['test']['F1']['mean']:.2f}" + (" · *trained in this notebook*" if trained_here else "")))
rec.glue("run", {"folder": str(info.folder), "name": info.name, "seed": seed,
                     "trained_here": trained_here, "preset": s.get("preset"),
                     "encoder": cfg.encoder, "regime": cfg.regime, "options": info.options,
                     "n_train": s.get("n_train"), "n_test": s.get("n_test"),
                     "test_F1": s["test"]["F1"]["mean"]})
'''),
    ("md", r'''
## The cases

One row per sample of the run's train and test split: text, descriptions, gold and predicted
label, α, the learned aspect order (α_A, α_E, α_I sorted) and, on train, the LLM order.
Train predictions are recomputed from the seed's `best.pt` (the run folder keeps only test
predictions); the recomputed α equals `train_scores.csv`.
'''),
    ("code", r'''
splits = info.splits(data_root)
pred = info.predictions(seed)                       # test, as the run wrote it
train_scores = info.train_scores(seed)
table = cases.case_table(info, seed, root=data_root, max_samples=max_samples)
check_alpha = table.attrs.get("train_alpha_max_abs_diff")
if check_alpha is not None:
    display(Markdown(f"Recomputed train α vs `train_scores.csv`: largest difference {check_alpha:.1e}."))
acc = table.groupby("split")["correct"].mean().to_dict()
display(table.groupby("split").agg(samples=("key", "size"), accuracy=("correct", "mean"),
                                   top1_agrees=("top1_agrees", "mean"),
                                   order_agrees=("order_agrees", "mean")).round(3))
rec.glue("cases", {"n": {k: int(v) for k, v in table.split.value_counts().items()},
                       "accuracy": {k: float(v) for k, v in acc.items()},
                       "train_alpha_max_abs_diff": check_alpha})
'''),
    ("md", r'''
## Confusion matrix and recall per intent (test, Figure 2)

Rows: gold, columns: predicted, both in the dataset's label order; each row sums to 1. The
bars give each class's recall (the diagonal).
'''),
    ("code", r'''
figures["confusion"] = plots.confusion_heatmap(
    pred["label_id"], pred["pred_id"], spec.labels,
    title=f"{spec.name} test: {info.name}, seed {seed}")
figures["confusion"].show()
recall = cases.per_class_recall(pred["label_id"], pred["pred_id"], spec.labels)
display(recall.dropna().sort_values("recall").T.round(2))
rec.glue("recall", {k: (None if np.isnan(v) else float(v)) for k, v in recall["recall"].items()})
rec.glue("test_accuracy", float((pred["label_id"] == pred["pred_id"]).mean()))
'''),
    ("md", r'''
## Table 7: the LLM's ranks next to the learned importance

First Table 7 itself, recomputed from the released GPT-3.5 ranks of the whole train split
beside the paper's numbers. Then, on the run's train samples, the counts of the LLM order and
of the learned order at each rank, the learned counts on test, and how often the learned
order agrees with the LLM's (top-1: same first aspect; exact: same order; τ: Kendall's tau
between the two orders, +1 same, -1 reversed). The trivial ranker "always I > A > E" (the
majority order of Table 7) is the reference an uninformed ranker reaches.
'''),
    ("code", r'''
t7 = table7_check(spec.name, data_root)
display(t7.side_by_side().style.set_caption(
    f"Table 7 ({spec.name}, {t7.n} train samples): release vs paper — "
    + ("equal" if t7.equal else "DIFFERENT")))
rec.glue("table7_release", {row: {col: int(v) for col, v in r.items()}
                                for row, r in t7.ours.iterrows()})
rec.glue("table7_equal_paper", t7.equal)

train = splits["train"]
stats = cases.rank_statistics(train.rank_order, train_scores, pred, train.label_ids, spec.labels)
display(stats.table7().style.set_caption("Counts at Rank@k: LLM vs learned α (the run's samples)"))
display(stats.overall.round(3).style.set_caption("Learned order vs the LLM order (train)"))
figures["rank_statistics"] = plots.rank_statistics(
    stats, title=f"{spec.name}: aspects at each rank, LLM ranks vs learned α ({info.name})")
figures["rank_statistics"].show()
rec.glue("rank_statistics", stats.as_dict())
rec.glue("agreement", {k: float(v) for k, v in stats.overall.loc["learned α"].items()})
rec.glue("agreement_trivial", {k: float(v) for k, v in stats.overall.loc["trivial I > A > E"].items()})
'''),
    ("md", r'''
### Where learned and LLM importance disagree most

Per gold intent class (train): lowest mean τ first. `llm_first` / `learned_first`: the aspect
each puts first most often; `first_choice_tv`: the total-variation distance between their
first-choice distributions (0 equal, 1 disjoint).
'''),
    ("code", r'''
worst = stats.most_disagreeing(5, min_n=min(5, int(stats.per_class["n"].min())))
display(worst.round(3))
rec.glue("most_disagreeing", worst.reset_index())
a = stats.overall.loc["learned α"]
b = stats.overall.loc["trivial I > A > E"]
display(Markdown(
    f"Overall the learned order matches the LLM's first aspect for **{a['top1']:.1%}** of the train "
    f"samples (trivial ranker: {b['top1']:.1%}), the whole order for {a['exact']:.1%} "
    f"({b['exact']:.1%}); mean τ {a['mean_tau']:+.2f} ({b['mean_tau']:+.2f}). Least agreement: "
    + ", ".join(f"**{k}** (τ {v:+.2f})" for k, v in worst["mean_tau"].items()) + "."))
'''),
    ("md", r'''
## Importance per intent class (test)

Mean α of the utterance and of each description per gold class. With a frozen encoder α_T
tends to take nearly all the weight (docs/RESULTS.md); the second map shows how the rest is
shared among A, E and I.
'''),
    ("code", r'''
imp = cases.importance_by_class(pred, spec.labels)
figures["importance"] = plots.importance_heatmap(imp, title=f"{spec.name} test: mean α per intent class")
figures["importance"].show()
figures["importance_aspects"] = plots.importance_heatmap(
    imp, relative=True, title=f"{spec.name} test: share of the aspect weight per intent class")
figures["importance_aspects"].show()
rec.glue("importance_by_class", imp.reset_index())
'''),
    ("md", r'''
## Case cards (Figures 3-5)

The featured samples (`sample_ids`; a key not among the run's samples is replaced by a
contrasting case: learned = LLM order and correct, a top-1 disagreement, a wrong prediction).
The bars: α of each source, the aspects shaded by their LLM rank (darkest: first).
'''),
    ("code", r'''
featured = cases.pick_cases(table, sample_ids, n=max(3, len(sample_ids)))
missing = [k for k in sample_ids if k not in set(table["key"].astype(str))]
if missing:
    display(Markdown(f"Not among this run's cases: {missing}; replaced by contrasting cases."))
for i, (_, row) in enumerate(featured.iterrows()):
    name = f"case_{i}_{row['key']}"
    figures[name] = plots.case_card(row)
    figures[name].show()
rec.glue("featured", [{"key": r["key"], "split": r["split"], "label": r["label"], "pred": r["pred"],
                           "llm": r["llm"], "learned": r["learned"],
                           "alpha": {s: float(r[f"alpha_{s}"]) for s in "TAEI"}}
                          for _, r in featured.iterrows()])
rec.glue("featured_missing", missing)
'''),
    ("md", r'''
## Tokens: self-attention and attribution of one case

The self-attention of the text encoder over the utterance and over the description the LLM
ranked first (one layer, the mean over its heads unless `attention_head` is set). In the
frozen (cpu) regime this is the pretrained encoder: training never changed it. Then the
integrated-gradients attribution of the **trained model's** logit of its predicted class over
the tokens of all four sources (LayerIntegratedGradients over the encoder's embedding layer;
the pipeline encoder → pooling → the trained head is documented in `mir_core.attention`).
Red bars push towards the predicted class, blue against it; the panel titles give each
source's total. The totals add up to logit(input) − logit(blank input) up to `delta`.
'''),
    ("code", r'''
focus = featured.iloc[0]
pipe = attention.run_pipeline(info, seed)
lens = {"T": pipe.max_lens()["text"], **{a: pipe.max_lens().get(a, 50) for a in "AEI"}}
first = focus["llm"].split(" > ")[0] if focus["llm"] else "I"
texts = {"T": focus["text"], first: focus[f"desc_{first}"]}
maps = attention.sample_attention(texts, pipe.tokenizer, pipe.text_encoder, attention_layer,
                                  attention_head, max_len=lens)
for src, m in maps.items():
    figures[f"attention_{src}"] = plots.attention_map(m.matrix, m.tokens, m.tokens,
                                                      title=f"{focus['key']}: {m.title}")
    figures[f"attention_{src}"].show()

res = attention.attribute_case(info, str(focus["key"]), str(focus["split"]), seed, root=data_root,
                               n_steps=attribution_steps, pipeline=pipe)
figures["attribution"] = plots.token_attribution(
    res.tokens, res.scores, title=f"{focus['key']}: attribution of the logit of '{res.target_label}' "
                                  f"(p = {res.prob:.2f}; {res.n_steps} steps, delta {res.delta:+.4f})")
figures["attribution"].show()
display(res.top_tokens(8).round(4))
for note in res.notes:
    display(Markdown(f"*Note:* {note}"))
rec.glue("attention", {s: {"tokens": m.tokens, "layer": m.layer, "head": m.head,
                               "row_sums_max_dev": float(np.abs(m.matrix.sum(1) - 1).max())}
                           for s, m in maps.items()})
rec.glue("attribution", res.summary())
'''),
    ("md", r'''
## The inspector

Pick a case by row, by words of its utterance or by key; filter by split, gold label,
prediction (correct / incorrect) and whether the learned order agrees with the LLM order
(train only: the release has no test ranks). The card, its weights and the attention map
(self-attention of the chosen source) follow the selection. Widget state is not saved with
the notebook: the static figure below it is the same view as a plain figure.
'''),
    ("code", r'''
def attention_of(row, source):
    text = row["text"] if source == "T" else row[f"desc_{source}"]
    return attention.self_attention(text, pipe.tokenizer, pipe.text_encoder, attention_layer,
                                    attention_head, max_len=lens[source], source=source)

insp = RankingInspector(table, spec.labels, attention_fn=attention_of,
                        title=f"{spec.name} · {info.name}")
n_disagree = len(insp.set_filters(split="train", agreement=DISAGREES))
insp.set_filters(split="all", agreement="all")
insp.select(str(focus["key"]))
display(insp)
figures["inspector"] = insp.static_figure()
figures["inspector"].show()
rec.glue("inspector", {"cases": len(table), "train_order_disagrees": n_disagree,
                           "selected": str(insp.row()["key"]), "messages": insp.messages})
'''),
    ("md", r'''
## Saved figures
'''),
    ("code", r'''
saved = cases.save_figures(figures, fig_dir)
display(pd.DataFrame(saved).T)
rec.glue("figures", saved)
'''),
]

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "notebooks" / "06_case_studies.ipynb"
    build(str(target), CELLS)
    print(f"wrote {target}")
