"""The turn-by-turn sampler: history in token space, cropping, re-masking, num_iter, CFG, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synth_speech

from model_export.config import preset
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import TorchBackend
from timar_blender.engine.audio import normalize_per_file
from timar_blender.engine.dialogue import Cancelled, generate_dialogue
from timar_blender.engine.noise import turn_noise
from timar_blender.engine.sampler import SamplingOptions, TurnSampler, masked_after_step, sample_frames

RATE = 16_000


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    cfg = preset("timar_cpu_tiny")
    model = Timar(cfg).eval()
    with torch.no_grad():  # a random head predicts x0 = 0 (zero-initialised output): give it signal
        for p in model.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
    return TorchBackend(model, build_speech_features(cfg))


@pytest.fixture(scope="module")
def dialogue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    user = synth_speech(4.0, RATE, 1, [(0.1, 1.9)])
    agent = synth_speech(4.0, RATE, 2, [(2.0, 3.9)])
    motion = np.random.default_rng(3).normal(0, 0.1, (100, 56)).astype(np.float32)
    return user, agent, motion


def run(backend, dialogue, **opts) -> np.ndarray:
    user, agent, motion = dialogue
    return generate_dialogue(backend, user, agent, motion, SamplingOptions(**opts)).motion


def test_seeded_takes_repeat_and_differ(backend, dialogue) -> None:
    a, b, c = run(backend, dialogue, seed=1), run(backend, dialogue, seed=1), run(backend, dialogue, seed=2)
    assert a.shape == (100, 56) and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_temperature_scales_only_the_step_noise(backend, dialogue) -> None:
    """x_T always comes from the noise; temperature 0 removes the noise added at each step."""
    user, agent, _ = dialogue
    u, a = normalize_per_file(user), normalize_per_file(agent)

    def noise_with_steps_from(seed: int):
        def fn(t: int):
            base, other = turn_noise(1, t, 5, 25, 56), turn_noise(seed, t, 5, 25, 56)
            return type(base)(x_T=base.x_T, steps=other.steps, order=base.order)

        return fn

    def first_turn(seed: int, temperature: float) -> np.ndarray:
        s = TurnSampler(backend, SamplingOptions(temperature=temperature), noise=noise_with_steps_from(seed))
        return s.step(u[:RATE], a[:RATE]).motion

    assert np.array_equal(first_turn(2, 0.0), first_turn(3, 0.0))
    assert not np.array_equal(first_turn(2, 1.0), first_turn(3, 1.0))


def test_streaming_equals_offline(backend, dialogue) -> None:
    user, agent, motion = dialogue
    offline = run(backend, dialogue, seed=4, context_turns=2)
    s = TurnSampler(backend, SamplingOptions(seed=4, context_turns=2))
    u, a = normalize_per_file(user), normalize_per_file(agent)
    frames = [
        s.step(u[i * RATE : (i + 1) * RATE], a[i * RATE : (i + 1) * RATE], motion[i * 25 : (i + 1) * 25]).motion
        for i in range(4)
    ]
    assert np.array_equal(np.concatenate(frames), offline)


def manual_turn(backend: TorchBackend, u, a, um, prev_agent, turn: int, n: int, opts: SamplingOptions) -> np.ndarray:
    """Turn ``turn`` recomputed directly from the model, the official way: interleave the last n+1
    turns (earlier agent motion = what was generated), mask every agent-motion token, run the
    backbone, sample the current turn's frames from the same noise."""
    m = backend.model
    f = m.cfg.frames_per_turn
    first = max(0, turn - n)
    idx = range(first, turn + 1)
    with torch.no_grad():
        feats = backend.speech_features
        su = m.speech_tokens(feats(torch.from_numpy(np.stack([u[i * RATE : (i + 1) * RATE] for i in idx]))))[None]
        sa = m.speech_tokens(feats(torch.from_numpy(np.stack([a[i * RATE : (i + 1) * RATE] for i in idx]))))[None]
        if um is None:
            mu = m.fake_latent.expand(len(idx) * f, -1).reshape(1, len(idx), f, -1)
        else:
            mu = m.motion_tokens(torch.from_numpy(um[first * f : (turn + 1) * f])).reshape(1, len(idx), f, -1)
        agent_prev = np.concatenate([prev_agent[first * f : turn * f], np.zeros((f, 56), np.float32)])
        ma = m.motion_tokens(torch.from_numpy(agent_prev)).reshape(1, len(idx), f, -1)
        tokens, tids = m.interleave(su, mu, sa, ma)
        mask = torch.from_numpy(np.tile(m.layout.token_type, len(idx)) == 4)[None]
        z = m.backbone(tokens, mask, tids)[0].numpy()
    pos = (len(idx) - 1) * m.cfg.turn_length + np.arange(m.layout.agent_motion.start, m.layout.agent_motion.stop)
    noise = turn_noise(opts.seed, turn, 5, f, 56)
    from timar_blender.engine.schedule import DiffusionCoefficients

    return sample_frames(backend, DiffusionCoefficients.respaced(5), z[pos], noise.x_T, noise.steps, opts.temperature)


@pytest.mark.parametrize("with_user_motion", [True, False])
@pytest.mark.parametrize("n", [0, 1, 7])
def test_each_turn_matches_a_direct_computation(backend, dialogue, with_user_motion: bool, n: int) -> None:
    user, agent, motion = dialogue
    um = motion if with_user_motion else None
    opts = SamplingOptions(seed=5, context_turns=n)
    out = generate_dialogue(backend, user, agent, um, opts).motion
    u, a = normalize_per_file(user), normalize_per_file(agent)
    for turn in (0, 2, 3):
        expected = manual_turn(backend, u, a, um, out, turn, n, opts)
        np.testing.assert_allclose(out[turn * 25 : (turn + 1) * 25], expected, atol=1e-5)


def test_window_is_cropped_to_n_plus_one_turns(backend, dialogue) -> None:
    user, agent, _ = dialogue
    u, a = normalize_per_file(user), normalize_per_file(agent)
    s = TurnSampler(backend, SamplingOptions(context_turns=2))
    seen = [s.step(u[i * RATE : (i + 1) * RATE], a[i * RATE : (i + 1) * RATE]).window_turns for i in range(4)]
    assert seen == [1, 2, 3, 3]


def test_history_and_guidance_change_the_take(backend, dialogue) -> None:
    base = run(backend, dialogue, seed=6, context_turns=7)
    assert np.abs(base - run(backend, dialogue, seed=6, context_turns=0))[25:].mean() > 1e-4
    assert np.abs(base - run(backend, dialogue, seed=6, cfg=2.0)).mean() > 1e-4
    unmasked = run(backend, dialogue, seed=6, mask_history_agent=False)
    assert np.array_equal(base[:25], unmasked[:25]) and np.abs(base - unmasked)[25:].mean() > 1e-5


def test_guided_turn_uses_fake_latent_for_the_current_user(backend, dialogue) -> None:
    """With CFG the backbone runs two rows per turn: the conditional one, and the unconditional one in
    which only this turn's user tokens (speech and motion) are fake_latent; the history, separators
    and agent tokens are the same in both rows."""
    from timar_blender.engine.layout import ROLE_USER, TurnLayout

    calls: list[np.ndarray] = []

    class Recording:  # the real backend, with the backbone's inputs kept
        def __init__(self, inner) -> None:
            self.inner, self.info = inner, inner.info

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def backbone(self, tokens, mask, turn_ids):
            calls.append(np.array(tokens))
            return self.inner.backbone(tokens, mask, turn_ids)

    user, agent, motion = dialogue
    generate_dialogue(Recording(backend), user, agent, motion, SamplingOptions(seed=2, context_turns=2, cfg=3.0))
    lay, fake = TurnLayout(25), np.asarray(backend.fake_latent(), np.float32)
    assert len(calls) == 4  # one backbone call per turn (num_iter 1), both rows in one batch
    for cond, uncond in calls:
        user_now = len(cond) - lay.length + np.flatnonzero(lay.role == ROLE_USER)
        np.testing.assert_array_equal(uncond[user_now], np.broadcast_to(fake, (len(user_now), fake.size)))
        assert np.abs(cond[user_now] - fake).max() > 1e-3  # the conditional row keeps the user's tokens
        rest = np.ones(len(cond), bool)
        rest[user_now] = False
        np.testing.assert_array_equal(uncond[rest], cond[rest])
    assert len(calls[-1][0]) == 3 * lay.length  # the history (2 turns) is in both rows


def test_masking_schedule() -> None:
    assert [masked_after_step(25, r, s, 3) for r, s in ((25, 0), (21, 1), (12, 2))] == [21, 12, 0]
    assert masked_after_step(25, 25, 0, 1) == 0
    assert masked_after_step(4, 2, 0, 4) == 1  # keeps at least one masked until the last step


def test_num_iter_generates_every_frame(backend, dialogue) -> None:
    one = run(backend, dialogue, seed=7, num_iter=1)
    many = run(backend, dialogue, seed=7, num_iter=4, cfg=1.5, cfg_schedule="linear")
    l2r = run(backend, dialogue, seed=7, num_iter=4, random_order=False)
    assert np.isfinite(many).all() and (np.abs(many).sum(axis=1) > 0).all()
    assert np.abs(one - many).mean() > 1e-4 and np.abs(many - l2r).mean() > 1e-6


def test_explicit_noise_is_used(backend, dialogue) -> None:
    user, agent, _ = dialogue
    u, a = normalize_per_file(user), normalize_per_file(agent)
    seeded = TurnSampler(backend, SamplingOptions(seed=11))
    given = TurnSampler(backend, SamplingOptions(seed=0), noise=lambda t: turn_noise(11, t, 5, 25, 56))
    assert np.array_equal(seeded.step(u[:RATE], a[:RATE]).motion, given.step(u[:RATE], a[:RATE]).motion)


def test_last_turn_padding_trimming_and_errors(backend) -> None:
    user = synth_speech(2.5, RATE, 1, [(0, 2.5)])
    agent = synth_speech(2.0, RATE, 2, [(0, 2.0)])
    padded = generate_dialogue(backend, user, agent)
    assert len(padded.motion) == round(2.5 * 25) and padded.turn_index[-1] == 2 and padded.fps == 25
    assert len(generate_dialogue(backend, user, agent, last_turn="drop").motion) == 50
    with pytest.raises(ValueError, match="shorter than one turn"):
        generate_dialogue(backend, user[:8000], agent[:8000], last_turn="drop")
    with pytest.raises(Cancelled):
        generate_dialogue(backend, user, agent, should_cancel=lambda: True)
    seen = []
    generate_dialogue(backend, user, agent, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    "bad",
    [
        dict(context_turns=8),
        dict(context_turns=-1),
        dict(num_iter=0),
        dict(num_iter=26),
        dict(cfg_schedule="cosine"),
        dict(temperature=-1.0),
        dict(cfg=float("nan")),
    ],
)
def test_bad_options_are_refused(backend, bad) -> None:
    with pytest.raises(ValueError):
        TurnSampler(backend, SamplingOptions(**bad))


def test_learned_variance_is_kept_in_its_defined_range():
    from timar_blender.engine.schedule import DiffusionCoefficients, ancestral_step

    co = DiffusionCoefficients.respaced(5, "cosine", 1000)
    rng = np.random.default_rng(0)
    x_t, x0, noise = (rng.standard_normal((64, 56)).astype(np.float32) for _ in range(3))
    step = 3
    at_beta = ancestral_step(co, step, x_t, x0, np.ones((64, 56), np.float32), noise, 1.0)
    drifted = np.full((64, 56), 6.0, np.float32)  # v far outside [-1, 1], as an under-trained head gives
    assert np.array_equal(ancestral_step(co, step, x_t, x0, drifted, noise, 1.0), at_beta)
    released = ancestral_step(co, step, x_t, x0, drifted, noise, 1.0, clamp_variance=False)
    mean = ancestral_step(co, step, x_t, x0, drifted, noise, 0.0)
    assert np.std(released - mean) > 1.4 * np.std(at_beta - mean)  # extrapolated variance: much more noise
    inside = rng.uniform(-1, 1, (64, 56)).astype(np.float32)
    assert np.array_equal(
        ancestral_step(co, step, x_t, x0, inside, noise, 1.0),
        ancestral_step(co, step, x_t, x0, inside, noise, 1.0, clamp_variance=False),
    )
