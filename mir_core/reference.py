"""Numbers published in the LGSRR paper (../shared/seeds/lgsrr_paper.txt) and the A-MESS paper
(../shared/seeds/a_mess_paper.txt), for side-by-side comparison in notebooks and docs.
Metric order: ACC, F1, P, R, WF1, WP (A-MESS publishes the first four only)."""
from __future__ import annotations

from .metrics import METRICS


def _rows(table: dict[str, tuple]) -> dict[str, dict[str, float]]:
    return {name: dict(zip(METRICS, vals)) for name, vals in table.items()}


# Table 1: main results.
TABLE1 = {
    "MIntRec2.0": _rows({
        "MISA": (55.16, 49.51, 51.80, 49.92, 55.05, 57.06),
        "MAG-BERT": (60.38, 54.74, 57.51, 54.54, 59.61, 60.00),
        "MulT": (60.66, 54.12, 58.02, 53.77, 59.55, 60.12),
        "TCL-MAP": (58.24, 52.25, 54.28, 52.41, 57.24, 57.55),
        "SDIF-DA": (58.06, 51.95, 53.17, 52.16, 57.47, 57.85),
        "MIntOOD": (58.25, 51.73, 56.79, 50.99, 57.11, 58.65),
        "LGSRR": (60.46, 55.35, 59.33, 55.09, 59.72, 60.85),
    }),
    "IEMOCAP-DA": _rows({
        "MISA": (73.76, 72.26, 73.03, 72.51, 73.59, 73.87),
        "MAG-BERT": (74.25, 72.07, 73.18, 72.33, 74.03, 74.28),
        "MulT": (73.74, 72.28, 73.40, 72.21, 73.66, 74.15),
        "TCL-MAP": (74.37, 72.63, 74.02, 72.39, 74.21, 74.76),
        "SDIF-DA": (74.19, 72.34, 73.76, 72.39, 74.04, 74.77),
        "MIntOOD": (74.56, 71.31, 72.70, 70.89, 74.40, 74.65),
        "LGSRR": (74.95, 72.99, 74.27, 72.74, 74.88, 75.47),
    }),
}

# Table 2: ablations of the modules.
TABLE2 = {
    "MIntRec2.0": _rows({
        "w/o LGSE": (58.57, 52.83, 54.37, 52.72, 58.22, 58.69),
        "LGSE (VideoLLaMA)": (60.27, 54.91, 57.07, 54.78, 59.56, 60.00),
        "LGSE (Qwen2-VL)": (59.59, 54.62, 56.63, 54.58, 58.89, 59.20),
        "w/o Lrank": (58.55, 53.30, 55.43, 53.23, 58.07, 58.98),
        "w/o SRR": (60.04, 54.31, 55.98, 54.47, 59.34, 59.82),
        "Full": (60.46, 55.35, 59.33, 55.09, 59.72, 60.85),
    }),
    "IEMOCAP-DA": _rows({
        "w/o LGSE": (74.55, 70.40, 71.32, 70.64, 74.40, 74.73),
        "LGSE (VideoLLaMA)": (74.26, 71.62, 72.51, 71.46, 74.14, 74.55),
        "LGSE (Qwen2-VL)": (74.54, 72.19, 73.05, 72.43, 74.42, 75.05),
        "w/o Lrank": (73.69, 71.50, 72.38, 71.63, 73.54, 74.02),
        "w/o SRR": (74.57, 71.80, 71.82, 72.43, 74.44, 74.63),
        "Full": (74.95, 72.99, 74.27, 72.74, 74.88, 75.47),
    }),
}

# Table 5: classic relations (MIntRec2.0 only).
TABLE5 = {"MIntRec2.0": _rows({
    "Or": (59.46, 53.51, 54.69, 53.44, 58.90, 59.12),
    "And": (59.76, 54.08, 56.07, 54.01, 59.02, 59.36),
    "Not": (59.53, 54.58, 55.98, 54.46, 59.04, 59.31),
    "Combination": (59.63, 54.13, 56.77, 54.95, 59.06, 59.41),
    "LGSRR": (60.46, 55.35, 59.33, 55.09, 59.72, 60.85),
})}

# Table 6: more semantic aspects.
TABLE6 = {
    "MIntRec2.0": _rows({
        "A+E+I+TMS": (58.99, 53.61, 55.62, 53.70, 58.27, 58.79),
        "A+E+I+TMS+IS": (59.03, 53.26, 56.24, 53.22, 58.27, 59.29),
        "A+E+I+TMS+IS+SD": (59.00, 53.63, 56.29, 53.25, 58.25, 58.94),
        "LGSRR (A+E+I)": (60.46, 55.35, 59.33, 55.09, 59.72, 60.85),
    }),
    "IEMOCAP-DA": _rows({
        "A+E+I+TMS": (73.41, 70.41, 72.37, 69.66, 73.27, 73.69),
        "A+E+I+TMS+IS": (73.24, 69.69, 70.69, 69.41, 73.09, 73.28),
        "A+E+I+TMS+IS+SD": (73.96, 70.46, 72.57, 69.71, 73.79, 74.33),
        "LGSRR (A+E+I)": (74.95, 72.99, 74.27, 72.74, 74.88, 75.47),
    }),
}

# Table 7: LLM ranking counts (Rank@1, Rank@2, Rank@3) per aspect, train split.
TABLE7 = {
    "MIntRec2.0": {"Speakers' Actions": (1476, 3814, 875),
                   "Emotions and Facial Expressions": (523, 1450, 4192),
                   "Interaction with Others": (4166, 901, 1098)},
    "IEMOCAP-DA": {"Speakers' Actions": (1675, 3982, 933),
                   "Emotions and Facial Expressions": (604, 1542, 4444),
                   "Interaction with Others": (4311, 1066, 1213)},
}

# Table 8: ablations of the reasoning relations.
TABLE8 = {
    "MIntRec2.0": _rows({
        "w/o Relative Importance": (58.76, 52.99, 54.11, 52.84, 58.21, 58.31),
        "w/o Complementarity": (58.80, 53.93, 55.90, 53.75, 58.28, 58.96),
        "w/o Inconsistency": (59.53, 53.88, 56.39, 54.01, 58.72, 59.30),
        "Full": (60.46, 55.35, 59.33, 55.09, 59.72, 60.85),
    }),
    "IEMOCAP-DA": _rows({
        "w/o Relative Importance": (74.65, 72.29, 73.41, 72.02, 74.56, 74.91),
        "w/o Complementarity": (73.67, 70.85, 72.40, 70.43, 73.49, 73.86),
        "w/o Inconsistency": (74.81, 71.78, 72.26, 72.31, 74.65, 75.03),
        "Full": (74.95, 72.99, 74.27, 72.74, 74.88, 75.47),
    }),
}

# Table 4: LGSRR against MLLMs fine-tuned on IEMOCAP-DA (the XMEI-Qwen setting, issue #13).
TABLE4 = {
    "IEMOCAP-DA": _rows({
        "Qwen2-VL (SFT)": (68.10, 59.85, 56.91, 66.75, 67.09, 68.72),
        "VideoLLaMA2 (SFT)": (71.07, 68.57, 71.90, 68.91, 71.32, 73.62),
        "LGSRR": (74.95, 72.99, 74.27, 72.74, 74.88, 75.47),
    }),
}

# A-MESS (../shared/seeds/a_mess_paper.txt), Table I: in-scope intent classification, four
# metrics only (ACC, F1, P, R; no weighted scores published). The MIntRec2.0 baselines there
# differ slightly from LGSRR's Table 1 (MAG-BERT 60.58 / 55.17 vs 60.38 / 54.74). The text
# calls A-MESS's 60.10 on MIntRec2.0 its recall; the table's column order makes it P.
AMESS_TABLE1 = {
    "MIntRec": _rows({
        "MulT": (72.52, 69.25, 70.25, 69.24),
        "MAG-BERT": (72.65, 68.64, 69.08, 69.28),
        "TCL-MAP": (73.54, 69.48, 71.09, 70.27),
        "CAGC": (73.39, 70.09, 71.21, 70.39),
        "A-MESS": (74.12, 70.49, 72.95, 69.94),
    }),
    "MIntRec2.0": _rows({
        "MulT": (60.66, 54.12, 58.02, 53.77),
        "MAG-BERT": (60.58, 55.17, 57.78, 55.10),
        "TCL-MAP": (61.97, 56.09, 58.14, 53.42),
        "A-MESS": (62.39, 55.91, 60.10, 55.93),
    }),
}

# A-MESS Sec. IV-E: the ablation of its two modules (MIntRec only).
AMESS_ABLATION = {
    "MIntRec": _rows({
        "w/o A-ME": (73.24, 69.58, 70.07, 69.09),
        "w/o SS": (72.88, 68.87, 69.30, 69.39),
        "w/o SS and A-ME": (71.95, 68.34, 68.78, 69.08),
        "A-MESS": (74.12, 70.49, 72.95, 69.94),
    }),
}
