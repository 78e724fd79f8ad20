import numpy as np
import pytest
from sklearn.metrics import f1_score

from mir_core.metrics import classification_metrics, format_summary, summarize


def test_six_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    m = classification_metrics(y, p)
    assert set(m) == {"ACC", "F1", "P", "R", "WF1", "WP"}
    assert m["F1"] == pytest.approx(100 * f1_score(y, p, average="macro"), abs=1e-3)
    assert m["WF1"] == pytest.approx(100 * f1_score(y, p, average="weighted"), abs=1e-3)
    assert classification_metrics([1, 2, 3], [1, 2, 3])["ACC"] == 100.0


def test_summarize_mean_std():
    s = summarize([{"ACC": 50.0}, {"ACC": 60.0}], keys=["ACC"])
    assert s["ACC"] == {"mean": 55.0, "std": pytest.approx(7.07, abs=0.01), "n": 2}
    assert "ACC 55.00 ± 7.07" in format_summary(s, keys=["ACC"])
    with pytest.raises(ValueError):
        classification_metrics([], [])
