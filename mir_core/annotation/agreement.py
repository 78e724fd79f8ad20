"""How far a ranker agrees with the released GPT-3.5 ranks, and Table 7 of LGSRR
(Appendix D: how often each aspect is ranked 1st/2nd/3rd) recomputed from the release.

Orders are (N, 3) arrays of aspect indices (0=A, 1=E, 2=I) from most to least important,
as :attr:`mir_core.data.MIRSplit.rank_order`; a row of -1 marks a sample whose reply could
not be parsed.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..data import ASPECT_SHORT, get_spec, load_split

# Row names as printed in Table 7.
TABLE7_ROWS = ("Speakers' Actions", "Facial Expressions", "Interactions with Others")
TABLE7_COLUMNS = ("Rank@1", "Rank@2", "Rank@3")
# LGSRR Appendix D, Table 7 (rows A, E, I; columns Rank@1, Rank@2, Rank@3).
PAPER_TABLE7: dict[str, tuple[tuple[int, int, int], ...]] = {
    "MIntRec2.0": ((1476, 3814, 875), (523, 1450, 4192), (4166, 901, 1098)),
    "IEMOCAP-DA": ((1675, 3982, 933), (604, 1542, 4444), (4311, 1066, 1213)),
}
# "Always Interaction > Actions > Expressions": the majority order of Table 7.
TRIVIAL_ORDER: tuple[int, int, int] = (2, 0, 1)


def _as_orders(orders, name: str = "orders") -> np.ndarray:
    arr = np.asarray(orders, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected an (N, 3) array of aspect indices, got {arr.shape}")
    valid = arr[:, 0] >= 0
    bad = [i for i in np.flatnonzero(valid) if sorted(arr[i].tolist()) != [0, 1, 2]]
    if bad:
        raise ValueError(f"{name} row {bad[0]}: {arr[bad[0]].tolist()} is not a permutation "
                         "of (0, 1, 2) nor a failure row of -1")
    return arr


def table7(orders) -> pd.DataFrame:
    """Counts of each aspect at Rank@1/2/3 (failure rows skipped), as Table 7."""
    arr = _as_orders(orders)
    arr = arr[arr[:, 0] >= 0]
    counts = [[int((arr[:, r] == a).sum()) for r in range(3)] for a in range(3)]
    return pd.DataFrame(counts, index=list(TABLE7_ROWS), columns=list(TABLE7_COLUMNS))


def paper_table7(dataset: str) -> pd.DataFrame:
    name = get_spec(dataset).name
    if name not in PAPER_TABLE7:
        raise KeyError(f"Table 7 covers {sorted(PAPER_TABLE7)}, not {name!r}")
    return pd.DataFrame([list(r) for r in PAPER_TABLE7[name]], index=list(TABLE7_ROWS),
                        columns=list(TABLE7_COLUMNS))


@dataclass
class Table7Check:
    """Table 7 recomputed from the released ranks next to the paper's numbers."""

    dataset: str
    ours: pd.DataFrame
    paper: pd.DataFrame
    n: int

    @property
    def equal(self) -> bool:
        return bool((self.ours.to_numpy() == self.paper.to_numpy()).all())

    def side_by_side(self) -> pd.DataFrame:
        ours = self.ours.add_suffix(" (release)")
        paper = self.paper.add_suffix(" (paper)")
        cols = [c for pair in zip(ours.columns, paper.columns) for c in pair]
        return pd.concat([ours, paper], axis=1)[cols]


def table7_check(dataset: str, root: str | Path | None = None) -> Table7Check:
    """Recompute Table 7 from the released train ranks of ``dataset``."""
    train = load_split(dataset, "train", root)
    return Table7Check(train.dataset, table7(train.rank_order), paper_table7(dataset), len(train))


# --------------------------------------------------------------------------- agreement
def kendall_tau(a, b) -> float:
    """Kendall's tau between two orders of the same items (no ties): (concordant -
    discordant) / pairs. For 3 items it takes the values -1, -1/3, 1/3, 1."""
    pos_a = {int(x): i for i, x in enumerate(a)}
    pos_b = {int(x): i for i, x in enumerate(b)}
    if set(pos_a) != set(pos_b) or len(pos_a) != len(a) or len(pos_b) != len(b):
        raise ValueError(f"orders {list(a)} and {list(b)} are not permutations of one set")
    items = sorted(pos_a)
    if len(items) < 2:
        raise ValueError("Kendall's tau needs at least two items")
    s = sum(np.sign(pos_a[i] - pos_a[j]) * np.sign(pos_b[i] - pos_b[j])
            for i, j in combinations(items, 2))
    return float(s) / (len(items) * (len(items) - 1) / 2)


@dataclass
class Agreement:
    """Agreement of predicted orders with reference orders."""

    n: int                  # samples compared
    n_valid: int            # predictions that parsed
    top1: float             # first choices equal, over valid predictions
    top1_all: float         # the same with failures counted as disagreement
    exact: float            # whole order equal, over valid predictions
    mean_tau: float         # mean Kendall tau over valid predictions
    confusion: np.ndarray   # (3, 3): rows reference first choice, columns predicted

    @property
    def coverage(self) -> float:
        return self.n_valid / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        return {"n": self.n, "n_valid": self.n_valid, "coverage": self.coverage,
                "top1": self.top1, "top1_all": self.top1_all, "exact": self.exact,
                "mean_tau": self.mean_tau, "confusion": self.confusion.tolist()}

    def confusion_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.confusion, index=[f"GPT-3.5 {s}" for s in ASPECT_SHORT],
                            columns=[f"pred {s}" for s in ASPECT_SHORT])


def agreement(pred, ref) -> Agreement:
    """Top-1 agreement, exact-order agreement, mean Kendall tau and the 3x3 confusion of
    first choices of ``pred`` against ``ref`` (both (N, 3); -1 rows in ``pred`` are
    failures; ``ref`` must be complete)."""
    p, r = _as_orders(pred, "pred"), _as_orders(ref, "ref")
    if len(p) != len(r):
        raise ValueError(f"pred has {len(p)} rows, ref {len(r)}")
    if (r[:, 0] < 0).any():
        raise ValueError("ref has failure rows; the reference must be complete")
    valid = p[:, 0] >= 0
    n, nv = len(p), int(valid.sum())
    conf = np.zeros((3, 3), dtype=np.int64)
    for a, b in zip(r[valid, 0], p[valid, 0]):
        conf[a, b] += 1
    if nv == 0:
        nan = float("nan")
        return Agreement(n, 0, nan, 0.0 if n else nan, nan, nan, conf)
    hits = int((p[valid, 0] == r[valid, 0]).sum())
    taus = [kendall_tau(a, b) for a, b in zip(p[valid], r[valid])]
    return Agreement(n, nv, hits / nv, hits / n, float((p[valid] == r[valid]).all(1).mean()),
                     float(np.mean(taus)), conf)


def trivial_orders(n: int, order=TRIVIAL_ORDER) -> np.ndarray:
    """The trivial ranker: the same order for every sample (default I > A > E)."""
    return np.tile(np.asarray(order, dtype=np.int64), (n, 1))


def agreement_table(rankers: Mapping[str, np.ndarray], ref) -> pd.DataFrame:
    """One row of agreement numbers per ranker (e.g. the LM and the trivial ranker)."""
    rows = []
    for name, orders in rankers.items():
        a = agreement(orders, ref)
        rows.append({"ranker": name, "n": a.n, "coverage": a.coverage, "top1": a.top1,
                     "top1_all": a.top1_all, "exact": a.exact, "mean_tau": a.mean_tau})
    return pd.DataFrame(rows).set_index("ranker")
