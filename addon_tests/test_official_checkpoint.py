"""The PyTorch TIMAR computes what the official implementation computes, on its checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LARGE_LAYOUT, need_shared

from model_export.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_file, save_checkpoint
from model_export.config import PAPER_PRESETS, preset
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import TorchBackend
from timar_blender.engine.sampler import sample_frames
from timar_blender.engine.schedule import DiffusionCoefficients

TOL = 1e-5


def reference_outputs(ckpt: Path, wav2vec2: Path, ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every array of reference.npz, recomputed through this project's code path."""
    ck = load_checkpoint(ckpt)
    m, cfg = ck.model, ck.config
    feats = build_speech_features(cfg, wav2vec2)
    f, s = cfg.frames_per_turn, cfg.samples_per_turn
    turns = len(ref["speech_user"]) // s
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        su = torch.from_numpy(ref["speech_user"]).view(turns, s)
        sa = torch.from_numpy(ref["speech_agent"]).view(turns, s)
        out["speech_tokens_user_chunk0"] = m.speech_tokens(feats(su[:1]))[0].numpy()
        s_u, s_a = m.speech_tokens(feats(su))[None], m.speech_tokens(feats(sa))[None]
        m_u = m.motion_tokens(torch.from_numpy(ref["motion_user"])).view(1, turns, f, -1)
        m_a = m.motion_tokens(torch.from_numpy(ref["motion_agent"])).view(1, turns, f, -1)
        tokens, turn_ids = m.interleave(s_u, m_u, s_a, m_a)
        out["interleaved_tokens"] = tokens[0].numpy()
        out["turn_id"] = turn_ids[0].numpy()
        out["token_type"] = np.tile(m.layout.token_type, turns)
        out["backbone_z"] = m.backbone(tokens, torch.from_numpy(ref["mask"])[None], turn_ids)[0].numpy()
        out["head_out"] = m.head(
            torch.from_numpy(ref["head_x"]), torch.from_numpy(ref["head_t"]).long(), torch.from_numpy(ref["head_c"])
        ).numpy()
    backend = TorchBackend(m, feats)
    coefs = DiffusionCoefficients.respaced(cfg.sampling_steps, cfg.noise_schedule)
    out["respaced_timesteps"] = coefs.timesteps
    no_noise = np.zeros((coefs.num_steps, *ref["sample_xT"].shape), np.float32)
    out["sample_x0"] = sample_frames(backend, coefs, ref["sample_z"], ref["sample_xT"], no_noise, temperature=0.0)
    out["cfg_x0"] = sample_frames(
        backend,
        coefs,
        ref["sample_z"],
        ref["sample_xT"],
        no_noise,
        temperature=0.0,
        uncond=ref["cfg_z_uncond"],
        cfg=float(ref["cfg_scale"]),
    )
    return out


def test_reproduces_every_reference_array(official_tiny: Path) -> None:
    ref = dict(np.load(official_tiny / "reference.npz"))
    ours = reference_outputs(official_tiny / "official_tiny.pth", official_tiny / "wav2vec2_tiny", ref)
    inputs = {
        "speech_user",
        "speech_agent",
        "motion_user",
        "motion_agent",
        "mask",
        "head_x",
        "head_t",
        "head_c",
        "sample_z",
        "sample_xT",
        "cfg_z_uncond",
        "cfg_scale",
    }
    checked = set()
    for name, expected in ref.items():
        if name in inputs:
            continue
        got = ours[name]
        assert got.shape == expected.shape, name
        err = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        assert err <= TOL, f"{name}: max abs error {err:.3g} > {TOL}"
        checked.add(name)
    assert {
        "speech_tokens_user_chunk0",
        "interleaved_tokens",
        "backbone_z",
        "head_out",
        "sample_x0",
        "cfg_x0",
    } <= checked


def test_loader_reads_args_and_prefers_ema(official_tiny: Path) -> None:
    ck = load_checkpoint(official_tiny / "official_tiny.pth")
    assert (ck.kind, ck.weights, ck.epoch) == ("official", "ema", 3)
    c = ck.config
    assert (c.token_dim, c.width, c.depth, c.num_heads, c.head_depth, c.head_width) == (48, 64, 3, 4, 2, 32)
    assert c.speech_feature_dim == 64 and c.max_context_turns == 8 and c.turn_causal
    raw = load_checkpoint(official_tiny / "official_tiny.pth", use_ema=False)
    assert raw.weights == "model"
    ema_w = ck.model.z_proj.weight
    assert not torch.equal(ema_w, raw.model.z_proj.weight), "EMA and raw weights should differ in the fixture"
    assert torch.equal(ema_w, ck.raw["model_ema"]["z_proj.weight"])


def _without_args(src: Path, dst: Path) -> Path:
    obj = read_checkpoint_file(src)
    obj.pop("args")
    torch.save(obj, dst)
    return dst


def test_shapes_plus_preset_when_args_are_missing(official_tiny: Path, tmp_path: Path) -> None:
    bare = _without_args(official_tiny / "official_tiny.pth", tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="no 'args'"):
        load_checkpoint(bare)
    # the shapes give every dimension; the preset only the head count (4 heads of 16 do not divide 64 by 12,
    # so use a preset whose head count divides the width: timar_large has 16 heads -> width 64 / 16 = 4)
    ck = load_checkpoint(bare, preset_name="timar_large")
    assert (ck.config.width, ck.config.depth, ck.config.token_dim, ck.config.head_width) == (64, 3, 48, 32)
    assert ck.config.num_heads == 16


def test_strict_key_match_lists_missing_and_unexpected(official_tiny: Path, tmp_path: Path) -> None:
    obj = read_checkpoint_file(official_tiny / "official_tiny.pth")
    sd = dict(obj["model_ema"])
    sd.pop("encoder_norm.bias")
    sd["extra.weight"] = torch.zeros(3)
    obj["model_ema"] = sd
    torch.save(obj, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "broken.pth")
    msg = str(err.value)
    assert "broken.pth" in msg and "missing keys (1): encoder_norm.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg


def test_args_that_disagree_with_tensors_are_refused(official_tiny: Path, tmp_path: Path) -> None:
    obj = read_checkpoint_file(official_tiny / "official_tiny.pth")
    obj["args"].encoder_depth = 5
    torch.save(obj, tmp_path / "liar.pth")
    with pytest.raises(CheckpointError, match=r"depth: args say 6, tensors say 3"):
        load_checkpoint(tmp_path / "liar.pth")


def test_unsupported_variant_is_refused(official_tiny: Path, tmp_path: Path) -> None:
    obj = read_checkpoint_file(official_tiny / "official_tiny.pth")
    obj["args"].use_encoder_only = False
    torch.save(obj, tmp_path / "mae.pth")
    with pytest.raises(CheckpointError, match="use_encoder_only"):
        load_checkpoint(tmp_path / "mae.pth")


class Payload:
    def __reduce__(self):  # would run code when unpickled without weights_only
        return (print, ("pwned",))


def test_arbitrary_pickles_never_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"model": {}, "args": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: not a loadable checkpoint"):
        load_checkpoint(tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"x\.pth"):
        load_checkpoint(tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


@pytest.mark.parametrize(
    "fields",
    [
        # a second official-format shape: explicit per-layer fields, no known preset name
        dict(
            model="some_other_run",
            token_embed_dim=40,
            speech_snippet_embed_dim=24,
            encoder_embed_dim=48,
            encoder_depth=1,
            decoder_depth=1,
            encoder_num_heads=6,
            diffloss_d=1,
            diffloss_w=20,
            max_context_time=4,
            use_causal_attn=True,
            use_encoder_only=True,
            num_sampling_steps="7",
        ),
        # a preset name with the paper's run fields, but small: explicit fields override the preset
        dict(
            model="timar_base",
            token_embed_dim=32,
            speech_snippet_embed_dim=16,
            encoder_embed_dim=24,
            encoder_depth=2,
            decoder_depth=0,
            encoder_num_heads=3,
            diffloss_d=2,
            diffloss_w=16,
            max_context_time=8,
            use_causal_attn=False,
            use_encoder_only=True,
        ),
    ],
)
def test_other_official_shapes_load_through_the_same_code(tmp_path: Path, fields: dict) -> None:
    cfg = preset("timar_base").replace(
        token_dim=fields["token_embed_dim"],
        speech_feature_dim=fields["speech_snippet_embed_dim"],
        width=fields["encoder_embed_dim"],
        depth=fields["encoder_depth"] + fields["decoder_depth"],
        num_heads=fields["encoder_num_heads"],
        head_depth=fields["diffloss_d"],
        head_width=fields["diffloss_w"],
        max_context_time=fields["max_context_time"],
        turn_causal=fields["use_causal_attn"],
    )
    torch.manual_seed(1)
    model = Timar(cfg).eval()
    sd = model.state_dict()
    ema = {k: v + 0.01 for k, v in sd.items()}
    torch.save({"model": sd, "model_ema": ema, "epoch": 1, "args": argparse.Namespace(**fields)}, tmp_path / "o.pth")
    ck = load_checkpoint(tmp_path / "o.pth")
    assert ck.config.turn_causal == fields["use_causal_attn"] and ck.config.num_heads == fields["encoder_num_heads"]
    assert ck.config.sampling_steps == str(fields.get("num_sampling_steps", "5"))
    model.load_state_dict(ema)
    t = cfg.turn_length * 2
    tokens = torch.randn(1, t, cfg.token_dim)
    mask = torch.rand(1, t) < 0.3
    tids = torch.arange(2).repeat_interleave(cfg.turn_length)[None]
    with torch.no_grad():
        assert torch.allclose(ck.model.backbone(tokens, mask, tids), model.backbone(tokens, mask, tids), atol=1e-6)


def test_our_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = preset("timar_cpu_tiny")
    torch.manual_seed(0)
    m = Timar(cfg)
    ema = {k: v.clone() * 0.5 for k, v in m.state_dict().items()}
    save_checkpoint(tmp_path / "ours.pth", cfg, m.state_dict(), ema, epoch=2, step=10)
    ck = load_checkpoint(tmp_path / "ours.pth")
    assert ck.kind == "ours" and ck.config == cfg and ck.epoch == 2
    assert torch.equal(ck.model.z_proj.weight, ema["z_proj.weight"])
    assert "speech_frontend.out.weight" in ck.model.state_dict()


def test_large_preset_matches_the_official_layout_exactly() -> None:
    layout = json.loads(need_shared(LARGE_LAYOUT).read_text())
    c = layout["config"]
    cfg = preset(
        c["model"],
        token_dim=c["token_embed_dim"],
        speech_feature_dim=c["speech_snippet_embed_dim"],
        head_depth=c["diffloss_d"],
        head_width=c["diffloss_w"],
        max_context_time=c["max_context_time"],
    )
    with torch.device("meta"):
        model = Timar(cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = layout["state_dict"]
    assert set(shapes) == set(expected), (
        sorted(set(shapes) - set(expected))[:5],
        sorted(set(expected) - set(shapes))[:5],
    )
    assert shapes == expected
    assert sum(int(np.prod(s)) for s in shapes.values()) == layout["num_params"] == 427_936_368


def test_presets_are_consistent() -> None:
    for name in PAPER_PRESETS:
        cfg = preset(name)
        assert cfg.width % cfg.num_heads == 0 and cfg.speech_encoder == "wav2vec2"
    assert preset("timar_large").depth == 32 and preset("timar_huge").width == 1280
    with pytest.raises(KeyError, match="unknown preset"):
        preset("timar_gigantic")


def test_clamp_variance_off_is_the_released_sampling_at_temperature_one(official_tiny: Path) -> None:
    """At temperature 1 the variance matters: ``clamp_variance=False`` is the released p_sample with a
    learned-range variance (written out here step by step); the default clamp departs from it where the
    head's v leaves [-1, 1] (0.3 % of this checkpoint's values) and not at all at temperature 0."""
    ref = dict(np.load(official_tiny / "reference.npz"))
    ck = load_checkpoint(official_tiny / "official_tiny.pth")
    backend = TorchBackend(ck.model, build_speech_features(ck.config, official_tiny / "wav2vec2_tiny"))
    co = DiffusionCoefficients.respaced(ck.config.sampling_steps, ck.config.noise_schedule)
    z, x_t = ref["sample_z"], ref["sample_xT"]
    noise = np.random.default_rng(0).standard_normal((co.num_steps, *x_t.shape)).astype(np.float32)
    c = x_t.shape[1]
    x, outside = x_t.astype(np.float64), []
    for i in reversed(range(co.num_steps)):  # the released loop
        out = backend.head(x.astype(np.float32), np.full(len(x), co.timesteps[i], np.int64), z).astype(np.float64)
        x0, v = out[:, :c], out[:, c:]
        outside.append(np.abs(v) > 1)
        frac = (v + 1) / 2
        log_var = frac * co.log_betas[i] + (1 - frac) * co.posterior_log_variance_clipped[i]
        x = co.posterior_mean_coef1[i] * x0 + co.posterior_mean_coef2[i] * x
        if i > 0:
            x = x + np.exp(0.5 * log_var) * noise[i]
    released = sample_frames(backend, co, z, x_t, noise, temperature=1.0, clamp_variance=False)
    np.testing.assert_allclose(released, x, atol=2e-5)
    assert np.mean(outside) > 0  # the checkpoint's v does leave [-1, 1] somewhere
    clamped = sample_frames(backend, co, z, x_t, noise, temperature=1.0)
    assert np.abs(clamped - released).max() > 1e-3
    no_noise = np.zeros_like(noise)
    np.testing.assert_array_equal(
        sample_frames(backend, co, z, x_t, no_noise, temperature=0.0),
        sample_frames(backend, co, z, x_t, no_noise, temperature=0.0, clamp_variance=False),
    )


def test_evaluate_has_a_flag_for_the_released_sampling() -> None:
    from model_export.evaluate import parse_args

    base = ["--checkpoint", "x.pth", "--data", "d"]
    assert parse_args(base).no_clamp_variance is False
    assert parse_args([*base, "--no-clamp-variance"]).no_clamp_variance is True
