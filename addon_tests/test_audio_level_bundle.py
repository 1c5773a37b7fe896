"""A raw-level model (audio_normalization "none", level-preserving log-mel norm) end to end: checkpoint ->
real ONNX export -> bundle -> engine. The manifest says "none", the engine feeds raw samples (no
statistics: streaming = offline = live), ORT matches PyTorch, a quiet track stays quiet in the speech
tokens, and an unknown normalisation is refused in one line naming the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synth_speech

from model_export.checkpoint import load_checkpoint, save_checkpoint
from model_export.config import preset
from model_export.corpus.acoustics import room_tone, tone_bank
from model_export.export import export_bundle
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import TorchBackend
from timar_blender.engine.audio import normalize_per_file
from timar_blender.engine.bundle import BundleError, load_bundle
from timar_blender.engine.capture import WaveSource
from timar_blender.engine.dialogue import DialogueStream, generate_dialogue, live_normalization
from timar_blender.engine.live import LiveSession
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

RATE = 16_000
PARITY = 1e-4
_rng = np.random.default_rng(5)
MEAN = tuple(float(v) for v in _rng.normal(0, 0.1, 56))
STD = tuple(float(v) for v in _rng.uniform(0.05, 1.0, 56))
# timar_cpu_v2's audio path and backbone scheme at timar_cpu_tiny's size
RAW_TINY = dict(position="turn_relative", motion_norm=True, motion_mean=MEAN, motion_std=STD,
                audio_normalization="none", logmel_frame_norm=False, audio_gain_jitter_db=6.0)


@pytest.fixture(scope="module")
def raw_checkpoint(tmp_path_factory) -> Path:
    """A v2-style tiny model trained 0 steps, saved as our checkpoint."""
    torch.manual_seed(3)
    model = Timar(preset("timar_cpu_tiny", **RAW_TINY)).eval()
    with torch.no_grad():  # a fresh head predicts x0 = 0 (zero-initialised output layer): give it signal
        for p in model.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
        model.speech_frontend.norm.weight.mul_(1.5)  # the learnable affine, moved off its init
        model.speech_frontend.norm.bias.add_(0.1)
    path = tmp_path_factory.mktemp("ck") / "raw.pth"
    sd = model.state_dict()
    save_checkpoint(path, model.cfg, sd, {k: v.clone() for k, v in sd.items()}, epoch=0, step=0)
    return path


@pytest.fixture(scope="module")
def raw(raw_checkpoint, tmp_path_factory) -> tuple[Timar, torch.nn.Module, Path]:
    ck = load_checkpoint(raw_checkpoint)
    feats = build_speech_features(ck.config)
    out = tmp_path_factory.mktemp("bundles") / "raw"
    export_bundle(ck.model, feats, out, source={"checkpoint": "random", "sha256": "0" * 64}, license_text="test only")
    return ck.model, feats, out


def test_config_round_trips_through_checkpoint_export_and_bundle(raw) -> None:
    model, _, folder = raw
    assert model.cfg == preset("timar_cpu_tiny", **RAW_TINY)
    assert model.speech_frontend.norm.bias.mean().item() == pytest.approx(0.1)  # the trained affine loaded
    man = json.loads((folder / "manifest.json").read_text())
    assert man["audio"] == {"sample_rate": RATE, "channels": 1, "normalization": "none"}
    info = load_bundle(folder).info
    assert info.audio_normalization == "none" and info == model.cfg.model_info()
    assert live_normalization(info) == "none"


def test_onnx_speech_encoder_matches_pytorch_at_every_level(raw) -> None:
    model, feats, folder = raw
    errors = json.loads((folder / "manifest.json").read_text())["parity"]["max_abs_error"]
    assert errors["speech_encoder"] < PARITY and errors["speech_encoder_quiet"] < PARITY
    ort, pt = OnnxBackend(folder, device="cpu"), TorchBackend(model, feats)
    rng = np.random.default_rng(0)
    chunks = np.stack([
        room_tone(RATE, rng, -60.0, tone_bank()[7]),  # room tone
        room_tone(RATE, rng, -75.0, tone_bank()[100]),  # quieter than the log floor in most bins
        synth_speech(1.0, RATE, 4, [(0.0, 1.0)]) * np.float32(0.05),  # speech
        np.zeros(RATE, np.float32),  # digital silence
    ])
    a, b = ort.encode_speech(chunks), pt.encode_speech(chunks)
    assert np.abs(a - b).max() < PARITY * max(1.0, float(np.abs(b).max()))


def _token_distance(backend, a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = backend.encode_speech(a[None]), backend.encode_speech(b[None])
    return float(np.sqrt(np.mean((ta - tb) ** 2)))


def test_room_tone_sounds_like_silence_only_when_levels_are_kept(raw) -> None:
    """Speech tokens: room tone at -60 dBFS is near digital silence for the raw model, while per-file
    normalisation makes the same room tone as far from silence as speech is (random weights)."""
    _, _, folder = raw
    be = OnnxBackend(folder, device="cpu")
    rng = np.random.default_rng(1)
    tone = room_tone(4 * RATE, rng, -60.0, tone_bank()[0])
    speech = synth_speech(4.0, RATE, 2, [(0.0, 4.0)])
    speech = speech * np.float32(10 ** (-26 / 20) / np.sqrt(np.mean(speech**2)))
    silence = np.zeros(RATE, np.float32)
    raw_d = [np.mean([_token_distance(be, x[i * RATE:(i + 1) * RATE], silence) for i in range(4)])
             for x in (tone, speech)]
    file_d = [np.mean([_token_distance(be, x[i * RATE:(i + 1) * RATE], silence) for i in range(4)])
              for x in (normalize_per_file(tone), normalize_per_file(speech))]
    print(f"token distance to silence, tone / speech: raw {raw_d[0]:.3f} / {raw_d[1]:.3f}, "
          f"per file {file_d[0]:.3f} / {file_d[1]:.3f}")
    # measured: raw 0.032 / 0.098, per file 0.142 / 0.112
    assert raw_d[0] < 0.5 * raw_d[1]
    assert file_d[0] > 0.9 * file_d[1]


def test_engine_feeds_raw_samples_and_streaming_equals_offline(raw) -> None:
    model, feats, folder = raw
    be = OnnxBackend(folder, device="cpu")
    user = synth_speech(9.0, RATE, 1, [(0.2, 4.0)]) * np.float32(0.1)
    agent = synth_speech(9.0, RATE, 2, [(4.2, 8.8)]) * np.float32(0.1)
    agent[: 4 * RATE] += room_tone(4 * RATE, np.random.default_rng(2), -60.0, tone_bank()[3])
    opts = SamplingOptions(context_turns=4, seed=1)
    offline = generate_dialogue(be, user, agent, None, opts).motion
    np.testing.assert_array_equal(generate_dialogue(be, user, agent, None, opts, normalization="none").motion, offline)
    stream = DialogueStream(be, opts)
    frames, pos = [], 0
    for size in (5000, 23000, 16000, 700, 40000, 60000):  # not aligned with turns
        frames += [r.motion for r in stream.push(user[pos:pos + size], agent[pos:pos + size])]
        pos += size
    frames += [r.motion for r in stream.flush()]
    np.testing.assert_array_equal(np.concatenate(frames)[: len(offline)], offline)
    # the engine equals PyTorch on the raw samples (no statistics anywhere)
    torch_out = generate_dialogue(TorchBackend(model, feats), user, agent, None, opts).motion
    assert np.abs(torch_out - offline).max() < 1e-4
    # a louder copy of the same dialogue is a different input for this model (per-file would erase it)
    louder = generate_dialogue(be, user * np.float32(4), agent * np.float32(4), None, opts).motion
    assert np.abs(louder - offline).max() > 1e-3


def test_live_session_equals_offline(raw) -> None:
    """Live input gets no running statistics: the take equals the offline generation of what was heard."""
    import time

    _, _, folder = raw
    be = OnnxBackend(folder, device="cpu")
    user = synth_speech(3.4, RATE, 3, [(0.1, 3.0)]) * np.float32(0.1)
    opts = SamplingOptions(context_turns=3, seed=2)
    session = LiveSession(be, WaveSource(user, RATE, realtime=False), opts, max_seconds=3.0)
    assert session.stream._norm == [None, None]
    session.start()
    t0 = time.perf_counter()
    while not (session.done or session.error) and time.perf_counter() - t0 < 60:
        session.poll()
        time.sleep(0.01)
    take = session.stop()
    assert take.error is None and len(take.user_audio) == 3 * RATE
    expected = generate_dialogue(be, take.user_audio, take.agent_audio, None, opts).motion
    np.testing.assert_array_equal(take.motion, expected)


def test_rescaling_a_raw_models_audio_is_refused(raw) -> None:
    _, _, folder = raw
    be = OnnxBackend(folder, device="cpu")
    x = np.zeros(RATE, np.float32)
    for norm in ("file", "running"):
        with pytest.raises(ValueError, match="raw audio levels"):
            generate_dialogue(be, x, x, normalization=norm)
        with pytest.raises(ValueError, match="raw audio levels"):
            DialogueStream(be, normalization=norm)


@pytest.mark.parametrize("value", ["peak", None, "per_file"])
def test_unknown_normalisation_is_refused_naming_the_manifest(raw, tmp_path: Path, value) -> None:
    _, _, folder = raw
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["audio"]["normalization"] = value
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BundleError) as err:
        load_bundle(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad / "manifest.json") in msg and "normalisation" in msg and repr(value) in msg
