"""A-MESS label descriptions from a local model: parse rate, speed, and how well they name
their label, with the paper's prompt and few-shot.

For each prompt mode this runs the annotation chain's label step over every label of
``--dataset`` with a fresh reply cache:

* ``paper``: the A-MESS prompt as published (one inline example, Complain);
* ``fewshot``: the first ``--shots`` labels of ``--examples`` (a label-description file,
  by default the paper's GPT-4 file) other than the label asked, as worked chat turns.
  The asked label's own reference descriptions are never shown.

It reports labels with three usable descriptions, the failure reasons, wall time, and,
where ``--examples`` holds the dataset's labels (MIntRec, MIntRec2.0), the retrieval of each
label's generated descriptions among the reference descriptions of all C labels
(:func:`mir_core.label_descriptions.description_retrieval`, MiniLM-L6 sentence embeddings,
cosine): top-1 accuracy (chance 1/C), mean reciprocal rank and the median rank, over the
labels that parsed.

    python benchmarks/label_descriptions.py --dataset MIntRec2.0 --modes paper fewshot \\
        --examples ../shared/data/amess/label_descriptions.json --threads 1

Results: ``outputs/benchmarks/label_descriptions-<dataset>-<model>.json`` (rewritten after
each mode) and each mode's ``label_descriptions.json`` (the format A-MESS reads) beside it, so
runs of two models on one data set keep both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="MIntRec2.0")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--modes", nargs="+", default=["paper", "fewshot"],
                    choices=["paper", "fewshot"])
    ap.add_argument("--examples", default=None,
                    help="label-description file for the few-shot examples and the "
                         "retrieval reference (default: $MIR_LABEL_DESCRIPTIONS)")
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="default: outputs/benchmarks")
    a = ap.parse_args(argv)

    from mir_core import paths
    from mir_core.annotation import AnnotationChain, ChainConfig, make_backend
    from mir_core.data import get_spec
    from mir_core.label_descriptions import (LabelDescriptionsError, description_retrieval,
                                             load_label_descriptions, resolve_path)
    from mir_core.machine import cpu_facts

    spec = get_spec(a.dataset)
    examples = resolve_path(a.examples)
    try:
        reference = load_label_descriptions(spec.labels, spec.name, examples)
    except LabelDescriptionsError:
        reference = None                     # e.g. IEMOCAP-DA: the paper describes none
    out = Path(a.out) if a.out else paths.output_dir() / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    tag = f"label_descriptions-{spec.name}-{Path(a.model).name}"    # a checkpoint folder: its name
    result_path = out / f"{tag}.json"
    result = {"dataset": spec.name, "labels": len(spec.labels), "model": a.model,
              "examples": str(examples), "shots": a.shots, "retries": a.retries,
              "threads": a.threads, "cpu": cpu_facts().ident, "python": platform.python_version(),
              "argv": sys.argv[1:] if argv is None else list(argv), "modes": {}}
    backend = make_backend("local", a.model, num_threads=a.threads)
    for mode in a.modes:
        work = out / f"{tag}-{mode}"
        shutil.rmtree(work, ignore_errors=True)            # fresh cache: every label queried
        work.mkdir(parents=True)
        cfg = ChainConfig(dataset=spec.name, cache_path=work / "replies.jsonl",
                          max_retries=a.retries,
                          label_examples=examples if mode == "fewshot" else None,
                          label_shots=a.shots)
        t0 = time.perf_counter()
        res = AnnotationChain(backend, cfg, log=lambda *x: None).label_descriptions(
            datasets=[spec.name], labels=list(spec.labels))
        wall = time.perf_counter() - t0
        (work / "label_descriptions.json").write_text(json.dumps(
            {"descriptions": res.descriptions, "failures": res.failures}, indent=2))
        reasons: dict[str, int] = {}
        for err in res.failures.values():
            key = err.split(":")[0] if "copy" not in err else "copies the prompt's example(s)"
            key = "repeated descriptions" if "descriptions repeat" in err else key
            reasons[key] = reasons.get(key, 0) + 1
        row = {"ok": len(res.descriptions), "failed": len(res.failures),
               "failure_reasons": reasons, "wall_s": round(wall, 1),
               "attempts": res.stats.attempts,
               "completion_tokens": res.stats.completion_tokens,
               "descriptions": res.descriptions, "failures": res.failures}
        if reference is not None and res.descriptions:
            parsed = [lab for lab in spec.labels if lab in res.descriptions]
            # retrieval among all C references: the unparsed labels keep their reference
            # as a distractor, and have no generated row
            gen = {lab: res.descriptions.get(lab, reference[lab]) for lab in spec.labels}
            table = description_retrieval(gen, reference, list(spec.labels))
            table = table[table["label"].isin(parsed)]
            row["retrieval"] = {
                "n": len(table), "chance_top1": round(1 / len(spec.labels), 4),
                "top1": round(float((table["rank"] == 1).mean()), 4),
                "mrr": round(float((1 / table["rank"]).mean()), 4),
                "median_rank": float(table["rank"].median()),
                "per_label": table.round(4).to_dict("records")}
        result["modes"][mode] = row
        result_path.write_text(json.dumps(result, indent=2))
        r = row.get("retrieval", {})
        print(f"{spec.name} {mode}: {row['ok']}/{len(spec.labels)} labels parsed "
              f"{reasons or ''} in {wall:.0f} s"
              + (f"; retrieval top-1 {r['top1']:.2f} (chance {r['chance_top1']:.2f}), "
                 f"MRR {r['mrr']:.2f}, median rank {r['median_rank']:.0f} of "
                 f"{len(spec.labels)}" if r else ""), flush=True)
    print(f"-> {result_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    raise SystemExit(main())
