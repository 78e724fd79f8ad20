"""The ablation grid: each variant is one switch, seeds resume by fingerprint, results are
appended, and the paired statistics are what scipy computes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from mir_core import ablation
from mir_core.__main__ import main
from mir_core.training.config import ConfigError

TINY = dict(max_train=120, max_eval=60)
OVER = {"epochs": 1}


def test_every_variant_is_exactly_its_switches_from_its_reference_row():
    for v in ablation.VARIANTS:
        table = next((t for t in v.tables if ablation.reference_of(t) != v.key), None)
        if table is None:                       # a reference row itself (full, amess)
            assert v.key in ablation.TABLE_REFERENCE.values() or v is ablation.FULL
            continue
        ref = ablation.BY_KEY[ablation.reference_of(table)]
        if v.method != ref.method:              # another method: compared as it is
            assert table == "1" and not v.options and not v.overrides, v.key
            continue
        ref_cfg, ref_opts = ref.spec("MIntRec2.0", "cpu-ft", (0,)).validate()
        cfg, opts = v.spec("MIntRec2.0", "cpu-ft", (0,)).validate()
        changed_opts = {k for k in vars(opts) if getattr(opts, k) != getattr(ref_opts, k)}
        changed_cfg = {k for k in vars(cfg) if getattr(cfg, k) != getattr(ref_cfg, k)}
        assert 1 <= len(changed_opts) + len(changed_cfg) <= 2, (v.key, changed_opts)
        assert changed_opts == set(v.options) and changed_cfg == set(v.overrides)


def _summary(run: str, f1_by_seed: dict[int, float]) -> dict:
    per_seed = [{"seed": s, **{m: f1 for m in ablation.METRICS}, "train_seconds": 1.0}
                for s, f1 in f1_by_seed.items()]
    vals = np.array(list(f1_by_seed.values()))
    stat = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1))}
    return {"run": run, "folder": f"/runs/{run}", "per_seed": per_seed,
            "test": {m: stat for m in ablation.METRICS}}


def test_table_1_pairs_methods_with_lgsrr_and_the_amess_ablation_with_amess():
    keys = ["full", "text", "mag_bert", "mult", "amess", "amess_no_ame", "amess_no_ss"]
    vals = {"full": 46.0, "text": 45.0, "mag_bert": 44.0, "mult": 40.0, "amess": 47.0,
            "amess_no_ame": 45.5, "amess_no_ss": 46.5}
    grid = {"dataset": "MIntRec2.0", "preset": "cpu-ft", "seeds": [0, 1, 2],
            "variants": keys, "wall_seconds": 1.0, "trained": 0, "left_out": [],
            "not_run": {},
            "summaries": {k: _summary(k, {0: v, 1: v + 1.0, 2: v - 0.5}) for k, v in
                          vals.items()}}
    df = ablation.compare(grid)
    assert list(df["table"].unique()) == ["1", "2", "amess"]
    t1 = df[df["table"] == "1"].set_index("variant")
    assert list(t1.index) == ["full", "text", "mag_bert", "mult", "amess"]
    assert (t1.loc[["text", "mag_bert", "mult", "amess"], "versus"] == "full").all()
    assert t1.loc["amess", "dF1"] == 1.0 and t1.loc["mult", "dF1"] == -6.0
    # paper numbers: LGSRR's Table 1 first, A-MESS's own row from A-MESS Table I
    assert t1.loc["mag_bert", "paper_F1"] == 54.74
    assert t1.loc["mag_bert", "paper_source"] == "LGSRR Table 1"
    assert t1.loc["amess", "paper_F1"] == 55.91
    assert t1.loc["amess", "paper_source"] == "A-MESS Table I"
    assert t1.loc["amess", "paper_dF1"] == round(55.91 - 55.35, 2)
    assert ablation.SUBSTITUTION in t1.loc["mag_bert", "note"]
    ab = df[df["table"] == "amess"].set_index("variant")
    assert list(ab.index) == ["amess", "amess_no_ame", "amess_no_ss"]
    assert (ab.loc[["amess_no_ame", "amess_no_ss"], "versus"] == "amess").all()
    assert ab.loc["amess_no_ame", "dF1"] == -1.5
    assert ab["paper_F1"].isna().all()          # A-MESS ablates on MIntRec only
    md = ablation.markdown(df, grid)
    assert "Table 1: the methods" in md and "55.91 (A-MESS Table I)" in md
    assert "to A-MESS [descriptions as nonverbal streams]" in md
    assert "descriptions as nonverbal streams" in md
    deltas = ablation.seed_deltas(grid)
    assert set(deltas[deltas["variant"] == "amess_no_ss"]["delta"]) == {-0.5}
    assert set(deltas[deltas["variant"] == "amess"]["delta"]) == {1.0}   # vs LGSRR

    # on MIntRec the paper's ablation deltas sit beside the rows
    grid["dataset"] = "MIntRec"
    ab = ablation.compare(grid).query("table == 'amess'").set_index("variant")
    assert ab.loc["amess_no_ame", "paper_dF1"] == round(69.58 - 70.49, 2)
    assert ab.loc["amess_no_ame", "sign_as_paper"]


def test_a_table_whose_reference_did_not_run_pairs_with_lgsrr_and_says_so():
    """IEMOCAP-DA has no label descriptions, so A-MESS cannot run: its ablation rows (which
    need none) are paired with LGSRR instead, named in the rows and the heading."""
    keys = ["full", "text", "amess_no_ss", "amess_no_both"]
    vals = {"full": 68.0, "text": 70.0, "amess_no_ss": 67.0, "amess_no_both": 66.0}
    grid = {"dataset": "IEMOCAP-DA", "preset": "cpu-ft", "seeds": [0, 1, 2],
            "variants": keys, "wall_seconds": 1.0, "trained": 0, "left_out": [],
            "not_run": {"amess": "no label descriptions file"},
            "summaries": {k: _summary(k, {0: v, 1: v + 1.0, 2: v - 0.5}) for k, v in
                          vals.items()}}
    assert ablation.versus("amess", grid["summaries"]) == "full"
    assert ablation.versus("1", grid["summaries"]) == "full"
    df = ablation.compare(grid)
    ab = df[df["table"] == "amess"].set_index("variant")
    assert list(ab.index) == ["full", "amess_no_ss", "amess_no_both"]
    assert (ab["versus"] == "full").all()
    assert ab.loc["amess_no_ss", "dF1"] == -1.0 and ab.loc["amess_no_both", "dF1"] == -2.0
    assert "paper_dF1" not in ab or ab["paper_dF1"].isna().all()   # the paper's is vs A-MESS
    md = ablation.markdown(df, grid)
    assert ("to LGSRR (full, official fusion) (no finished seed of A-MESS [descriptions as "
            "nonverbal streams])") in md
    deltas = ablation.seed_deltas(grid)
    assert set(deltas[deltas["variant"] == "amess_no_both"]["delta"]) == {-2.0}
    # with A-MESS finished the table is paired with it again
    grid["summaries"]["amess"] = _summary("amess", {0: 69.0, 1: 70.0, 2: 68.5})
    grid["variants"] = keys + ["amess"]
    ab = ablation.compare(grid).query("table == 'amess'").set_index("variant")
    assert list(ab.index) == ["amess", "amess_no_ss", "amess_no_both"]
    assert ab.loc["amess_no_ss", "dF1"] == -2.0


def test_methods_outside_the_presets_regime_are_left_out_by_name():
    spec = ablation.BY_KEY["mag_bert"].spec("MIntRec2.0", "cpu", (0,))
    why = ablation.regime_refusal(spec)
    assert "mag_bert runs in the partial regime" in why and "cpu-ft" in why
    assert ablation.regime_refusal(ablation.BY_KEY["mag_bert"].spec(
        "MIntRec2.0", "cpu-ft", (0,))) is None
    assert ablation.regime_refusal(ablation.FULL.spec("MIntRec2.0", "cpu", (0,))) is None
    keys = [v.key for v in ablation.select(["1"])]
    assert keys == ["full", "text", "mag_bert", "mult", "amess"]
    assert [v.key for v in ablation.select(["amess"])] == [
        "amess", "amess_no_ame", "amess_no_ss", "amess_no_both"]
    assert [v.key for v in ablation.select(variants=["amess_no_ss"])] == [
        "amess", "amess_no_ss"]
    assert [v.key for v in ablation.select(variants=["amess"])] == ["full", "amess"]


def test_select_names_tables_and_refuses_unknown():
    keys = [v.key for v in ablation.select(["2", "8"])]
    assert keys == ["full", "text", "no_rank", "no_srr", "no_importance",
                    "no_complementarity", "no_inconsistency"]
    assert [v.key for v in ablation.select(variants=["eq12"])] == ["full", "eq12"]
    assert len(ablation.select(["6"])) == 7
    with pytest.raises(ConfigError, match="unknown table"):
        ablation.select(["3"])
    with pytest.raises(ConfigError, match="unknown variant"):
        ablation.select(variants=["w/o everything"])
    with pytest.raises(ConfigError, match="at least one"):
        ablation.select()


def test_paired_statistics_match_scipy():
    full = {0: 50.0, 1: 52.0, 2: 51.0}
    worse = {0: 47.0, 1: 48.5, 2: 48.0}
    p = ablation.paired(worse, full)
    d = np.array([-3.0, -3.5, -3.0])
    assert p["delta"] == round(d.mean(), 2) and p["n"] == 3 and p["same_sign"] == 3
    assert p["p"] == pytest.approx(stats.ttest_rel([47, 48.5, 48], [50, 52, 51]).pvalue, abs=1e-4)
    assert not p["inside_spread"]
    assert ablation.reading(p).startswith("lower, beyond the seed spread; 3/3 seeds agree")
    noisy = ablation.paired({0: 51.0, 1: 50.5, 2: 52.5}, full)
    assert noisy["inside_spread"] and "inside the seed spread" in ablation.reading(noisy)
    # only seeds both rows have are paired
    assert ablation.paired({0: 1.0, 7: 2.0}, full)["n"] == 1


def test_grid_resumes_shares_identical_runs_and_appends(data_root, tmp_path):
    variants = ablation.select(variants=["no_srr", "or", "no_rank"])
    kw = dict(preset="cpu", overrides=OVER, data_root=data_root, out_dir=tmp_path,
              progress=False, **TINY)
    grid = ablation.run_grid("MIntRec2.0", variants, [0, 1], **kw)
    # "w/o SRR" (Table 2) and "Or" (Table 5) are the same computation: one run folder
    assert grid["summaries"]["no_srr"]["folder"] == grid["summaries"]["or"]["folder"]
    assert grid["trained"] == 3 * 2
    log = tmp_path / "ablations" / "MIntRec2.0" / "cpu" / "results.jsonl"
    first = log.read_text().splitlines()
    assert len(first) == 6 and all(not json.loads(l)["reused"] for l in first)

    again = ablation.run_grid("MIntRec2.0", variants, [0, 1], **kw)
    assert again["trained"] == 0
    for k in grid["summaries"]:
        assert again["summaries"][k]["per_seed"] == grid["summaries"][k]["per_seed"]
    lines = log.read_text().splitlines()
    assert lines[:6] == first and len(lines) == 12          # appended, never rewritten
    assert all(json.loads(l)["reused"] for l in lines[6:])

    df = ablation.compare(again, "F1")
    assert set(df["table"]) == {"2", "5"}
    no_rank = df[df["variant"] == "no_rank"].iloc[0]
    full = again["summaries"]["full"]["per_seed"]
    mine = again["summaries"]["no_rank"]["per_seed"]
    assert no_rank["dF1"] == round(np.mean([b["F1"] - a["F1"] for a, b in zip(full, mine)]), 2)
    assert no_rank["paper_F1"] == 53.30 and no_rank["paper_dF1"] == round(53.30 - 55.35, 2)
    or_row = df[df["variant"] == "or"].iloc[0]
    assert or_row["paper_F1"] == 53.51
    folder = ablation.save(again, df, tmp_path)
    md = (folder / "table.md").read_text()
    assert "Table 2" in md and "Table 5" in md and "w/o L_rank" in md and "53.30" in md

    # a changed setting makes the seeds stale: retrained (default) or refused (strict)
    changed = ablation.run_grid("MIntRec2.0", variants[:2], [0], preset="cpu",
                                overrides={"epochs": 1, "lr": 2e-3}, data_root=data_root,
                                out_dir=tmp_path, progress=False, **TINY)
    assert changed["trained"] == 2


def test_cli_ablate_writes_the_table(data_root, tmp_path, capsys):
    rc = main(["ablate", "--dataset", "MIntRec2.0", "--variants", "no_inconsistency",
               "--seeds", "0", "--set", "epochs=1", "--max-train", "120", "--max-eval", "60",
               "--data-root", str(data_root), "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Table 8" in out and "w/o inconsistency" in out and "one seed" in out
    assert (tmp_path / "ablations" / "MIntRec2.0" / "cpu" / "table.csv").exists()
    rc = main(["ablate", "--tables", "9", "--out", str(tmp_path)])
    assert rc == 2
    assert "unknown table" in capsys.readouterr().err


def test_delta_chart_bars_are_the_mean_paired_difference_with_seed_points():
    import pandas as pd
    from mir_core.plots import delta_chart
    deltas = pd.DataFrame({"row": ["w/o L_rank"] * 3 + ["Or (sum)"] * 3,
                           "seed": [0, 1, 2] * 2,
                           "delta": [-1.0, -2.0, -3.0, 0.5, -0.5, 1.5]})
    fig = delta_chart(deltas, "F1")
    bar, points = fig.data
    assert bar.type == "bar" and list(bar.y) == ["w/o L_rank", "Or (sum)"]
    np.testing.assert_allclose(bar.x, [-2.0, 0.5])
    np.testing.assert_allclose(bar.error_x.array, [1.0, 1.0])           # std over seeds
    assert points.type == "scatter" and len(points.x) == 6
    assert list(points.customdata) == [0, 1, 2, 0, 1, 2]
    assert "F1" in fig.layout.xaxis.title.text
    assert delta_chart(deltas.iloc[:0]).data == ()


def test_one_computation_has_one_run_name():
    from mir_core.training import RunSpec
    assert RunSpec(options={"fusion": "official"}).run_name() == RunSpec().run_name() == "lgsrr-cpu"
    assert RunSpec(overrides={"rank_weight": 1.0}).run_name() == "lgsrr-cpu"
    assert RunSpec(options={"fusion": "eq12"}, overrides={"rank_weight": 0.0}).run_name() == \
        "lgsrr-cpu-fusion=eq12-rank_weight=0.0"
    assert RunSpec(method="text", max_train=10).run_name() == "text-cpu-n10"


def test_grid_leaves_held_seeds_to_their_holder_and_collects_them_last(data_root, tmp_path):
    """Two processes on one grid: a seed the other holds does not stall this one; it trains
    the next rows' seeds first and comes back for the held seed at the end (here the holder
    dies, so it trains it itself)."""
    variants = ablation.select(variants=["no_rank"])          # [full, no_rank]
    assert [v.key for v in variants] == ["full", "no_rank"]
    kw = dict(preset="cpu", overrides=OVER, data_root=data_root, out_dir=tmp_path,
              progress=False, **TINY)
    name = variants[0].spec("MIntRec2.0", "cpu", (0, 1), OVER, **TINY).run_name()
    seed_dir = tmp_path / "runs" / "MIntRec2.0" / name / "seed_0"
    code = ("import sys, time; from pathlib import Path; from mir_core.training.runs import "
            "SeedLock\nlock = SeedLock(Path(sys.argv[1]))\nassert lock.acquire(wait=False) "
            "is None\nprint('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(seed_dir)],
                              stdout=subprocess.PIPE, text=True)
    lines = []

    def log(msg):
        lines.append(msg)
        if "waiting for it" in msg:
            holder.kill()                # the holder dies without finishing the seed
            holder.wait()
    try:
        assert holder.stdout.readline().strip() == "locked"
        grid = ablation.run_grid("MIntRec2.0", variants, [0, 1], log=log, **kw)
    finally:
        holder.kill()
        holder.wait()
    text = "\n".join(lines)
    assert "seed 0: being trained by process" in text and "left to it for now" in text
    results = tmp_path / "ablations" / "MIntRec2.0" / "cpu" / "results.jsonl"
    order = [(r["variant"], r["seed"], r["reused"])
             for r in map(json.loads, results.read_text().splitlines())]
    assert order == [("full", 1, False), ("no_rank", 0, False), ("no_rank", 1, False),
                     ("full", 0, False)]
    assert text.index("left to it for now") < text.index("waiting for it")
    assert grid["trained"] == 4
    assert [r["seed"] for r in grid["summaries"]["full"]["per_seed"]] == [0, 1]
    assert grid["summaries"]["full"]["held"] == {}


def test_only_finished_trains_nothing_and_pairs_common_seeds(data_root, tmp_path):
    kw = dict(preset="cpu", overrides=OVER, data_root=data_root, out_dir=tmp_path,
              progress=False, **TINY)
    ablation.run_grid("MIntRec2.0", ablation.select(variants=["no_rank"]), [0, 1], **kw)
    ablation.run_grid("MIntRec2.0", ablation.select(variants=["no_inconsistency"]), [0], **kw)
    log = tmp_path / "ablations" / "MIntRec2.0" / "cpu" / "results.jsonl"
    before = log.read_text()
    rows = ablation.select(variants=["no_rank", "no_inconsistency", "no_complementarity"])
    g = ablation.run_grid("MIntRec2.0", rows, [0, 1], train=False, **kw)
    assert g["trained"] == 0 and g["left_out"] == ["no_complementarity"]
    assert not (tmp_path / "runs" / "MIntRec2.0" / "lgsrr-cpu-use_complementarity=False-epochs=1-n120-e60").exists()
    assert [r["seed"] for r in g["summaries"]["no_inconsistency"]["per_seed"]] == [0]
    df = ablation.compare(g)
    assert df.set_index("variant").loc["no_inconsistency", "seeds"] == 1
    assert "(1 seeds)" in ablation.markdown(df, g)
    assert log.read_text() == before                     # a report writes no results
    with pytest.raises(ConfigError, match="no finished seed of full"):
        ablation.run_grid("MIntRec2.0", rows, [0], train=False,
                          **{**kw, "out_dir": tmp_path / "empty"})


def test_only_finished_leaves_out_a_row_whose_inputs_are_missing(data_root, tmp_path,
                                                                 monkeypatch):
    """A report (train=False) names a row it cannot validate (A-MESS without label
    descriptions) instead of failing the whole table; training still refuses it first."""
    from mir_core.label_descriptions import LabelDescriptionsError
    monkeypatch.delenv("MIR_LABEL_DESCRIPTIONS", raising=False)
    rows = ablation.select(variants=["amess"])                 # full + amess
    kw = dict(preset="cpu-ft", data_root=data_root, out_dir=tmp_path, progress=False, **TINY)
    logged = []
    with pytest.raises(ConfigError, match="no finished seed of full"):
        ablation.run_grid("MIntRec2.0", rows, [0], train=False, log=logged.append, **kw)
    line = next(m for m in logged if m.startswith("left out (inputs): amess: "))
    assert "no label descriptions file" in line and "MIR_LABEL_DESCRIPTIONS" in line
    assert "\n" not in line and line.endswith(")")      # the whole message, one line
    with pytest.raises(LabelDescriptionsError, match="no label descriptions file"):
        ablation.run_grid("MIntRec2.0", rows, [0], train=True, log=logged.append, **kw)


def test_one_line_cuts_a_long_message_at_a_word():
    from mir_core.data import one_line
    assert one_line(ValueError("bad\n  row 3")) == "bad row 3"
    cut = one_line(ValueError("word " * 200), limit=50)
    assert cut.endswith(" …") and len(cut) <= 52 and "wor …" not in cut
