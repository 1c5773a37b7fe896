"""Correlated sampling noise: every frame's noise stays N(0, 1) (what the diffusion head was trained
on) while neighbouring frames -- across turn edges too -- draw alike, so motion the speech leaves
open comes out coherent instead of frame-to-frame white noise."""

from __future__ import annotations

import numpy as np
import pytest

from timar_blender.engine.noise import turn_noise
from timar_blender.engine.sampler import SamplingOptions


def _stream(seed: int, turns: int, sigma: float, steps: int = 2, frames: int = 25, channels: int = 56):
    parts = [turn_noise(seed, k, steps, frames, channels, sigma) for k in range(turns)]
    return np.concatenate([p.x_T for p in parts]), np.concatenate([p.steps for p in parts], axis=1), parts


def test_zero_correlation_is_the_white_noise_of_before() -> None:
    a, b = turn_noise(3, 5, 4, 25, 56), turn_noise(3, 5, 4, 25, 56, 0.0)
    assert np.array_equal(a.x_T, b.x_T) and np.array_equal(a.steps, b.steps) and np.array_equal(a.order, b.order)


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_marginals_stay_unit_and_neighbours_correlate_across_turn_edges(sigma: float) -> None:
    x, steps, parts = _stream(7, 40, sigma)
    assert abs(float(x.std()) - 1.0) < 0.05 and abs(float(steps.std()) - 1.0) < 0.05
    assert abs(float(x.mean())) < 0.05

    def lag1(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(a * b))

    want = np.exp(-1.0 / (4 * sigma**2))  # autocorrelation of Gaussian-smoothed white noise at lag 1
    inside = lag1(x[1:][np.arange(1, len(x)) % 25 != 0], x[:-1][np.arange(1, len(x)) % 25 != 0])
    edges = np.arange(25, len(x), 25)
    across = lag1(x[edges], x[edges - 1])
    assert abs(inside - want) < 0.05 and abs(across - want) < 0.1  # no seam at the turn edges
    white = turn_noise(7, 3, 2, 25, 56)
    assert abs(lag1(white.x_T[1:], white.x_T[:-1])) < 0.1
    assert np.array_equal(parts[3].order, white.order)  # the generation order does not change


def test_noise_is_a_function_of_seed_and_turn_only() -> None:
    a, b = turn_noise(11, 9, 3, 25, 56, 2.0), turn_noise(11, 9, 3, 25, 56, 2.0)
    assert np.array_equal(a.x_T, b.x_T) and np.array_equal(a.steps, b.steps)
    assert not np.allclose(a.x_T, turn_noise(12, 9, 3, 25, 56, 2.0).x_T)


def test_out_of_range_correlation_is_refused() -> None:
    from timar_blender.engine.settings import OPTIONS, SettingsError

    for name in ("head_noise_correlation", "face_noise_correlation"):
        with pytest.raises(SettingsError, match=name):
            OPTIONS[name].check(7.0)
    with pytest.raises(ValueError, match="noise correlation"):
        turn_noise(0, 0, 2, 25, 56, 6.5)


def test_bundled_model_head_is_smoother_with_correlated_noise() -> None:
    from conftest import synth_speech

    from timar_blender.engine.dialogue import generate_dialogue
    from timar_blender.engine.job import BUNDLED_MODEL, backend_for

    if not (BUNDLED_MODEL / "manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    user = synth_speech(12.0, 16000, 3, [(0.5, 5.0), (7.0, 11.0)])
    agent = synth_speech(12.0, 16000, 4, [(5.3, 6.8)])
    backend = backend_for("")
    jit = {}
    for sigma in (0.0, 3.0):
        opts = SamplingOptions(seed=1, head_noise_correlation=sigma, face_noise_correlation=sigma)
        m = generate_dialogue(backend, user, agent, None, opts).motion
        jit[sigma] = (float(np.abs(np.diff(m[:, 53:56], n=2, axis=0)).mean()),
                      float(np.abs(np.diff(m[:, 50], n=2)).mean()))
    assert jit[3.0][0] < 0.7 * jit[0.0][0], jit  # the head is smoother
    assert jit[3.0][1] < 0.7 * jit[0.0][1], jit  # and so is the jaw


def test_each_channel_group_gets_its_own_correlation() -> None:
    sigma = np.zeros(56)
    sigma[53:56] = 4.0
    sigma[50:53] = 1.0
    x = np.concatenate([turn_noise(2, k, 1, 25, 56, sigma).x_T for k in range(120)])
    lag1 = np.mean(x[1:] * x[:-1], axis=0)
    assert np.all(np.abs(lag1[:50]) < 0.1)  # expression: white, exactly as before
    assert np.allclose(lag1[50:53], np.exp(-1 / 4), atol=0.08) and np.allclose(lag1[53:], np.exp(-1 / 64), atol=0.08)
    plain = turn_noise(2, 4, 1, 25, 56)
    assert np.array_equal(turn_noise(2, 4, 1, 25, 56, sigma).x_T[:, :50], plain.x_T[:, :50])


def test_face_temperature_scales_only_the_face_noise() -> None:
    """Lower face_temperature: two seeds' expression and jaw come closer together (less sampling noise
    on them) while their heads stay as different as before; 1 is exactly the motion without it."""
    from conftest import synth_speech

    from timar_blender.engine.dialogue import generate_dialogue
    from timar_blender.engine.job import BUNDLED_MODEL, backend_for

    if not (BUNDLED_MODEL / "manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    user = synth_speech(6.0, 16000, 3, [(0.5, 2.5)])
    agent = synth_speech(6.0, 16000, 4, [(3.0, 5.5)])
    backend = backend_for("")

    def take(seed: int, **kw) -> np.ndarray:
        return generate_dialogue(backend, user, agent, None, SamplingOptions(seed=seed, **kw)).motion

    def apart(ft: float) -> tuple[float, float]:
        d = take(1, face_temperature=ft) - take(2, face_temperature=ft)
        return float(d[:, :53].std()), float(d[:, 53:].std())

    assert np.array_equal(take(1), take(1, face_temperature=1.0))
    (face1, head1), (face0, head0) = apart(1.0), apart(0.0)
    assert face0 < 0.7 * face1, (face0, face1)
    assert head0 > 0.7 * head1, (head0, head1)
