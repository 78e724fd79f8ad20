"""Models of the workspace, one file each. ``build_cached`` / ``build_finetune`` pick one by
method name so training, ablations and notebooks stay model-agnostic."""
from .lgsrr import LGSRR, CachedConfig, CachedLGSRR, LGSRRConfig, LGSRRHead
from .text_only import CachedTextOnly, TextOnly

METHODS = ("lgsrr", "text")

__all__ = ["LGSRR", "LGSRRConfig", "LGSRRHead", "CachedConfig", "CachedLGSRR",
           "CachedTextOnly", "TextOnly", "METHODS"]
