"""Tests for model_export.metrics against closed-form values computed by hand on tiny arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg

from model_export import metrics as m

EPS = 1e-6


def _h(*probs: float) -> float:
    """DualTalk's SID entropy for a given histogram (log2 with the 1e-6 offset)."""
    return -sum(p * math.log2(p + EPS) for p in probs)


# --------------------------------------------------------------------------- Fréchet distance


def test_fd_1d_gaussians_closed_form():
    # (0 - 2)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 4 + 5 - 4 = 5
    assert m.frechet_distance(0.0, 1.0, 2.0, 4.0) == pytest.approx(5.0, abs=1e-12)
    # symmetric in its two distributions
    assert m.frechet_distance(2.0, 4.0, 0.0, 1.0) == pytest.approx(5.0, abs=1e-12)


def test_fd_diagonal_2d_closed_form():
    # diff^2 = 1 + 4 = 5; traces = 1 + 4 + 9 + 16 = 30; sqrt(diag(9, 64)) = diag(3, 8) -> 2 * 11 = 22
    value = m.frechet_distance(np.array([0.0, 0.0]), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([9.0, 16.0]))
    assert value == pytest.approx(13.0, abs=1e-10)


def test_fd_from_frames_uses_unbiased_covariance():
    # x: mean 1, var (N-1) = ((-1)^2 + 1^2) / 1 = 2; y: mean 3, var = (4 + 4) / 1 = 8
    # FD = (1 - 3)^2 + 2 + 8 - 2 * sqrt(16) = 4 + 10 - 8 = 6   (population variance would give 4 + 5 - 4 = 5)
    assert m.fd(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(6.0, abs=1e-10)
    assert m.fd(np.array([0.0, 2.0]), np.array([1.0, 5.0])) == pytest.approx(6.0, abs=1e-10)  # 1-D = one feature


def test_fd_identical_sets_is_zero_and_shift_adds_squared_offset():
    x = np.random.default_rng(0).normal(size=(40, 5))
    assert m.fd(x, x) == pytest.approx(0.0, abs=1e-8)
    # a constant shift c leaves the covariance alone: FD = ||c||^2 = 5 * 0.3^2 = 0.45
    assert m.fd(x, x + 0.3) == pytest.approx(0.45, abs=1e-8)


def test_fd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mean"):
        m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="covariances"):
        m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="feature count"):
        m.fd(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2 frames"):
        m.fd(np.zeros((1, 2)), np.zeros((4, 2)))


def test_fd_natural_singular_product_takes_regularised_path():
    # Two frames each: cov = a a^T / 2 with a = x1 - x0 = (-3, -1, 0), and b b^T / 2 with b = y1 - y0 = (2, -1, -1).
    x = np.array([[2.0, -1.0, 2.0], [-1.0, -2.0, 2.0]])
    y = np.array([[0.0, -1.0, 2.0], [2.0, -2.0, 1.0]])
    a, b = np.array([-3.0, -1.0, 0.0]), np.array([2.0, -1.0, -1.0])
    s1, s2 = np.outer(a, a) / 2, np.outer(b, b) / 2
    product = s1 @ s2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unregularised = scipy.linalg.sqrtm(product)
    if np.isfinite(unregularised).all():
        pytest.skip("this scipy build roots the singular product finitely; the monkeypatched test covers the retry")

    value = m.fd(x, y)
    assert math.isfinite(value)
    # Hand value with the offset: the trace terms use the raw covariances (tr s1 = |a|^2/2 = 5, tr s2 = |b|^2/2 = 3),
    # ||mu_x - mu_y||^2 = |(-0.5, 0, 0.5)|^2 = 0.5, and tr sqrt(M) = sum sqrt(eig(M)) for M = (s1+eps I)(s2+eps I),
    # whose eigenvalues are real and positive (M is similar to a positive definite matrix).
    reg = (s1 + EPS * np.eye(3)) @ (s2 + EPS * np.eye(3))
    tr_root = np.sum(np.sqrt(np.linalg.eigvals(reg).real))
    assert value == pytest.approx(0.5 + 5.0 + 3.0 - 2.0 * tr_root, abs=1e-9)
    # ... and it stays close to the exact rank-one answer 0.5 + 5 + 3 - |a.b| = 8.5 - 5 = 3.5
    assert value == pytest.approx(3.5, abs=1e-2)
    assert value != pytest.approx(3.5, abs=1e-9)  # the offset really was applied


def test_fd_retry_adds_offset_to_both_covariances(monkeypatch):
    calls: list[np.ndarray] = []
    real_sqrtm = scipy.linalg.sqrtm

    def fake_sqrtm(mat):
        calls.append(np.array(mat))
        if len(calls) == 1:  # force the "not finite" branch
            return np.full_like(mat, np.nan)
        return real_sqrtm(mat)

    monkeypatch.setattr(m, "sqrtm", fake_sqrtm)
    s1, s2 = np.diag([1.0, 0.0]), np.diag([0.0, 4.0])
    value = m.frechet_distance(np.zeros(2), s1, np.ones(2), s2)

    assert len(calls) == 2
    np.testing.assert_allclose(calls[0], np.zeros((2, 2)))
    np.testing.assert_allclose(calls[1], np.diag([(1 + EPS) * EPS, EPS * (4 + EPS)]), rtol=1e-12, atol=0)
    # diff^2 = 2; tr s1 + tr s2 = 5; root of the offset diagonal product taken elementwise
    expected = 2.0 + 5.0 - 2.0 * (math.sqrt((1 + EPS) * EPS) + math.sqrt(EPS * (4 + EPS)))
    assert value == pytest.approx(expected, abs=1e-12)


def test_fd_no_retry_when_root_is_finite(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(m, "sqrtm", lambda mat: calls.append(mat) or real_sqrtm(mat))
    assert m.frechet_distance(0.0, 1.0, 2.0, 4.0) == pytest.approx(5.0)
    assert len(calls) == 1


def test_fd_complex_root_small_imaginary_is_dropped(monkeypatch):
    monkeypatch.setattr(m, "sqrtm", lambda mat: np.diag([1.0 + 1e-5j, 2.0 - 1e-5j]))
    # diff = 0; tr sigma1 + tr sigma2 = 7 + 2 = 9; 2 * Re tr(root) = 2 * 3 = 6 -> 3
    assert m.frechet_distance(np.zeros(2), np.diag([2.0, 5.0]), np.zeros(2), np.eye(2)) == pytest.approx(3.0)


def test_fd_complex_root_large_imaginary_raises(monkeypatch):
    monkeypatch.setattr(m, "sqrtm", lambda mat: np.diag([1.0 + 0.5j, 2.0]))
    with pytest.raises(ValueError, match="imaginary"):
        m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


# --------------------------------------------------------------------------- SID


def _clustered_fit() -> np.ndarray:
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    jitter = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [-0.1, 0.0], [0.0, -0.1]])
    return (centres[:, None, :] + jitter[None, :, :]).reshape(-1, 2)


def test_sid_two_clusters_equally_is_one_bit():
    assign = np.array([[0.2, 0.1], [-0.3, 0.0], [0.1, -0.2], [99.8, 100.1], [100.3, 99.9], [100.0, 100.2]])
    assert m.sid(_clustered_fit(), assign, 4) == pytest.approx(_h(0.5, 0.5), abs=1e-12)
    assert _h(0.5, 0.5) == pytest.approx(1.0, abs=1e-5)


def test_sid_single_cluster_is_zero_and_uniform_is_two_bits():
    one = np.array([[100.1, 0.2], [99.9, -0.1], [100.0, 0.0]])
    assert m.sid(_clustered_fit(), one, 4) == pytest.approx(0.0, abs=1e-5)
    assert m.sid(_clustered_fit(), one, 4) == pytest.approx(_h(1.0), abs=1e-12)
    spread = np.array([[0.0, 0.1], [100.1, 0.0], [0.1, 100.0], [99.9, 99.9]])
    assert m.sid(_clustered_fit(), spread, 4) == pytest.approx(_h(0.25, 0.25, 0.25, 0.25), abs=1e-12)
    assert m.sid(_clustered_fit(), spread, 4) == pytest.approx(2.0, abs=1e-5)


def test_sid_reduces_k_to_distinct_rows_with_warning():
    fit = np.array([[0.0, 0.0], [0.0, 0.0], [50.0, 0.0], [50.0, 0.0], [0.0, 50.0]])  # 5 frames, 3 distinct
    assign = np.array([[1.0, 0.0], [49.0, 0.0], [0.0, 49.0]])
    with pytest.warns(RuntimeWarning, match="using k=3"):
        value = m.sid(fit, assign, 10)
    assert value == pytest.approx(_h(1 / 3, 1 / 3, 1 / 3), abs=1e-12)


def test_sid_fewer_frames_than_k_does_not_crash():
    fit = np.arange(10.0).reshape(5, 2)  # 5 distinct frames, k = 40
    with pytest.warns(RuntimeWarning, match="using k=5"):
        value = m.sid(fit, fit, 40)
    assert value == pytest.approx(_h(*[0.2] * 5), abs=1e-12)


def test_sid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature count"):
        m.sid(np.zeros((5, 2)), np.zeros((5, 3)), 2)


# --------------------------------------------------------------------------- rPCC


def test_rpcc_by_hand():
    a = np.array([[1.0], [2.0], [3.0]])
    assert m.rpcc(a, a, a) == pytest.approx(0.0, abs=1e-12)  # pred == gt
    assert m.rpcc(a, -a, a) == pytest.approx(2.0, abs=1e-12)  # corr +1 vs -1
    # pred (1, 3, 2): deviations (-1, 1, 0) vs partner (-1, 0, 1): cov 1, vars 2 and 2 -> r = 0.5; |1 - 0.5| = 0.5
    assert m.rpcc(a, np.array([1.0, 3.0, 2.0]), a) == pytest.approx(0.5, abs=1e-12)


def test_rpcc_flattens_2d_tracks_row_major():
    partner = np.array([[1.0, 2.0], [3.0, 4.0]])  # flat (1, 2, 3, 4)
    pred = np.array([[2.0, 1.0], [3.0, 4.0]])  # flat (2, 1, 3, 4)
    # deviations (-1.5, -.5, .5, 1.5) and (-.5, -1.5, .5, 1.5): cross 0.75 + 0.75 + 0.25 + 2.25 = 4, sums of squares 5
    # -> r = 0.8; gt == partner -> r = 1; rPCC = 0.2
    assert m.rpcc(partner, pred, partner) == pytest.approx(0.2, abs=1e-12)


def test_rpcc_constant_partner_is_nan_and_sizes_checked():
    g = np.array([1.0, 2.0, 3.0])
    assert math.isnan(m.rpcc(g, g, np.ones(3)))
    with pytest.raises(ValueError, match="same size"):
        m.rpcc(g, g, np.ones(4))


# --------------------------------------------------------------------------- sequence_metrics


def _shifted(t: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(t, 56))
    shift = np.concatenate([np.full(50, 0.1), np.full(3, 0.02), np.full(3, 0.05)])
    return gt + shift, gt, rng.normal(size=(t, 56))


def test_sequence_metrics_keys_and_hand_values():
    pred, gt, partner = _shifted()
    out = m.sequence_metrics(pred, gt, partner)
    assert list(out) == m.metric_keys()
    assert len(out) == 18
    # MSE of a constant offset c is c^2
    assert out["mse_exp"] == pytest.approx(0.01, rel=1e-9)
    assert out["mse_jaw"] == pytest.approx(4e-4, rel=1e-9)
    assert out["mse_pose"] == pytest.approx(2.5e-3, rel=1e-9)
    # FD of a shifted copy is d * c^2 (same covariance); P-FD too, since only the agent half of the mean moves
    assert out["fd_exp"] == pytest.approx(50 * 0.01, abs=1e-6)
    assert out["fd_jaw"] == pytest.approx(3 * 4e-4, abs=1e-9)
    assert out["fd_pose"] == pytest.approx(3 * 2.5e-3, abs=1e-9)
    assert out["p_fd_exp"] == pytest.approx(50 * 0.01, abs=1e-5)  # 100-d cov from 60 frames is rank deficient
    assert out["p_fd_jaw"] == pytest.approx(3 * 4e-4, abs=1e-9)
    assert out["p_fd_pose"] == pytest.approx(3 * 2.5e-3, abs=1e-9)
    # Pearson r is shift invariant, so rPCC is 0
    for group in m.GROUPS:
        assert out[f"rpcc_{group}"] == pytest.approx(0.0, abs=1e-12)
        assert 0.0 < out[f"sid_{group}"] <= math.log2(m.SID_K[group]) + 1e-9


def test_sequence_metrics_crops_to_shortest():
    pred, gt, partner = _shifted(t=20)
    junk = np.full((10, 56), 1e3)
    long_pred = np.concatenate([pred, junk])  # 30 frames
    long_gt = np.concatenate([gt, -junk[:5]])  # 25 frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # exp SID: 20 frames < k = 40
        cropped = m.sequence_metrics(long_pred, long_gt, partner)
        reference = m.sequence_metrics(pred, gt, partner)
    assert cropped["mse_exp"] == pytest.approx(0.01, rel=1e-9)  # the 1e3 tail would dominate if kept
    for key, value in reference.items():
        assert cropped[key] == pytest.approx(value, abs=1e-12), key


def test_sequence_metrics_without_partner_gives_nan_partner_metrics():
    pred, gt, _ = _shifted()
    out = m.sequence_metrics(pred, gt, None)
    assert set(out) == set(m.metric_keys())
    for group in m.GROUPS:
        assert math.isnan(out[f"p_fd_{group}"])
        assert math.isnan(out[f"rpcc_{group}"])
        for metric in ("fd", "mse", "sid", "sid_gt_fit"):
            assert math.isfinite(out[f"{metric}_{group}"])


def test_sequence_metrics_sid_orientation():
    rng = np.random.default_rng(1)
    pred, gt = rng.normal(size=(20, 56)), rng.normal(size=(20, 56))
    points = np.stack([np.arange(10) * 10.0, np.zeros(10), np.zeros(10)], axis=1)
    pred[:, 50:53] = np.repeat(points, 2, axis=0)  # 10 distinct jaw poses, twice each
    gt[:, 50:53] = np.concatenate([np.repeat(points[:1], 10, axis=0), np.repeat(points[1:2], 10, axis=0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = m.sequence_metrics(pred, gt)
    # sid: clusters of pred (its 10 points), histogram of gt: half at point 0, half at point 1 -> 1 bit
    assert out["sid_jaw"] == pytest.approx(_h(0.5, 0.5), abs=1e-12)
    # sid_gt_fit: gt has 2 distinct rows (k -> 2); pred point 0 -> cluster 0, points 1..9 -> cluster 1
    assert out["sid_gt_fit_jaw"] == pytest.approx(_h(0.1, 0.9), abs=1e-12)


@pytest.mark.parametrize("arg", ["pred", "gt", "partner"])
def test_sequence_metrics_wrong_channel_count_names_argument(arg):
    arrays = {"pred": np.zeros((10, 56)), "gt": np.zeros((10, 56)), "partner": np.zeros((10, 56))}
    arrays[arg] = np.zeros((10, 55))
    with pytest.raises(ValueError, match=rf"^{arg} must have shape \(T, 56\)"):
        m.sequence_metrics(**arrays)


@pytest.mark.parametrize("arg, bad", [("pred", np.nan), ("gt", np.nan), ("partner", np.inf)])
def test_sequence_metrics_non_finite_names_argument(arg, bad):
    arrays = {"pred": np.zeros((10, 56)), "gt": np.zeros((10, 56)), "partner": np.zeros((10, 56))}
    arrays[arg][3, 7] = bad
    with pytest.raises(ValueError, match=rf"^{arg} contains 1 non-finite"):
        m.sequence_metrics(**arrays)


def test_sequence_metrics_needs_two_common_frames():
    with pytest.raises(ValueError, match="at least 2 common frames"):
        m.sequence_metrics(np.zeros((10, 56)), np.zeros((10, 56)), np.zeros((1, 56)))


# --------------------------------------------------------------------------- aggregation and reporting


def test_average_is_nan_aware():
    rows = [
        {"fd_exp": 1.0, "rpcc_exp": math.nan, "p_fd_jaw": 4.0},
        {"fd_exp": 3.0, "rpcc_exp": math.nan, "p_fd_jaw": math.nan},
        {"fd_exp": math.nan, "rpcc_exp": math.nan},
    ]
    out = m.average(rows)
    assert out["fd_exp"] == pytest.approx(2.0)
    assert out["p_fd_jaw"] == pytest.approx(4.0)  # missing counts as NaN
    assert math.isnan(out["rpcc_exp"])
    with pytest.raises(ValueError):
        m.average([])


def test_scaled_applies_table_multipliers():
    out = m.scaled(
        {
            "fd_jaw": 0.00123,
            "mse_exp": 0.5,
            "rpcc_exp": 0.0123,
            "rpcc_pose": 0.2,
            "sid_gt_fit_exp": 3.0,
            "p_fd_pose": 0.04,
            "other": 7.0,
        }
    )
    assert out == pytest.approx(
        {
            "fd_jaw": 1.23,
            "mse_exp": 5.0,
            "rpcc_exp": 1.23,
            "rpcc_pose": 2.0,
            "sid_gt_fit_exp": 3.0,
            "p_fd_pose": 4.0,
            "other": 7.0,
        }
    )


def _parse_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return header, rows


def test_markdown_table_scales_formats_and_marks_missing():
    raw = {key: math.nan for key in m.metric_keys()}
    raw.update(fd_jaw=0.00123, mse_exp=0.0456, sid_exp=3.14159)
    text = m.markdown_table({"TIMAR": raw, "Baseline": {"fd_exp": 12.0}})
    header, rows = _parse_table(text)
    assert header[0] == "Method"
    assert len(header) == 19
    assert header[1:4] == ["FD exp ×1", "FD jaw ×10³", "FD pose ×10²"]
    assert "MSE exp ×10" in header and "rPCC exp ×10²" in header and "SID(gt-fit) pose ×1" in header
    cells = dict(zip(header[1:], rows["TIMAR"]))
    assert cells["FD jaw ×10³"] == "1.23"
    assert cells["MSE exp ×10"] == "0.46"
    assert cells["SID exp ×1"] == "3.14"
    assert cells["P-FD exp ×1"] == "n/a"
    assert cells["rPCC pose ×10"] == "n/a"
    baseline = dict(zip(header[1:], rows["Baseline"]))
    assert baseline["FD exp ×1"] == "12.00"
    assert baseline["FD jaw ×10³"] == "n/a"  # missing key
