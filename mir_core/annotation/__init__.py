"""LLM annotation chain of LGSRR (Sec. 3.1, Appendix C-D) and A-MESS label descriptions.

* :mod:`.prompts`   - Templates 1-3 and the A-MESS prompt;
* :mod:`.parsing`   - rank / cue / label-description parsing, cue normalisation;
* :mod:`.backends`  - local transformers LM, OpenAI-compatible HTTP API, the LGSRR release;
* :mod:`.cache`     - crash-safe JSONL reply cache;
* :mod:`.chain`     - the resumable steps 1-3 and the label descriptions;
* :mod:`.agreement` - agreement with the released GPT-3.5 ranks, Table 7;
* :mod:`.batch`     - the batch entry point (``python -m mir_core annotate``): progress bars,
  run statistics appended next to the cache.
"""
from .agreement import (PAPER_TABLE7, TRIVIAL_ORDER, Agreement, Table7Check, agreement,
                        agreement_table, kendall_tau, paper_table7, table7, table7_check,
                        trivial_orders)
from .backends import (LOCAL_MODELS, Backend, BackendError, LocalLM, LocalLMConfig,
                       OpenAIChatBackend, OpenAIConfig, ReleasedBackend, Reply, Scores,
                       UnsupportedError, converted_model_dir, ensure_converted, make_backend)
from .cache import CacheError, CacheRecord, ReplyCache, prompt_sha256
from .chain import (LOGLIK_NORMS, RANK_MODES, AnnotationChain, ChainConfig, CueDiscovery,
                    Descriptions, LabelDescriptions, Ranks, RunStats, StepError, StepProgress,
                    loglik_orders)
from .parsing import (RankParse, extract_cues, normalise_cue, order_to_text,
                      parse_label_descriptions, parse_rank)
from .prompts import CANONICAL_CUES, TEMPLATE1, TEMPLATE2_HEAD, TEMPLATE3

__all__ = [
    "PAPER_TABLE7", "TRIVIAL_ORDER", "Agreement", "Table7Check", "agreement", "agreement_table",
    "kendall_tau", "paper_table7", "table7", "table7_check", "trivial_orders",
    "LOCAL_MODELS", "Backend", "BackendError", "LocalLM", "LocalLMConfig", "OpenAIChatBackend",
    "OpenAIConfig", "ReleasedBackend", "Reply", "Scores", "UnsupportedError", "ensure_converted",
    "converted_model_dir",
    "make_backend", "CacheError", "CacheRecord", "ReplyCache", "prompt_sha256", "RANK_MODES",
    "LOGLIK_NORMS", "loglik_orders",
    "AnnotationChain", "ChainConfig", "CueDiscovery", "Descriptions", "LabelDescriptions",
    "Ranks", "RunStats", "StepError", "StepProgress", "RankParse", "extract_cues", "normalise_cue",
    "order_to_text", "parse_label_descriptions", "parse_rank", "CANONICAL_CUES", "TEMPLATE1",
    "TEMPLATE2_HEAD", "TEMPLATE3",
]
