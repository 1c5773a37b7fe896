"""DualTalk evaluation metrics (FD, P-FD, MSE, SID, rPCC) for FLAME-56 motion, as used by the TIMAR paper.

Each sequence gives a predicted agent track ``pred``, the ground-truth agent track ``gt`` and, when available,
the ground-truth partner (user) track ``partner``, all ``(T, 56)`` FLAME frames laid out as
expression ``[:, 0:50]``, jaw ``[:, 50:53]`` and head pose ``[:, 53:56]``. Every metric is computed per sequence
and per group, then averaged over sequences; this mirrors DualTalk's ``metric/metric.py`` so that numbers are
comparable with the tables in the DualTalk and TIMAR papers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.linalg import LinAlgWarning, sqrtm
from sklearn.cluster import KMeans

from timar_blender.engine.contract import EXPRESSION, JAW, MOTION_DIM, NECK

# DualTalk's metric names: "pose" is the neck (head) rotation
GROUPS: dict[str, slice] = {"exp": EXPRESSION, "jaw": JAW, "pose": NECK}
SID_K: dict[str, int] = {"exp": 40, "jaw": 10, "pose": 10}
METRICS: tuple[str, ...] = ("fd", "p_fd", "mse", "sid", "sid_gt_fit", "rpcc")
# Multipliers applied only for display; they are the ones the DualTalk / TIMAR tables use.
SCALES: dict[tuple[str, str], float] = {
    ("fd", "exp"): 1.0,
    ("fd", "jaw"): 1e3,
    ("fd", "pose"): 1e2,
    ("p_fd", "exp"): 1.0,
    ("p_fd", "jaw"): 1e3,
    ("p_fd", "pose"): 1e2,
    ("mse", "exp"): 1e1,
    ("mse", "jaw"): 1e3,
    ("mse", "pose"): 1e2,
    ("sid", "exp"): 1.0,
    ("sid", "jaw"): 1.0,
    ("sid", "pose"): 1.0,
    ("sid_gt_fit", "exp"): 1.0,
    ("sid_gt_fit", "jaw"): 1.0,
    ("sid_gt_fit", "pose"): 1.0,
    ("rpcc", "exp"): 1e2,
    ("rpcc", "jaw"): 1e1,
    ("rpcc", "pose"): 1e1,
}
METRIC_LABELS: dict[str, str] = {
    "fd": "FD",
    "p_fd": "P-FD",
    "mse": "MSE",
    "sid": "SID",
    "sid_gt_fit": "SID(gt-fit)",
    "rpcc": "rPCC",
}
_SID_EPS = 1e-6  # DualTalk adds this inside log2 so empty clusters contribute 0 instead of NaN
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def metric_keys() -> list[str]:
    """All keys :func:`sequence_metrics` returns, in table order (metric-major, then exp/jaw/pose)."""
    return [f"{metric}_{group}" for metric in METRICS for group in GROUPS]


def _split_key(key: str) -> tuple[str, str] | None:
    """``"p_fd_jaw"`` -> ``("p_fd", "jaw")``; None for keys that are not metric/group pairs."""
    metric, _, group = key.rpartition("_")
    return (metric, group) if (metric, group) in SCALES else None


def _check_motion(name: str, x: object) -> np.ndarray:
    """Validate one (T, 56) track up front so a bad file fails loudly, naming the culprit, not deep in scipy."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != MOTION_DIM:
        raise ValueError(f"{name} must have shape (T, {MOTION_DIM}) (FLAME exp50+jaw3+pose3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no frames")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN/inf)")
    return arr


def _check_features(name: str, x: object) -> np.ndarray:
    """Coerce a frame matrix to (T, d) float64; a 1-D input is read as T frames of one feature."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (T, d) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (NaN/inf)")
    return arr


def _sqrtm_quiet(mat: np.ndarray) -> np.ndarray:
    """scipy's sqrtm without its singular-matrix warning: a singular product is expected and handled by the caller.

    Called without ``disp``/``blocksize``: both are deprecated since scipy 1.16 (removed in 1.18), and without
    them every scipy version returns just the root.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        with np.errstate(all="ignore"):
            return np.asarray(sqrtm(mat))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), with pytorch-fid's numerical safeguards.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``. If the matrix root is not finite (nearly
    singular product), it is retried with ``eps * I`` added to both covariances; the trace terms keep the
    unregularised covariances, exactly as the reference implementation does. A complex root whose diagonal has
    an imaginary part above 1e-3 is an error; otherwise the (numerical-noise) imaginary part is dropped.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must both be {(mu1.shape[0],) * 2}, got {sigma1.shape} and {sigma2.shape}")

    diff = mu1 - mu2
    covmean = _sqrtm_quiet(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm_quiet((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame mean and covariance (``np.cov(rowvar=False)``, i.e. N-1 normalisation, like DualTalk)."""
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def fd(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between the frame distributions of two (T, d) arrays (frames are samples)."""
    x = _check_features("x", x)
    y = _check_features("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y differ in feature count: {x.shape[1]} vs {y.shape[1]}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("fd needs at least 2 frames per array to estimate a covariance")
    mu1, sigma1 = _stats(x)
    mu2, sigma2 = _stats(y)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def sid(fit: np.ndarray, assign: np.ndarray, k: int) -> float:
    """Shannon index of diversity (bits): entropy of how ``assign``'s frames spread over k-means clusters of ``fit``.

    DualTalk fits KMeans(k, random_state=0) on one track and histograms the other's cluster labels; a collapsed
    (static) motion lands in few clusters and scores low. When ``fit`` has fewer distinct frames than ``k``,
    k-means cannot form k clusters, so ``k`` is lowered to that count and a RuntimeWarning says so.
    """
    fit = _check_features("fit", fit)
    assign = _check_features("assign", assign)
    if fit.shape[1] != assign.shape[1]:
        raise ValueError(f"fit and assign differ in feature count: {fit.shape[1]} vs {assign.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    distinct = int(np.unique(fit, axis=0).shape[0])
    if distinct < k:
        warnings.warn(
            f"SID: fit data has {fit.shape[0]} frames / {distinct} distinct rows < k={k}; using k={distinct}",
            RuntimeWarning,
            stacklevel=2,
        )
        k = distinct
    labels = KMeans(n_clusters=k, random_state=0, n_init="auto").fit(fit).predict(assign)
    hist = np.bincount(labels, minlength=k).astype(np.float64)
    hist /= hist.sum()
    return float(-np.sum(hist * np.log2(hist + _SID_EPS)))


def rpcc(gt: np.ndarray, pred: np.ndarray, partner: np.ndarray) -> float:
    """Residual Pearson correlation: |corr(gt, partner) - corr(pred, partner)| on flattened tracks.

    Measures whether the prediction reproduces how strongly the real listener/speaker co-varies with the partner.
    NaN when a flattened track is constant (its correlation is undefined).
    """
    g = np.asarray(gt, dtype=np.float64).reshape(-1)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    a = np.asarray(partner, dtype=np.float64).reshape(-1)
    if not (g.size == p.size == a.size):
        raise ValueError(f"gt, pred and partner must have the same size, got {g.size}, {p.size}, {a.size}")
    with np.errstate(invalid="ignore", divide="ignore"):
        pcc_gt = np.corrcoef(g, a)[0, 1]
        pcc_pred = np.corrcoef(p, a)[0, 1]
    return float(abs(pcc_gt - pcc_pred))


def sequence_metrics(pred: np.ndarray, gt: np.ndarray, partner: np.ndarray | None = None) -> dict[str, float]:
    """All metrics for one sequence, keyed ``"<metric>_<group>"`` (see :func:`metric_keys`).

    Tracks are cropped to the shortest length first (DualTalk does the same, since predicted and extracted
    tracks can differ by a frame or two). P-FD and rPCC need the partner track and are NaN without it.
    """
    pred = _check_motion("pred", pred)
    gt = _check_motion("gt", gt)
    tracks = [pred, gt]
    if partner is not None:
        partner = _check_motion("partner", partner)
        tracks.append(partner)
    length = min(t.shape[0] for t in tracks)
    if length < 2:
        raise ValueError(f"need at least 2 common frames after cropping to the shortest track, got {length}")
    pred, gt = pred[:length], gt[:length]
    if partner is not None:
        partner = partner[:length]

    out = {key: math.nan for key in metric_keys()}
    for group, cols in GROUPS.items():
        p, g = pred[:, cols], gt[:, cols]
        out[f"fd_{group}"] = fd(p, g)
        out[f"mse_{group}"] = float(np.mean((p - g) ** 2))
        out[f"sid_{group}"] = sid(p, g, SID_K[group])
        out[f"sid_gt_fit_{group}"] = sid(g, p, SID_K[group])
        if partner is not None:
            a = partner[:, cols]
            out[f"p_fd_{group}"] = fd(np.concatenate([a, g], axis=-1), np.concatenate([a, p], axis=-1))
            out[f"rpcc_{group}"] = rpcc(g, p, a)
    return out


def average(per_sequence: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over sequences, ignoring NaNs; a metric that is NaN everywhere stays NaN.

    NaN-aware so one sequence without a partner (or with a constant track) does not poison the whole column.
    """
    if len(per_sequence) == 0:
        raise ValueError("average() needs at least one sequence")
    keys: list[str] = []
    for row in per_sequence:
        keys.extend(k for k in row if k not in keys)
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([row.get(key, math.nan) for row in per_sequence], dtype=np.float64)
        finite = values[~np.isnan(values)]
        out[key] = float(finite.mean()) if finite.size else math.nan
    return out


def scaled(metrics: Mapping[str, float]) -> dict[str, float]:
    """Apply the reporting multipliers of :data:`SCALES`; keys without a scale pass through unchanged."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        split = _split_key(key)
        out[key] = float(value) * SCALES[split] if split else float(value)
    return out


def _scale_label(scale: float) -> str:
    """1 -> '×1', 10 -> '×10', 1000 -> '×10³'."""
    exponent = round(math.log10(scale))
    if exponent in (0, 1) or not math.isclose(10.0**exponent, scale):
        return f"×{scale:g}"
    return "×10" + str(exponent).translate(_SUPERSCRIPT)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def markdown_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of averaged metrics (label -> raw values); scales are applied here and shown in the header.

    FD, P-FD, MSE and rPCC: lower is better; SID: higher is better. NaN or missing values print as "n/a".
    """
    keys = metric_keys()
    headers = [
        f"{METRIC_LABELS[metric]} {group} {_scale_label(SCALES[(metric, group)])}"
        for metric in METRICS
        for group in GROUPS
    ]
    lines = [
        "| Method | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
    ]
    for label, raw in rows.items():
        values = scaled(raw)
        cells = [_fmt(values.get(key)) for key in keys]
        name = str(label).replace("|", "\\|")  # a pipe in a label would split the row
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
