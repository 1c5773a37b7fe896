"""ONNX export and the torch-free engine: parity with PyTorch, streaming, providers, bad bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synth_speech

from model_export.checkpoint import load_checkpoint
from model_export.config import preset
from model_export.export import export_bundle
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import TorchBackend
from timar_blender.engine.audio import AudioError
from timar_blender.engine.bundle import BundleError, load_bundle
from timar_blender.engine.contract import CHANNEL_NAMES
from timar_blender.engine.dialogue import DialogueStream, generate_dialogue
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

RATE = 16_000
PARITY = 1e-4


@pytest.fixture(scope="module")
def tiny_model() -> tuple[Timar, torch.nn.Module]:
    torch.manual_seed(0)
    cfg = preset("timar_cpu_tiny")
    model = Timar(cfg).eval()
    with torch.no_grad():  # a fresh head predicts x0 = 0 (zero-initialised output layer): give it signal
        for p in model.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
    return model, build_speech_features(cfg)


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, tmp_path_factory) -> Path:
    model, feats = tiny_model
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(model, feats, out, source={"checkpoint": "random", "sha256": "0" * 64}, license_text="test only")
    return out


@pytest.fixture(scope="module")
def dialogue10() -> tuple[np.ndarray, np.ndarray]:
    user = synth_speech(10.0, RATE, 1, [(0.2, 4.5), (7.0, 7.4)])
    agent = synth_speech(10.0, RATE, 2, [(4.6, 9.8)])
    return user, agent


def test_manifest_describes_the_bundle(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    man = b.manifest
    assert b.info.frames_per_turn == 25 and b.info.samples_per_turn == 16000 and b.info.max_context_turns == 8
    assert b.channels == CHANNEL_NAMES and b.channels[50] == "jaw_x" and b.channels[55] == "neck_z"
    assert man["diffusion"]["respaced"]["5"]["timesteps"] == [0, 250, 500, 749, 999]
    assert man["audio"]["normalization"] == "per_file_zero_mean_unit_variance"
    assert man["license"]["weights"] == "test only" and len(man["source"]["sha256"]) == 64
    assert b.separators.shape == (10, 64) and b.fake_latent.shape == (64,)
    for name in ("speech_encoder", "motion_encoder", "backbone", "diffusion_head"):
        assert (bundle_dir / man["files"][name]["path"]).stat().st_size > 0
    assert max(man["parity"]["max_abs_error"].values()) < PARITY


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_engine_equals_pytorch_over_a_dialogue_with_history(tiny_model, bundle_dir, dialogue10, cfg_scale) -> None:
    model, feats = tiny_model
    user, agent = dialogue10
    motion = np.random.default_rng(0).normal(0, 0.1, (250, 56)).astype(np.float32)
    opts = SamplingOptions(context_turns=7, seed=11, cfg=cfg_scale)
    engine = generate_dialogue(OnnxBackend(bundle_dir, device="cpu"), user, agent, motion, opts)
    torch_out = generate_dialogue(TorchBackend(model, feats), user, agent, motion, opts)
    assert engine.motion.shape == (250, 56)
    assert np.abs(engine.motion - torch_out.motion).max() < PARITY
    assert engine.agent_speaking[150:240].mean() > 0.8 and engine.agent_speaking[10:100].mean() < 0.2


@pytest.mark.slow  # 33-35 s on 2 loaded cores
def test_official_checkpoint_through_the_official_path(official_tiny: Path, tmp_path: Path, dialogue10) -> None:
    ck = load_checkpoint(official_tiny / "official_tiny.pth")
    feats = build_speech_features(ck.config, official_tiny / "wav2vec2_tiny")
    out = tmp_path / "official"
    man = export_bundle(ck.model, feats, out, source={"checkpoint": ck.path.name, "sha256": ck.sha256},
                        license_text="fixture")
    assert man["source"]["sha256"] == ck.sha256
    user, agent = dialogue10
    for cfg_scale in (1.0, 1.5):
        opts = SamplingOptions(context_turns=7, seed=5, cfg=cfg_scale)
        a = generate_dialogue(OnnxBackend(out, device="cpu"), user, agent, None, opts).motion
        b = generate_dialogue(TorchBackend(ck.model, feats), user, agent, None, opts).motion
        assert np.abs(a - b).max() < PARITY


def test_streaming_equals_offline(bundle_dir, dialogue10) -> None:
    user, agent = dialogue10
    be = OnnxBackend(bundle_dir, device="cpu")
    opts = SamplingOptions(context_turns=3, seed=2)
    for norm in ("running", "file"):
        offline = generate_dialogue(be, user[:52000], agent[:52000], None, opts, normalization=norm).motion
        stats = {}
        if norm == "file":
            stats = {"user_stats": (float(user[:52000].mean()), float(user[:52000].var())),
                     "agent_stats": (float(agent[:52000].mean()), float(agent[:52000].var()))}
        stream = DialogueStream(be, opts, normalization=norm, **stats)
        frames, pos = [], 0
        for size in (7000, 9000, 16000, 3000, 17000):  # pieces that do not line up with turns
            for r in stream.push(user[pos:pos + size], agent[pos:pos + size]):
                frames.append(r.motion)
            pos += size
        frames += [r.motion for r in stream.flush()]
        streamed = np.concatenate(frames)[: len(offline)]
        assert len(np.concatenate(frames)) == 4 * 25
        np.testing.assert_array_equal(streamed, offline)


def test_cpu_provider_is_reported(bundle_dir) -> None:
    be = OnnxBackend(bundle_dir)
    assert be.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    if be.provider == "CPUExecutionProvider":
        assert "CUDA" in be.choice.reason
        with pytest.raises(RuntimeError, match="CUDA was requested"):
            OnnxBackend(bundle_dir, device="cuda")
    assert OnnxBackend(bundle_dir, device="cpu").choice.reason == "CPU requested"


def test_threads_option_gives_the_same_numbers(bundle_dir, dialogue10) -> None:
    user, agent = dialogue10
    opts = SamplingOptions(seed=1)
    a = generate_dialogue(OnnxBackend(bundle_dir, device="cpu", threads=1), user[:32000], agent[:32000], None, opts)
    b = generate_dialogue(OnnxBackend(bundle_dir, device="cpu", threads=2), user[:32000], agent[:32000], None, opts)
    assert np.abs(a.motion - b.motion).max() < 1e-5


def test_awkward_audio_gives_frames_or_a_clear_error(bundle_dir) -> None:
    be = OnnxBackend(bundle_dir, device="cpu")
    short = synth_speech(0.6, RATE, 3, [(0, 0.6)])
    out = generate_dialogue(be, short, short)  # shorter than one turn: padded, trimmed
    assert out.motion.shape == (15, 56) and np.isfinite(out.motion).all()
    silence = np.zeros(2 * RATE, np.float32)
    assert np.isfinite(generate_dialogue(be, silence, silence).motion).all()
    clipped = np.clip(synth_speech(2.0, RATE, 4, [(0, 2)]) * 50, -1, 1)
    assert np.isfinite(generate_dialogue(be, clipped, clipped).motion).all()
    long_user = synth_speech(3.0, RATE, 5, [(0, 3)])
    mismatched = generate_dialogue(be, long_user, short)  # shorter track padded with silence
    assert mismatched.motion.shape == (75, 56) and np.isfinite(mismatched.motion).all()
    bad = short.copy()
    bad[100] = np.nan
    with pytest.raises(AudioError, match="agent audio: 1 NaN or infinite"):
        generate_dialogue(be, short, bad)
    bad[100] = np.inf
    with pytest.raises(AudioError, match="user audio"):
        generate_dialogue(be, bad, short)
    with pytest.raises(ValueError, match="shorter than one turn"):
        generate_dialogue(be, short, short, last_turn="drop")


def _broken(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broken"
    shutil.copytree(bundle_dir, dst)
    return dst


def _edit_manifest(folder: Path, fn) -> None:
    path = folder / "manifest.json"
    man = json.loads(path.read_text())
    fn(man)
    path.write_text(json.dumps(man))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "backbone.onnx").unlink(), r"backbone\.onnx: missing"),
        (lambda f: (f / "diffusion_head.onnx").write_bytes((f / "diffusion_head.onnx").read_bytes()[:500]),
         r"diffusion_head\.onnx: contents do not match"),
        (lambda f: (f / "manifest.json").write_text("{not json"), r"manifest\.json: not valid JSON"),
        (lambda f: (f / "manifest.json").unlink(), r"manifest\.json: not found"),
        (lambda f: _edit_manifest(f, lambda m: m.update(version=99)), "manifest version 99"),
        (lambda f: _edit_manifest(f, lambda m: m["model"].update(turn_length=111)), "turn_length disagrees"),
        (lambda f: _edit_manifest(f, lambda m: m["model"].update(token_dim=65)), r"tokens\.npz: shapes"),
        (lambda f: _edit_manifest(f, lambda m: m["model"]["separators"].reverse()), "official order"),
        (lambda f: _edit_manifest(f, lambda m: m["diffusion"]["respaced"]["5"].update(timesteps=[0, 1, 2, 3, 4])),
         "respaced timesteps"),
        (lambda f: _edit_manifest(f, lambda m: m["files"]["backbone"].update(path="../x.onnx")), "inside the bundle"),
        (lambda f: _edit_manifest(f, lambda m: m.update(channels=["a"])), "channel names"),
        (lambda f: _edit_manifest(f, lambda m: m["model"].pop("width")), "missing 'width'"),
    ],
)
def test_broken_bundles_are_refused_by_name(bundle_dir, tmp_path, damage, message) -> None:
    folder = _broken(bundle_dir, tmp_path)
    damage(folder)
    with pytest.raises(BundleError, match=message):
        OnnxBackend(folder, device="cpu")


def test_corrupt_graph_with_hash_checks_off_still_names_the_file(bundle_dir, tmp_path) -> None:
    folder = _broken(bundle_dir, tmp_path)
    (folder / "motion_encoder.onnx").write_bytes(b"garbage")
    with pytest.raises(BundleError, match=r"motion_encoder\.onnx: onnxruntime cannot load it"):
        OnnxBackend(load_bundle(folder, verify_hashes=False), device="cpu")


def wav2vec2_large_folder(folder: Path) -> Path:
    """A randomly initialised wav2vec2 with the architecture of wav2vec2-large-960h-lv60-self."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, feat_extract_activation="gelu",
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_official_large_layout_exports_and_runs_a_turn(tmp_path: Path) -> None:
    """The paper's timar_large (437 tensors) plus a wav2vec2-large-shaped speech encoder, random weights:
    export (external data for the >1 GiB graphs) and one turn in onnxruntime."""
    cfg = preset("timar_large")
    model = Timar(cfg).eval()
    assert len(model.state_dict()) == 437
    feats = build_speech_features(cfg, wav2vec2_large_folder(tmp_path / "w2v"))
    man = export_bundle(model, feats, tmp_path / "large", source={"checkpoint": "random"}, license_text="test",
                        check=False)
    assert man["files"]["backbone"]["external_data"] == ["backbone.onnx.data"]
    assert man["files"]["speech_encoder"]["external_data"] == ["speech_encoder.onnx.data"]
    del model, feats
    be = OnnxBackend(tmp_path / "large", device="cpu")
    user = synth_speech(1.0, RATE, 1, [(0, 1)])
    out = generate_dialogue(be, user, np.zeros_like(user), None, SamplingOptions(context_turns=7, seed=0))
    assert out.motion.shape == (25, 56) and np.isfinite(out.motion).all()


@pytest.mark.slow  # 33-35 s on 2 loaded cores
def test_fp16_bundle_runs_with_its_error_measured(tiny_model, bundle_dir, tmp_path: Path, dialogue10) -> None:
    model, feats = tiny_model
    man = export_bundle(model, feats, tmp_path / "half", source={}, license_text="test", fp16=True)
    assert man["precision"] == "fp16"
    errors = man["parity"]["max_abs_error"]
    assert 0 < max(errors.values()) < 0.1  # measured, not zero: the graphs really run in half precision
    half = (tmp_path / "half" / "backbone.onnx").stat().st_size
    assert half < 0.7 * (bundle_dir / "backbone.onnx").stat().st_size  # weights stored as float16
    user, agent = dialogue10
    out = generate_dialogue(OnnxBackend(tmp_path / "half", device="cpu"), user[:32000], agent[:32000])
    assert np.isfinite(out.motion).all()
