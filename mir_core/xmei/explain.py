"""Explanation metrics from maintained libraries (optional imports): BLEU-4 (sacrebleu),
ROUGE-L (rouge-score), METEOR (METEOR 1.5 as the COCO caption evaluation runs it: the jar that
pycocoevalcap ships, which needs Java; else nltk's, which needs its WordNet data), BERTScore
(bert-score with the offline MiniLM encoder of :mod:`mir_core.modelpack`), CIDEr
(pycocoevalcap's Cider, its IDF from the evaluated references). A metric whose library or
data is missing is ``None`` and its reason is in ``unavailable``; nothing is computed by hand.
"""
from __future__ import annotations

import re
import shutil
from typing import Sequence

BERTSCORE_ENCODER = "minilm-l6"


def _tok(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", (s or "").lower()))


def _meteor(hyps: list[str], refs: list[str]) -> tuple[float | None, str, str]:
    """(corpus METEOR, implementation, "") or (None, "", why it is unavailable)."""
    reasons = []
    try:
        from pycocoevalcap.meteor.meteor import Meteor
        if shutil.which("java") is None:
            raise FileNotFoundError("no 'java' on PATH")
        m = Meteor()                            # java -jar meteor-1.5.jar -stdio
        try:
            score, _ = m.compute_score({i: [r] for i, r in enumerate(refs)},
                                       {i: [h or "empty"] for i, h in enumerate(hyps)})
        finally:
            del m                               # its __del__ ends the Java process
        return round(float(score), 4), "METEOR 1.5 (pycocoevalcap's jar, Java)", ""
    except ImportError as e:
        reasons.append(f"pip install pycocoevalcap ({e})")
    except (OSError, ValueError) as e:          # no java / the jar died (empty reply)
        reasons.append("pycocoevalcap's METEOR 1.5 needs Java (apt install "
                       f"default-jre-headless): {type(e).__name__}: {e}")
    try:
        import nltk
        from nltk.translate.meteor_score import meteor_score
        nltk.data.find("corpora/wordnet")
        vals = [meteor_score([r.split()], h.split()) for h, r in zip(hyps, refs)]
        return round(sum(vals) / len(vals), 4), "nltk meteor_score (WordNet)", ""
    except ImportError as e:
        reasons.append(f"pip install nltk ({e})")
    except LookupError:
        reasons.append("nltk's METEOR needs the WordNet corpus (nltk.download('wordnet'))")
    return None, "", "; ".join(reasons)


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
    out["METEOR"], impl, why = _meteor(list(map(_tok, hyps)), list(map(_tok, refs)))
    if why:
        out["unavailable"]["METEOR"] = why
    else:
        out["METEOR_impl"] = impl
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
