"""Turn blend: each 1-s turn eases from where the previous turn ended, so the take does not step at
turn edges; it changes only the output (causal: streaming equals offline) and leaves mid-turn frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synth_speech

from timar_blender.engine.dialogue import DialogueStream, generate_dialogue
from timar_blender.engine.job import BUNDLED_MODEL, backend_for
from timar_blender.engine.sampler import SamplingOptions

RATE = 16_000


@pytest.fixture(scope="module")
def speech():
    if not (BUNDLED_MODEL / "manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    user = synth_speech(10.0, RATE, 21, [(0.4, 3.5), (6.0, 9.5)])
    agent = synth_speech(10.0, RATE, 22, [(3.8, 5.8)])
    return backend_for(""), user, agent


def _edge_steps(m: np.ndarray) -> np.ndarray:
    edges = np.arange(25, len(m), 25)
    return np.abs(m[edges] - m[edges - 1]).mean(axis=1)


def test_turn_blend_removes_the_step_at_turn_edges_and_keeps_the_rest(speech) -> None:
    backend, user, agent = speech
    raw = generate_dialogue(backend, user, agent, None, SamplingOptions(seed=3, turn_blend=0.0)).motion
    blended = generate_dialogue(backend, user, agent, None, SamplingOptions(seed=3, turn_blend=2.0)).motion
    assert np.array_equal(raw[:25], blended[:25])  # the first turn has nothing to ease from
    assert np.all(_edge_steps(blended) < 1e-6)  # each turn starts where the previous one ended
    assert _edge_steps(raw).mean() > 1e-3
    mid = np.concatenate([np.arange(25 * k + 15, 25 * k + 25) for k in range(len(raw) // 25)])
    np.testing.assert_allclose(blended[mid], raw[mid], atol=float(np.abs(raw).max()) * 1e-3)


def test_streaming_with_turn_blend_equals_offline(speech) -> None:
    backend, user, agent = speech
    opts = SamplingOptions(seed=4, turn_blend=3.0)
    offline = generate_dialogue(backend, user, agent, None, opts).motion
    stream = DialogueStream(backend, opts)
    frames, pos = [], 0
    for size in (9000, 23000, 16000, 31000, 60000, 21000):
        frames += [r.motion for r in stream.push(user[pos:pos + size], agent[pos:pos + size])]
        pos += size
    frames += [r.motion for r in stream.flush()]
    np.testing.assert_array_equal(np.concatenate(frames)[: len(offline)], offline)
