"""Explanation metrics from maintained libraries (optional imports): BLEU-4 (sacrebleu),
ROUGE-L (rouge-score), METEOR (nltk, needs its WordNet data), BERTScore (bert-score with the
offline MiniLM encoder of :mod:`mir_core.modelpack`), CIDEr (pycocoevalcap's Cider, its IDF
from the evaluated references). A metric whose library or data is missing is ``None`` and
its reason is in ``unavailable``; nothing is computed by hand.
"""
from __future__ import annotations

import re
from typing import Sequence

BERTSCORE_ENCODER = "minilm-l6"


def _tok(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", (s or "").lower()))


def explanation_metrics(hyps: Sequence[str], refs: Sequence[str],
                        bertscore_encoder: str = BERTSCORE_ENCODER) -> dict:
    """Corpus-level scores of generated explanations against one reference each."""
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    hyps = [h or "" for h in hyps]
    out: dict = {"n": len(refs), "unavailable": {}}
    try:
        import sacrebleu
        out["BLEU-4"] = round(sacrebleu.corpus_bleu(hyps, [list(refs)]).score / 100.0, 4)
    except ImportError as e:
        out["BLEU-4"] = None
        out["unavailable"]["BLEU-4"] = f"pip install sacrebleu ({e})"
    try:
        from rouge_score import rouge_scorer
        sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        vals = [sc.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
        out["ROUGE-L"] = round(sum(vals) / len(vals), 4)
    except ImportError as e:
        out["ROUGE-L"] = None
        out["unavailable"]["ROUGE-L"] = f"pip install rouge-score ({e})"
    try:
        import nltk
        from nltk.translate.meteor_score import meteor_score
        nltk.data.find("corpora/wordnet")
        vals = [meteor_score([r.split()], h.split()) for h, r in zip(map(_tok, hyps),
                                                                     map(_tok, refs))]
        out["METEOR"] = round(sum(vals) / len(vals), 4)
    except ImportError as e:
        out["METEOR"] = None
        out["unavailable"]["METEOR"] = f"pip install nltk ({e})"
    except LookupError:
        out["METEOR"] = None
        out["unavailable"]["METEOR"] = ("nltk's METEOR needs the WordNet corpus "
                                        "(nltk.download('wordnet')), which no maintained PyPI "
                                        "package ships; not available offline")
    try:
        import bert_score

        from .. import modelpack
        path = str(modelpack.resolve_text_encoder(bertscore_encoder))
        from transformers import AutoConfig
        layers = AutoConfig.from_pretrained(path).num_hidden_layers
        _, _, f1 = bert_score.score(list(hyps), list(refs), model_type=path, num_layers=layers,
                                    verbose=False, batch_size=32, device="cpu")
        out["BERTScore"] = round(float(f1.mean()), 4)
        out["BERTScore_encoder"] = bertscore_encoder
    except ImportError as e:
        out["BERTScore"] = None
        out["unavailable"]["BERTScore"] = f"pip install bert-score ({e})"
    except Exception as e:                      # missing offline weights
        out["BERTScore"] = None
        out["unavailable"]["BERTScore"] = f"{type(e).__name__}: {e}"
    try:
        from pycocoevalcap.cider.cider import Cider
        gts = {i: [_tok(r)] for i, r in enumerate(refs)}
        res = {i: [_tok(h) or "empty"] for i, h in enumerate(hyps)}
        score, _ = Cider().compute_score(gts, res)
        out["CIDEr"] = round(float(score), 4)
    except ImportError as e:
        out["CIDEr"] = None
        out["unavailable"]["CIDEr"] = f"pip install pycocoevalcap ({e})"
    return out
