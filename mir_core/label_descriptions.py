"""Label descriptions: M sentences per intent label, the input of A-MESS's Semantic
Synchronization (Sec. III-C), and their sentence embeddings.

    >>> descs = load_label_descriptions(spec.labels, "MIntRec2.0", "label_descriptions.json")
    >>> emb = embed_label_descriptions(descs, spec.labels, "minilm-l6")   # (C, M, D_s)

Where the file comes from: the ``path`` argument, else the environment variable
``MIR_LABEL_DESCRIPTIONS``. Accepted formats (JSON unless noted):

* the A-MESS paper's transcription (``/work/shared/data/amess/label_descriptions.json``):
  ``{dataset: {label: [d1, d2, d3]}}``; the dataset key is matched like the data layer's
  names (``MIntRec2.0`` / ``mintrec2``);
* a flat ``{label: [d1, ..., dM]}`` for one dataset;
* the annotation chain's label step (:meth:`AnnotationChain.label_descriptions`), either as
  ``python -m mir_core annotate --steps labels --out DIR`` writes it,
  ``DIR/label_descriptions.json`` = ``{"descriptions": {label: [...]}, "failures":
  {label: error}}``, or straight from its reply cache (``replies.jsonl``, JSON lines:
  the records of step ``labels`` that parsed, ``sample_id`` = the label, ``parsed`` = the
  descriptions; the newest record of each label counts, and records of more than one
  backend/model are refused rather than mixed).

Labels are matched exactly first, then case-insensitively after normalisation (strip,
lowercase, ``-``/``_`` as spaces, spaces collapsed, British ``-ise`` -> ``-ize``, a
leading "asking for" -> "ask for") and a small alias table, so the paper's ``Apologize`` /
``Ask for Help`` / ``Ask for Opinions`` find the data files' ``Apologise`` / ``Ask for
help`` / ``Asking for opinions``. Every label of the dataset must have descriptions: the
error (:class:`LabelDescriptionsError`, a :class:`~mir_core.data.DataError`) is one line
naming the file and every label left without, the expected format and how to make them.

Numbers of descriptions: any M >= 1, but the same M for every label. Labels with differing
counts are refused (not padded): repeating a description would weight it twice among the
positives and the negatives of Eq. 15, which changes the loss silently; the error names
the counts. Make the counts equal (e.g. rerun the annotation chain's label step for the
short labels).

Embeddings: sentence-transformers (the offline ``minilm-l6`` is all-MiniLM-L6-v2, a
sentence-transformers model shipped in a wheel; :func:`mir_core.modelpack.resolve_text_encoder`
finds it), cached in the feature store keyed by the description texts, so a second run
does not load the encoder at all.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data import DataError

ENV_VAR = "MIR_LABEL_DESCRIPTIONS"
LABEL_STEP = "labels"                 # the annotation chain's step name (chain.STEP_LABELS)

FORMAT_HINT = ("expected JSON {dataset: {label: [d1, d2, ...]}} (the A-MESS paper's file), a "
               "flat {label: [d1, d2, ...]}, or the annotation chain's label step output "
               "(python -m mir_core annotate --dataset DATASET --steps labels --out DIR -> "
               "DIR/label_descriptions.json, or its reply cache replies.jsonl)")

# Normalised variant -> normalised canonical form, applied after the generic rules of
# normalise_label (which already cover the paper's three variants: Apologize / Apologise,
# Ask for Help / Ask for help, Ask for Opinions / Asking for opinions).
ALIASES = {
    "ask for opinion": "ask for opinions",
    "asking opinions": "ask for opinions",
    "ask for helps": "ask for help",
}


class LabelDescriptionsError(DataError):
    """Label descriptions missing, malformed or not matching the dataset's labels."""


def normalise_label(label: str) -> str:
    """The matching key of a label: 'Asking for  Opinions' -> 'ask for opinions',
    'Apologise' -> 'apologize', 'Criticise' -> 'criticize'."""
    s = re.sub(r"[-_]+", " ", str(label)).strip().lower()
    s = " ".join(s.split())
    s = re.sub(r"^asking for\b", "ask for", s)
    s = re.sub(r"(?<=\w)is(e|es|ed|ing|ation|ations)\b", r"iz\1", s)   # British -> American
    return ALIASES.get(s, s)


# --------------------------------------------------------------------------- reading
def resolve_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$MIR_LABEL_DESCRIPTIONS``; a one-line error when neither is set or
    the file does not exist."""
    value = str(path) if path not in (None, "") else os.environ.get(ENV_VAR, "")
    if not value:
        raise LabelDescriptionsError(
            f"no label descriptions file: pass one (A-MESS option descriptions=PATH, CLI "
            f"--ablate descriptions=PATH) or set {ENV_VAR}; {FORMAT_HINT}")
    p = Path(value).expanduser()
    if not p.is_file():
        src = "" if path not in (None, "") else f" (from {ENV_VAR})"
        raise LabelDescriptionsError(f"label descriptions file {p}{src} does not exist; "
                                     f"{FORMAT_HINT}")
    return p


def _read_jsonl_cache(p: Path, text: str) -> tuple[dict[str, list], dict[str, str]]:
    """The annotation reply cache: label -> descriptions of the newest parsed record of
    step 'labels'; failures: label -> error of labels whose newest record did not parse."""
    newest: dict[str, dict] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelDescriptionsError(f"{p} line {lineno}: not valid JSON ({e.msg}); "
                                         f"{FORMAT_HINT}") from None
        if not isinstance(rec, dict) or "step" not in rec or "sample_id" not in rec:
            raise LabelDescriptionsError(f"{p} line {lineno}: not a reply-cache record "
                                         f"(no step / sample_id); {FORMAT_HINT}")
        if rec["step"] != LABEL_STEP:
            continue
        lab = str(rec["sample_id"])
        old = newest.get(lab)
        if old is None or float(rec.get("created", 0)) >= float(old.get("created", 0)):
            newest[lab] = rec
    if not newest:
        raise LabelDescriptionsError(f"{p}: the reply cache holds no records of the "
                                     f"annotation step {LABEL_STEP!r}; run python -m mir_core "
                                     "annotate --steps labels first")
    good = {lab: r for lab, r in newest.items() if r.get("ok", True) and r.get("parsed")}
    models = sorted({f"{r.get('backend')}/{r.get('model')}" for r in good.values()})
    if len(models) > 1:
        raise LabelDescriptionsError(
            f"{p}: the newest label descriptions come from several models {models}; write "
            "one model's set with python -m mir_core annotate --steps labels --out DIR and "
            "use DIR/label_descriptions.json")
    fails = {lab: str(r.get("error") or "reply did not parse")
             for lab, r in newest.items() if lab not in good}
    return {lab: r["parsed"] for lab, r in good.items()}, fails


def _dataset_key(name: str) -> str:
    from .data import _ALIASES, _norm
    return _ALIASES.get(_norm(name), _norm(name))


def read_description_file(path: str | Path, dataset: str
                          ) -> tuple[dict[str, list], dict[str, str], str]:
    """(label -> raw description list as written, label -> failure reason, note) for
    ``dataset`` from any accepted format (labels as the file spells them; the note says
    why nothing was found, e.g. the datasets a nested file does hold)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelDescriptionsError(f"cannot read label descriptions file {p}: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if p.suffix == ".jsonl" or e.msg == "Extra data":
            return (*_read_jsonl_cache(p, text), "")
        raise LabelDescriptionsError(f"{p}: not valid JSON ({e.msg}, line {e.lineno}); "
                                     f"{FORMAT_HINT}") from None
    if isinstance(obj, dict) and obj.get("step") == LABEL_STEP and "sample_id" in obj:
        return (*_read_jsonl_cache(p, text), "")         # a cache of one record
    if not isinstance(obj, dict) or not obj:
        raise LabelDescriptionsError(f"{p}: expected a JSON object; {FORMAT_HINT}")
    if isinstance(obj.get("descriptions"), dict) and set(obj) <= {"descriptions", "failures",
                                                                 "datasets"}:
        fails = obj.get("failures") or {}
        return obj["descriptions"], {str(k): str(v) for k, v in fails.items()}, ""
    if all(isinstance(v, dict) for v in obj.values()):   # {dataset: {label: [...]}}
        want = _dataset_key(dataset)
        hits = [k for k in obj if _dataset_key(k) == want]
        if not hits:
            return {}, {}, (f" (it holds the datasets {sorted(obj)}, not {dataset}: add an "
                            f"entry {dataset!r} or point to another file)")
        if len(hits) > 1:
            raise LabelDescriptionsError(f"{p}: several entries {hits} name the dataset "
                                         f"{dataset}; keep one")
        return obj[hits[0]], {}, ""
    if all(isinstance(v, (list, str)) for v in obj.values()):
        return obj, {}, ""
    raise LabelDescriptionsError(f"{p}: mixes label lists and nested objects at the top "
                                 f"level; {FORMAT_HINT}")


def _clean(p: Path, key: str, value) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (not isinstance(items, list) or not items
            or not all(isinstance(d, str) and d.strip() for d in items)):
        raise LabelDescriptionsError(f"{p}: the descriptions of {key!r} must be a non-empty "
                                     f"list of non-empty strings, got {value!r}"[:400])
    return [" ".join(d.split()) for d in items]


def load_label_descriptions(labels: Sequence[str], dataset: str,
                            path: str | Path | None = None) -> dict[str, list[str]]:
    """{label: [d1, ..., dM]} for every label of ``labels`` (the dataset's label names in
    label-id order; the result keeps that order and those spellings). ``path``: the file,
    else ``$MIR_LABEL_DESCRIPTIONS``. One-line :class:`LabelDescriptionsError` for a missing
    file, a malformed one, labels left without descriptions (all named) or differing M."""
    labels = [str(x) for x in labels]
    p = resolve_path(path)
    raw, fails, note = read_description_file(p, dataset)
    exact = {str(k): k for k in raw}
    lower: dict[str, list] = {}
    norm: dict[str, list] = {}
    for k in raw:
        lower.setdefault(str(k).strip().lower(), []).append(k)
        norm.setdefault(normalise_label(k), []).append(k)
    out: dict[str, list[str]] = {}
    missing: list[str] = []
    for lab in labels:
        if lab in exact:
            key = exact[lab]
        else:
            cands = lower.get(lab.strip().lower()) or norm.get(normalise_label(lab)) or []
            if len(cands) > 1:
                raise LabelDescriptionsError(f"{p}: the entries {cands} all match the label "
                                             f"{lab!r} of {dataset}; keep one")
            if not cands:
                missing.append(lab)
                continue
            key = cands[0]
        out[lab] = _clean(p, str(key), raw[key])
    if missing:
        why = ""
        failed = {lab: " ".join(str(fails[lab]).split()) for lab in missing if fails.get(lab)}
        if failed:
            why = " (the annotation chain's reply did not parse for " + ", ".join(
                f"{lab!r}: {err}" for lab, err in failed.items()) + "; rerun its label step)"
        hint = FORMAT_HINT.replace("DATASET", dataset)
        raise LabelDescriptionsError(
            f"{p}: no descriptions for {len(missing)} of the {len(labels)} {dataset} labels "
            f"{missing}{note}{why}; {hint}; labels match case-insensitively, spelling "
            "variants (Apologize/Apologise, Asking for/Ask for) included")
    counts = {lab: len(d) for lab, d in out.items()}
    if len(set(counts.values())) > 1:
        by_m: dict[int, list[str]] = {}
        for lab, m in counts.items():
            by_m.setdefault(m, []).append(lab)
        parts = "; ".join(f"{m} for {ls if len(ls) <= 6 else f'{len(ls)} labels'}"
                          for m, ls in sorted(by_m.items()))
        raise LabelDescriptionsError(
            f"{p}: the {dataset} labels have differing numbers of descriptions ({parts}); "
            "A-MESS needs the same number M for every label (repeating some would weight them "
            "twice in the contrastive loss): give every label the same number")
    return out


def example_descriptions(path: str | Path) -> list[tuple[str, list[str]]]:
    """Every (label, descriptions) pair of a description file in file order, whatever its
    datasets (a nested file's datasets one after another; a label already seen, after
    normalisation, is kept once): the worked examples of the annotation chain's few-shot
    label step (``ChainConfig.label_examples``). One-line error for an unreadable or
    malformed file or one with no labels."""
    p = resolve_path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelDescriptionsError(f"cannot read label examples file {p}: {e}; "
                                     f"{FORMAT_HINT}") from None
    if isinstance(obj, dict) and isinstance(obj.get("descriptions"), dict):
        groups = [obj["descriptions"]]
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        groups = list(obj.values())
    elif isinstance(obj, dict) and obj and all(isinstance(v, (list, str)) for v in obj.values()):
        groups = [obj]
    else:
        raise LabelDescriptionsError(f"{p}: no label descriptions to use as examples; "
                                     f"{FORMAT_HINT}")
    out: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for group in groups:
        for key, value in group.items():
            if normalise_label(key) not in seen:
                seen.add(normalise_label(key))
                out.append((str(key), _clean(p, str(key), value)))
    if not out:
        raise LabelDescriptionsError(f"{p}: no label descriptions to use as examples")
    return out


def descriptions_digest(descs: dict[str, list[str]], labels: Sequence[str]) -> str:
    """sha256 (16 hex) of the descriptions in label order: what a run fingerprint records."""
    blob = json.dumps([[lab, descs[lab]] for lab in labels], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- embedding
def _load_sentence_encoder(name: str, device: str):
    """A sentence-transformers model for an encoder name (offline names through
    :mod:`mir_core.modelpack`, ``local_files_only`` when offline)."""
    from sentence_transformers import SentenceTransformer

    from .modelpack import _hub_error, _is_offline, resolve_text_encoder
    where = resolve_text_encoder(name)
    try:
        return SentenceTransformer(str(where), device=device, local_files_only=_is_offline())
    except (OSError, ValueError) as e:
        raise _hub_error(name, "text", e) from None


def embed_label_descriptions(descs: dict[str, Sequence[str]], labels: Sequence[str],
                             encoder_name: str = "minilm-l6", *, store=None,
                             device: str | None = None, batch_size: int = 64,
                             progress: bool = False) -> torch.Tensor:
    """(C, M, D_s) float32 sentence embeddings of ``descs`` (label -> M descriptions, as
    :func:`load_label_descriptions` returns) in the order of ``labels``. Cached in the
    feature store (``store``; default ``FeatureStore()``) under dataset
    ``label-descriptions``, keyed by the texts, the encoder and sentence-transformers'
    version: a second call with the same texts does not load the encoder."""
    from .features.store import FeatureStore
    from .modelpack import canonical_text_encoder

    labels = [str(x) for x in labels]
    missing = [lab for lab in labels if lab not in descs]
    if missing:
        raise LabelDescriptionsError(f"no descriptions given for the labels {missing}")
    ms = {len(descs[lab]) for lab in labels}
    if len(ms) != 1 or 0 in ms:
        raise LabelDescriptionsError(f"every label needs the same number (>= 1) of "
                                     f"descriptions, got {sorted(ms)}")
    m = ms.pop()
    texts = [str(d) for lab in labels for d in descs[lab]]
    store = store if store is not None else FeatureStore()
    enc = canonical_text_encoder(encoder_name)
    try:
        import importlib.metadata
        st_version = importlib.metadata.version("sentence-transformers")
    except Exception:                  # pragma: no cover - the package is a requirement
        st_version = "unknown"
    loaded = None

    def compute(batch):
        nonlocal loaded
        if loaded is None:
            loaded = _load_sentence_encoder(encoder_name, device or "cpu")
        with torch.no_grad():
            e = loaded.encode(list(batch), batch_size=batch_size, convert_to_numpy=True,
                              show_progress_bar=False)
        return {"embedding": np.asarray(e, dtype=np.float32)}

    out = store.get_or_compute(
        dataset="label-descriptions", split="all", modality="sentence", encoder=enc,
        settings={"library": "sentence-transformers", "version": st_version},
        inputs=texts, compute=compute, chunk_size=4096, progress=progress)
    emb = torch.from_numpy(np.array(out["embedding"], dtype=np.float32))     # (C*M, D_s)
    return emb.view(len(labels), m, -1)


__all__ = ["ENV_VAR", "LabelDescriptionsError", "load_label_descriptions",
           "embed_label_descriptions", "normalise_label", "read_description_file",
           "resolve_path", "descriptions_digest"]


# --------------------------------------------------------------------------- quality
def description_retrieval(generated: dict[str, Sequence[str]],
                          reference: dict[str, Sequence[str]], labels: Sequence[str],
                          encoder_name: str = "minilm-l6", *, store=None):
    """How well generated label descriptions (e.g. a local model's) pick out their label
    among reference descriptions (e.g. the paper's GPT-4 ones): each label's generated
    descriptions, averaged in sentence-embedding space, against every label's averaged
    reference descriptions (cosine, scikit-learn). One row per label of ``labels`` (both
    dicts must hold them all): ``rank`` of its own label among the C references (1: its own
    is the closest), ``own_cos``, the closest reference label ``nearest`` and its
    ``nearest_cos``. ``rank == 1`` averaged is the top-1 retrieval accuracy; a random
    description scores 1/C in expectation."""
    import pandas as pd
    from sklearn.metrics.pairwise import cosine_similarity

    labels = [str(x) for x in labels]
    gen = embed_label_descriptions(generated, labels, encoder_name, store=store).mean(1)
    ref = embed_label_descriptions(reference, labels, encoder_name, store=store).mean(1)
    sim = cosine_similarity(gen.numpy(), ref.numpy())                     # (C, C)
    rows = []
    for i, lab in enumerate(labels):
        order = np.argsort(-sim[i], kind="stable")
        rows.append({"label": lab, "rank": int(np.where(order == i)[0][0]) + 1,
                     "own_cos": float(sim[i, i]), "nearest": labels[int(order[0])],
                     "nearest_cos": float(sim[i, order[0]])})
    return pd.DataFrame(rows)
