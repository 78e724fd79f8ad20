"""Notebook 06 (case studies) runs headless on the quick parameters. No LGSRR run exists in
its outputs folder, so it trains its own small one first (the stand-alone path), then every
section records values that we check against independent computations."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import plotly.io as pio

from mir_core.annotation.agreement import PAPER_TABLE7, TABLE7_COLUMNS, TABLE7_ROWS
from mir_core.data import MINTREC2_LABELS, load_split
from mir_core.demo import QUICK
from mir_core.notebooks import run_notebook
from mir_core.records import Recorder


def test_notebook_06_case_studies(data_root, tmp_path, monkeypatch):
    # an empty outputs folder: no run to reuse, the notebook trains the fallback run there
    shared = tmp_path / "empty_outputs"
    monkeypatch.setenv("MIR_OUTPUT_DIR", str(shared))
    # fp32: the checks below hold alpha to 1e-4; precision auto takes bf16 where it is faster,
    # and bf16 softmax outputs sum to 1 only to ~1e-3
    fb_fp32 = {**QUICK["06"]["fallback"],
               "overrides": {**QUICK["06"]["fallback"]["overrides"], "precision": "fp32"}}
    params = {**QUICK["06"], "fallback": fb_fp32,
              "data_root": os.path.join(os.environ["MIR_DATA_DIR"], "lgsrr")}
    executed = run_notebook("06", params, output_dir=tmp_path)
    folder = tmp_path / "06_case_studies"
    rec = Recorder.read(folder)
    fb = QUICK["06"]["fallback"]

    # the run: trained here, in the shared runs folder (where notebook 04 puts its runs)
    run = rec["run"]
    assert run["trained_here"] is True
    assert Path(run["folder"]).resolve().parent == (shared / "runs" / "MIntRec2.0").resolve()
    assert (run["n_train"], run["n_test"]) == (fb["max_train"], fb["max_eval"])
    assert (run["regime"], run["encoder"]) == ("frozen", "minilm-l6")

    # Table 7 from the released ranks equals the paper's (LGSRR Appendix D)
    t7 = rec["table7_release"]
    assert [t7[a]["Rank@1"] for a in TABLE7_ROWS] == [1476, 523, 4166]
    assert [[t7[a][c] for c in TABLE7_COLUMNS] for a in TABLE7_ROWS] == \
        [list(r) for r in PAPER_TABLE7["MIntRec2.0"]]
    assert rec["table7_equal_paper"] is True

    # the run's train rows: LLM counts recomputed here from the release
    train = load_split("MIntRec2.0", "train", params["data_root"]).subset(fb["max_train"], seed=0)
    rs = rec["rank_statistics"]
    llm = {r["aspect"]: r for r in rs["llm"]}
    order = train.rank_order
    for a, name in enumerate(TABLE7_ROWS):
        assert [llm[name][c] for c in TABLE7_COLUMNS] == [int((order[:, k] == a).sum())
                                                          for k in range(3)]
    for key, n in (("llm", fb["max_train"]), ("learned_train", fb["max_train"]),
                   ("learned_test", fb["max_eval"])):
        for c in TABLE7_COLUMNS:                      # each rank position holds every sample
            assert sum(r[c] for r in rs[key]) == n, (key, c)
    ag, triv = rec["agreement"], rec["agreement_trivial"]
    for a in (ag, triv):
        assert 0.0 <= a["top1"] <= 1.0 and 0.0 <= a["exact"] <= a["top1"]
        assert -1.0 <= a["mean_tau"] <= 1.0 and a["n"] == fb["max_train"]
    assert triv["top1"] == np.mean(order[:, 0] == 2)            # always I > A > E
    assert triv["exact"] == np.mean((order == (2, 0, 1)).all(1))
    per_class = rs["per_class"]
    names = [r["label"] for r in per_class]
    assert names == [lab for lab in MINTREC2_LABELS if lab in names]     # dataset order
    assert sum(r["n"] for r in per_class) == fb["max_train"]
    assert all(0.0 <= r["top1"] <= 1.0 and 0.0 <= r["first_choice_tv"] <= 1.0
               for r in per_class)
    worst = rec["most_disagreeing"]
    taus = [r["mean_tau"] for r in worst]
    assert len(worst) == 5 and taus == sorted(taus)
    assert taus[0] == min(r["mean_tau"] for r in per_class)

    # the cases: train predictions recomputed from best.pt reproduce train_scores.csv
    assert rec["cases"]["n"] == {"train": fb["max_train"], "test": fb["max_eval"]}
    assert rec["cases"]["train_alpha_max_abs_diff"] < 1e-5
    assert rec["cases"]["accuracy"]["test"] == rec["test_accuracy"]
    recall = rec["recall"]
    assert list(recall) == list(MINTREC2_LABELS)
    assert all(v is None or 0.0 <= v <= 1.0 for v in recall.values())
    for r in rec["importance_by_class"]:
        assert abs(r["T"] + r["A"] + r["E"] + r["I"] - 1.0) < 1e-4

    # featured cases: the given keys when the run has them, contrasting cases otherwise
    featured = rec["featured"]
    assert len(featured) == 3
    found = [k for k in QUICK["06"].get("sample_ids", ["3_9", "19_0", "3_0"])
             if k not in rec["featured_missing"]]
    assert [f["key"] for f in featured][:len(found)] == found
    for f in featured:
        assert abs(sum(f["alpha"].values()) - 1.0) < 1e-4
        assert f["learned"].count(">") == 2

    # tokens: attention rows are distributions; the attribution explains the run's own
    # prediction (evaluated in its evaluation batch) and is complete up to delta
    for s, a in rec["attention"].items():
        assert a["tokens"][0] == "[CLS]" and a["tokens"][-1] == "[SEP]"
        assert a["row_sums_max_dev"] < 1e-4 and a["layer"] == 5
    at = rec["attribution"]
    assert at["key"] == featured[0]["key"]
    assert at["pred"] == at["target"] and at["stored_pred"] is not None
    assert MINTREC2_LABELS[at["stored_pred"]] == at["pred"]
    for s in "TAEI":
        assert abs(at["alpha"][s] - at["stored_alpha"][s]) < 1e-4
    gap = at["logit"] - at["baseline_logit"]
    assert abs(sum(at["totals"].values()) + at["delta"] - gap) < 1e-4
    assert at["relative_delta"] < 0.25                       # 8 steps only
    assert at["batch_mates"] == 7                           # eval batches of 8

    # the inspector's "learned order disagrees" filter finds every train case whose learned
    # order differs from the LLM's, i.e. (1 - exact) of them
    insp = rec["inspector"]
    assert insp["cases"] == fb["max_train"] + fb["max_eval"]
    assert insp["train_order_disagrees"] == round((1 - ag["exact"]) * fb["max_train"])
    assert insp["selected"] == featured[0]["key"] and insp["messages"] == []

    # figures: plotly JSON and HTML of each, readable back
    figs = rec["figures"]
    expected = {"confusion", "rank_statistics", "importance", "importance_aspects",
                "attribution", "inspector"} | {f"case_{i}_{f['key']}"
                                                for i, f in enumerate(featured)}
    assert expected <= set(figs) and any(k.startswith("attention_") for k in figs)
    for name, paths in figs.items():
        assert Path(paths["json"]).exists() and Path(paths["html"]).exists(), name
    conf = pio.read_json(figs["confusion"]["json"])
    assert [t.type for t in conf.data] == ["heatmap", "bar"]
    assert list(conf.data[0].y) == list(MINTREC2_LABELS)
    assert [t.type for t in pio.read_json(figs["inspector"]["json"]).data] == \
        ["table", "bar", "heatmap"]
    assert (folder / "figures" / "plotly.min.js").exists()

    # the executed copy ran every cell without error
    nb = json.loads(Path(executed).read_text())
    assert not [o for c in nb["cells"] for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
