"""Plot functions (pure: data in, plotly Figure out). Widgets in notebooks only wire them up."""
from .ablation import delta_chart
from .cases import (attention_map, case_card, confusion_heatmap, importance_heatmap,
                    inspector_figure, rank_statistics, token_attribution, weights_bar)
from .core import importance_by_rank, label_distribution, metric_comparison, training_curves
from .xmei import lq_attention_map

__all__ = ["attention_map", "case_card", "confusion_heatmap", "delta_chart", "importance_by_rank",
           "importance_heatmap", "inspector_figure", "label_distribution", "lq_attention_map",
           "metric_comparison", "rank_statistics", "token_attribution", "training_curves",
           "weights_bar"]
