"""Model v2's contract (issues 15 and 16): turn-relative positions with banded turn-causal
attention (nothing depends on where the window starts, so finished turns can be cached), and
per-channel motion normalisation (statistics from the training data, applied around the model).
Official checkpoints keep window positions and raw units (their parity: test_official_checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_dualtalk_folder

from model_export.checkpoint import load_checkpoint
from model_export.config import MOTION_STD_FLOOR, TimarConfig, preset
from model_export.data import load_conversation, scan_folder
from model_export.layers import banded_turn_bias
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import sample_dialogue
from model_export.train import main, motion_statistics
from timar_blender.engine.sampler import SamplingOptions

RNG = np.random.default_rng(5)
MEAN = tuple(float(v) for v in RNG.normal(0, 0.3, 56))
STD = tuple(float(v) for v in RNG.uniform(0.01, 2.0, 56))


def _tiny_v2(depth: int = 2, **kw) -> TimarConfig:
    return preset("timar_cpu_tiny", depth=depth, position="turn_relative", **kw)


def _model(cfg: TimarConfig, seed: int = 0) -> Timar:
    torch.manual_seed(seed)
    m = Timar(cfg).eval()
    with torch.no_grad():  # a random model whose position tables and mask token matter
        for p in (m.encoder_pos_embed_learned, m.diffusion_pos_embed_learned, m.mask_token):
            p.normal_(0, 0.5)
    return m


def _inputs(cfg: TimarConfig, turns: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    t = turns * cfg.turn_length
    tokens = torch.randn(1, t, cfg.token_dim, generator=g)
    mask = torch.rand(1, t, generator=g) < 0.3
    tids = torch.arange(turns).repeat_interleave(cfg.turn_length)[None]
    return tokens, mask, tids


def _turn(z: torch.Tensor, cfg: TimarConfig, j: int) -> torch.Tensor:
    return z[:, j * cfg.turn_length : (j + 1) * cfg.turn_length]


# ------------------------------------------------------------------------------ positions
def test_window_start_does_not_matter():
    cfg = _tiny_v2()
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 6)
    with torch.no_grad():
        a = m.backbone(tokens, mask, tids)
        b = m.backbone(tokens, mask, tids + 1234)
    assert torch.equal(a, b)


def test_window_positions_do_depend_on_the_start():
    # the official scheme, for contrast: the same turn in a different window slot changes
    cfg = preset("timar_cpu_tiny", depth=2)
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 3)
    L = cfg.turn_length
    with torch.no_grad():
        alone = m.backbone(tokens[:, :L], mask[:, :L], tids[:, :L])
        shifted = m.backbone(tokens, mask, tids)
    assert cfg.position == "window" and m.encoder_pos_embed_learned.shape[1] == cfg.seq_len
    with torch.no_grad():
        first_in_other_slot = m.backbone(tokens[:, L : 2 * L], mask[:, L : 2 * L], tids[:, :L])
    assert not torch.allclose(_turn(shifted, cfg, 1), first_in_other_slot, atol=1e-5)
    assert torch.allclose(_turn(shifted, cfg, 0), alone, atol=1e-5)


def test_a_cropped_window_holding_the_receptive_field_gives_the_same_turn():
    # depth 2, n_ctx = 7: turn j depends on turns j-14..j only, at any position in the dialogue
    cfg = _tiny_v2(depth=2)
    n_ctx = cfg.max_context_turns - 1
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 20)
    L = cfg.turn_length
    first = 19 - 2 * n_ctx
    with torch.no_grad():
        full = m.backbone(tokens, mask, tids)
        crop = m.backbone(tokens[:, first * L :], mask[:, first * L :], tids[:, : (20 - first) * L])
        too_short = m.backbone(tokens[:, (first + 1) * L :], mask[:, (first + 1) * L :], tids[:, : (19 - first) * L])
    assert torch.allclose(_turn(full, cfg, 19), _turn(crop, cfg, 19 - first), atol=1e-6)
    assert not torch.allclose(_turn(full, cfg, 19), _turn(too_short, cfg, 19 - first - 1), atol=1e-4)
    assert cfg.position_rows == L and m.encoder_pos_embed_learned.shape[1] == L


def test_appending_turns_leaves_earlier_turns_unchanged():
    cfg = _tiny_v2()
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 11)
    L = cfg.turn_length
    with torch.no_grad():
        full = m.backbone(tokens, mask, tids)
        prefix = m.backbone(tokens[:, : 6 * L], mask[:, : 6 * L], tids[:, : 6 * L])
    assert torch.allclose(full[:, : 6 * L], prefix, atol=1e-6)


def test_banded_mask():
    n_ctx = 3
    bias = -torch.arange(2, dtype=torch.float32)[:, None] * torch.arange(n_ctx + 1, dtype=torch.float32)[None]
    tids = torch.tensor([5, 5, 6, 7, 8, 9, 9])
    m = banded_turn_bias(tids, bias)[0]
    assert m.shape == (2, 7, 7)
    for q in range(7):
        for k in range(7):
            d = int(tids[q] - tids[k])
            for h in range(2):
                if 0 <= d <= n_ctx:
                    assert m[h, q, k] == bias[h, d]
                else:
                    assert m[h, q, k] == float("-inf")


def test_turns_beyond_the_band_are_not_seen_in_one_layer():
    cfg = _tiny_v2(depth=1)
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 10)
    L = cfg.turn_length
    n_ctx = cfg.max_context_turns - 1
    with torch.no_grad():
        base = _turn(m.backbone(tokens, mask, tids), cfg, 9)
        far, near = tokens.clone(), tokens.clone()
        far[:, (9 - n_ctx - 1) * L : (9 - n_ctx) * L] += 1.0
        near[:, (9 - n_ctx) * L : (10 - n_ctx) * L] += 1.0
        assert torch.equal(_turn(m.backbone(far, mask, tids), cfg, 9), base)
        assert not torch.allclose(_turn(m.backbone(near, mask, tids), cfg, 9), base, atol=1e-4)


def test_turn_relative_rejects_partial_turns_and_mixed_turn_ids():
    cfg = _tiny_v2()
    m = _model(cfg)
    tokens, mask, tids = _inputs(cfg, 2)
    with pytest.raises(ValueError, match="whole turns"):
        m.backbone(tokens[:, :-1], mask[:, :-1], tids[:, :-1])
    two = torch.cat([tids, tids + 1])
    with pytest.raises(ValueError, match="same turn ids"):
        m.backbone(tokens.repeat(2, 1, 1), mask.repeat(2, 1), two)
    with pytest.raises(ValueError, match="position"):
        preset("timar_cpu_tiny", position="rotary")


# ------------------------------------------------------------------------------ normalisation
def test_normalisation_round_trip_and_config_json():
    cfg = preset("timar_cpu_tiny", motion_norm=True, motion_mean=MEAN, motion_std=STD)
    m = Timar(cfg)
    x = torch.randn(30, 56) * 0.2
    n = m.normalize_motion(x)
    assert torch.allclose(n, (x - torch.tensor(MEAN)) / torch.tensor(STD), atol=1e-6)
    assert torch.allclose(m.denormalize_motion(n), x, atol=1e-5)
    info = cfg.model_info()
    xn = x.numpy()
    assert np.allclose(info.denormalize_motion(info.normalize_motion(xn)), xn, atol=1e-5)
    assert np.allclose(info.normalize_motion(xn), n.numpy(), atol=1e-5)
    back = TimarConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert "motion_mean" not in m.state_dict()  # the statistics live in the config
    raw = preset("timar_cpu_tiny")
    assert raw.model_info().motion_mean is None and torch.equal(Timar(raw).normalize_motion(x), x)
    with pytest.raises(ValueError, match="motion_norm is on"):
        Timar(preset("timar_cpu_tiny", motion_norm=True))
    with pytest.raises(ValueError, match="> 0"):
        preset("timar_cpu_tiny", motion_norm=True, motion_mean=MEAN, motion_std=(0.0,) * 56)
    with pytest.raises(ValueError, match="56 finite"):
        preset("timar_cpu_tiny", motion_norm=True, motion_mean=MEAN[:3], motion_std=STD[:3])


def test_statistics_come_from_the_data_with_a_floor(tmp_path: Path):
    folder = write_dualtalk_folder(tmp_path / "d")
    convs = [load_conversation(d) for d in scan_folder(folder).directions]
    convs[0].agent_motion[:, 52] = 0.25  # a constant channel
    frames = np.concatenate([c.agent_motion for c in convs])
    mean, std = motion_statistics(convs)
    assert np.allclose(mean, frames.mean(0), atol=1e-6)
    assert std[52] >= MOTION_STD_FLOOR and np.all(std >= MOTION_STD_FLOOR)
    varied = frames.std(0) > MOTION_STD_FLOOR
    assert np.allclose(std[varied], frames.std(0)[varied], rtol=1e-5)


def test_sampler_works_in_normalised_space_and_returns_raw_units():
    # same weights with and without normalisation: the normalised model's frames are the raw
    # model's frames mapped through std and mean, when it is fed the normalised user motion
    norm_cfg = preset("timar_cpu_tiny", motion_norm=True, motion_mean=MEAN, motion_std=STD)
    raw_cfg = preset("timar_cpu_tiny")
    a, b = Timar(norm_cfg).eval(), Timar(raw_cfg).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in a.diffloss.net.final_layer.linear.parameters():
            p.normal_(0, 0.1)
    b.load_state_dict(a.state_dict())
    feats = build_speech_features(raw_cfg, None)
    sr = raw_cfg.speech_rate
    rng = np.random.default_rng(0)
    user, agent = rng.standard_normal(3 * sr).astype(np.float32), rng.standard_normal(3 * sr).astype(np.float32)
    um = rng.normal(0, 0.2, (75, 56)).astype(np.float32)
    opts = SamplingOptions(context_turns=2, seed=1)
    out_a = sample_dialogue(a, feats, user, agent, um, opts).motion
    um_norm = ((um - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)
    out_b = sample_dialogue(b, feats, user, agent, um_norm, opts).motion
    assert np.allclose(out_a, out_b * np.float32(STD) + np.float32(MEAN), atol=1e-4)
    assert not np.allclose(out_a, out_b, atol=1e-2)


# ------------------------------------------------------------------------------ training
def _train(data: Path, out: Path, extra: list[str]) -> dict:
    argv = ["--data", str(data), "--out", str(out), "--threads", "1", "--stride-turns", "1", "--batch-size", "4",
            "--lr", "1e-3", "--warmup-epochs", "1", "--log-every", "20", *extra]
    assert main(argv) == 0
    return json.loads((out / "train_summary.json").read_text())


def test_turn_relative_normalised_training_lowers_the_loss(tmp_path: Path):
    data = write_dualtalk_folder(tmp_path / "d")
    cfg_file = tmp_path / "v2.json"
    cfg_file.write_text(json.dumps({"position": "turn_relative", "motion_norm": True}))
    out = tmp_path / "run"
    s = _train(data, out, ["--preset", "timar_cpu_tiny", "--config", str(cfg_file), "--max-steps", "60"])
    assert math.isfinite(s["fixed_loss_after"]) and s["fixed_loss_after"] < 0.7 * s["fixed_loss_before"]
    ck = load_checkpoint(out / "checkpoint-last.pth")
    convs = [load_conversation(d, normalize=ck.config.audio_normalization) for d in scan_folder(data).directions]
    mean, std = motion_statistics(convs)
    assert ck.config.position == "turn_relative" and ck.config.motion_norm
    assert np.allclose(ck.config.motion_mean, mean, atol=1e-6) and np.allclose(ck.config.motion_std, std, atol=1e-6)
    assert torch.allclose(ck.model.motion_std, torch.tensor(std, dtype=torch.float32))
    # a warm start keeps the statistics it was trained with, even on other data
    other = write_dualtalk_folder(tmp_path / "d2", seed=7)
    out2 = tmp_path / "run2"
    _train(other, out2, ["--init", str(out / "checkpoint-last.pth"), "--max-steps", "2"])
    assert load_checkpoint(out2 / "checkpoint-last.pth").config.motion_std == ck.config.motion_std


@pytest.mark.slow
def test_v2_preset_trains(tmp_path: Path):
    data = write_dualtalk_folder(tmp_path / "d")
    out = tmp_path / "run"
    s = _train(data, out, ["--preset", "timar_cpu_v2", "--max-steps", "30"])
    assert s["fixed_loss_after"] < s["fixed_loss_before"]
    cfg = load_checkpoint(out / "checkpoint-last.pth").config
    assert cfg.position == "turn_relative" and cfg.motion_norm and cfg.depth == 3 and cfg.width == 128


# ------------------------------------------------------------------------------ the cached sampler
@pytest.fixture(scope="module")
def v2_model() -> Timar:
    cfg = _tiny_v2(depth=2, motion_norm=True, motion_mean=MEAN, motion_std=STD)
    m = _model(cfg, seed=4)
    with torch.no_grad():  # a head whose output depends on z, so errors in z show in the motion
        for p in m.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
    return m


def _dialogue(seconds: int, seed: int = 0):
    from model_export.synthetic import synth_speech

    user = synth_speech(seconds, 16_000, seed, [(0.3, seconds / 2)])
    agent = synth_speech(seconds, 16_000, seed + 1, [(seconds / 2, seconds - 0.3)])
    um = np.random.default_rng(seed).normal(0, 0.1, (seconds * 25, 56)).astype(np.float32)
    return user, agent, um


@pytest.mark.parametrize(
    "opts",
    [
        dict(),
        dict(cfg=1.5),
        dict(mask_history_agent=False),
        dict(num_iter=3, cfg=2.0),
        dict(num_iter=2, mask_history_agent=False, context_turns=3),
        dict(context_turns=0),
    ],
    ids=["default", "cfg", "agent-visible", "num_iter", "visible-iter-n3", "n0"],
)
def test_cached_sampler_equals_the_whole_dialogue_computation(v2_model: Timar, opts: dict):
    feats = build_speech_features(v2_model.cfg, None)
    user, agent, um = _dialogue(24)
    base = SamplingOptions(seed=2, **opts)
    cached = sample_dialogue(v2_model, feats, user, agent, um, base).motion
    ref = sample_dialogue(v2_model, feats, user, agent, um, dataclasses.replace(base, kv_cache=False)).motion
    assert np.abs(cached - ref).max() <= 1e-5
    assert np.isfinite(cached).all() and cached.std() > 1e-3


def test_cache_holds_n_turns_and_context_matters(v2_model: Timar):
    from model_export.torch_backend import TorchBackend
    from timar_blender.engine.sampler import TurnSampler

    feats = build_speech_features(v2_model.cfg, None)
    user, agent, _ = _dialogue(12)
    sampler = TurnSampler(TorchBackend(v2_model, feats), SamplingOptions(context_turns=3))
    seen = [sampler.step(user[i * 16000 : (i + 1) * 16000], agent[i * 16000 : (i + 1) * 16000]).window_turns
            for i in range(6)]
    assert seen == [1, 2, 3, 4, 4, 4] and [r.count for r in sampler._kv.rings] == [3] * v2_model.cfg.depth
    a = sample_dialogue(v2_model, feats, user, agent, None, SamplingOptions(context_turns=0, seed=1)).motion
    b = sample_dialogue(v2_model, feats, user, agent, None, SamplingOptions(context_turns=7, seed=1)).motion
    assert np.allclose(a[:25], b[:25], atol=1e-6) and not np.allclose(a[50:], b[50:], atol=1e-4)
