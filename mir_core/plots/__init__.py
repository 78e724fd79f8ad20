"""Plot functions (pure: data in, plotly Figure out). Widgets in notebooks only wire them up."""
from .core import (confusion_heatmap, importance_by_rank, label_distribution,
                   metric_comparison, training_curves)

__all__ = ["confusion_heatmap", "importance_by_rank", "label_distribution",
           "metric_comparison", "training_curves"]
