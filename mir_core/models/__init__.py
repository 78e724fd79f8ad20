"""Models of the workspace, one file each, each registered as a method by one line
(:func:`mir_core.models.registry.register_method`). Importing this package registers them."""
from . import amess, lgsrr, mag_bert, mult, text_only, xmei_qwen  # noqa: F401  (registration)
from .encoders import (FullEncoder, LayerMix, PooledFeatures, SequenceLayers, TopLayers,
                       pool, split_streams)
from .lgsrr import LGSRR, LGSRRConfig, LGSRRHead, LGSRROptions
from .registry import BuildContext, ModelOutput, get_method, methods, register_method
from .text_only import TextOnly

__all__ = ["LGSRR", "LGSRRConfig", "LGSRRHead", "LGSRROptions", "TextOnly",
           "FullEncoder", "LayerMix", "PooledFeatures", "SequenceLayers", "TopLayers", "pool",
           "split_streams",
           "BuildContext", "ModelOutput", "get_method", "methods", "register_method"]
