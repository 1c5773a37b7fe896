"""The cached backbone end to end (issue 15): a timar_cpu_v2 model (turn-relative positions,
normalised motion; random weights) exported to a bundle whose backbone runs one turn against
cached keys/values; the torch-free engine against the PyTorch whole-dialogue computation, streaming
against offline, and manifests that lie about the backbone or the normalisation refused by name."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synth_speech

from model_export.config import preset
from model_export.export import export_bundle
from model_export.model import Timar
from model_export.speech import build_speech_features
from model_export.torch_backend import TorchBackend
from timar_blender.engine.bundle import BundleError, load_bundle
from timar_blender.engine.dialogue import DialogueStream, generate_dialogue
from timar_blender.engine.model_variant import cached_inputs
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

RATE = 16_000
PARITY = 1e-5
_rng = np.random.default_rng(11)
MEAN = tuple(float(v) for v in _rng.normal(0, 0.2, 56))
STD = tuple(float(v) for v in _rng.uniform(0.01, 1.5, 56))


@pytest.fixture(scope="module")
def v2() -> tuple[Timar, torch.nn.Module]:
    torch.manual_seed(1)
    cfg = preset("timar_cpu_v2", motion_mean=MEAN, motion_std=STD)
    model = Timar(cfg).eval()
    with torch.no_grad():  # random positions and a head with signal, so every part shows in the motion
        for p in (model.encoder_pos_embed_learned, model.diffusion_pos_embed_learned):
            p.normal_(0, 0.5)
        for p in model.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
    return model, build_speech_features(cfg)


@pytest.fixture(scope="module")
def v2_bundle(v2, tmp_path_factory) -> Path:
    model, feats = v2
    out = tmp_path_factory.mktemp("bundles") / "v2"
    export_bundle(model, feats, out, source={"checkpoint": "random", "sha256": "0" * 64}, license_text="test only")
    return out


@pytest.fixture(scope="module")
def dialogue40() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    user = synth_speech(40.0, RATE, 3, [(0.2, 9.5), (15.0, 22.0), (30.0, 31.0)])
    agent = synth_speech(40.0, RATE, 4, [(9.6, 14.8), (22.5, 29.5), (31.5, 39.5)])
    um = np.random.default_rng(2).normal(0, 0.1, (1000, 56)).astype(np.float32)
    return user, agent, um


def test_manifest_says_cached_and_normalised(v2_bundle: Path) -> None:
    man = json.loads((v2_bundle / "manifest.json").read_text())
    assert man["model"]["backbone"] == "turn_relative_cached"
    assert man["files"]["backbone"]["inputs"] == list(cached_inputs(3))  # one cache input per layer
    norm = man["motion_normalization"]
    assert np.allclose(norm["mean"], MEAN) and np.allclose(norm["std"], STD)
    info = load_bundle(v2_bundle).info
    assert info.position == "turn_relative" and info.kv_shape == (3, 4, 32)
    assert info.motion_std == pytest.approx(STD)
    errors = man["parity"]["max_abs_error"]
    assert errors["dialogue_cfg1_vs_uncached"] <= PARITY and errors["dialogue_cfg1.5"] <= PARITY


@pytest.mark.parametrize(
    "opts",
    [pytest.param(dict(), marks=pytest.mark.slow),  # 30-37 s on 2 loaded cores, as is cfg
     pytest.param(dict(cfg=1.5), marks=pytest.mark.slow),
     dict(mask_history_agent=False), dict(num_iter=3, context_turns=4)],
    ids=["default", "cfg", "agent-visible", "num_iter-n4"],
)
def test_engine_equals_the_whole_dialogue_computation(v2, v2_bundle, dialogue40, opts) -> None:
    model, feats = v2
    user, agent, um = dialogue40
    base = SamplingOptions(seed=5, **opts)
    engine = generate_dialogue(OnnxBackend(v2_bundle, device="cpu"), user, agent, um, base).motion
    uncached = dataclasses.replace(base, kv_cache=False)
    reference = generate_dialogue(TorchBackend(model, feats), user, agent, um, uncached)
    assert engine.shape == (1000, 56)
    assert np.abs(engine - reference.motion).max() <= PARITY
    # raw FLAME units: the de-normalised motion sits around the stored mean, not around 0
    assert np.abs(engine.mean(0) - np.asarray(MEAN)).max() < np.abs(engine.mean(0)).max()


def test_streaming_equals_offline(v2_bundle, dialogue40) -> None:
    user, agent, _ = dialogue40
    be = OnnxBackend(v2_bundle, device="cpu")
    opts = SamplingOptions(context_turns=7, seed=2, mask_history_agent=False)
    n = 11 * RATE + 3000
    assert be.info.audio_normalization == "none"  # v2 hears raw levels: no statistics, live = offline
    offline = generate_dialogue(be, user[:n], agent[:n], None, opts).motion
    stream = DialogueStream(be, opts)
    frames, pos = [], 0
    for size in (7000, 9000, 16000, 3000, 17000, 40000, 12000, 45000, 30000):  # not aligned with turns
        frames += [r.motion for r in stream.push(user[pos:pos + size], agent[pos:pos + size])]
        pos += size
    frames += [r.motion for r in stream.flush()]
    np.testing.assert_array_equal(np.concatenate(frames)[: len(offline)], offline)


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> tuple[Timar, torch.nn.Module, Path]:
    """timar_cpu_v3: the upper layers reach 2 turns back, the first all 7 (per-layer key/value rings)."""
    torch.manual_seed(2)
    cfg = preset("timar_cpu_v3", motion_mean=MEAN, motion_std=STD)
    model = Timar(cfg).eval()
    with torch.no_grad():
        for p in (model.encoder_pos_embed_learned, model.diffusion_pos_embed_learned):
            p.normal_(0, 0.5)
        for p in model.diffloss.net.final_layer.parameters():
            p.normal_(0, 0.05)
    feats = build_speech_features(cfg)
    out = tmp_path_factory.mktemp("bundles") / "v3"
    export_bundle(model, feats, out, source={"checkpoint": "random", "sha256": "0" * 64}, license_text="test only")
    return model, feats, out


@pytest.mark.parametrize(
    "opts", [dict(), dict(mask_history_agent=False, context_turns=5)], ids=["default", "visible-n5"]
)
def test_layer_bands_engine_equals_the_whole_dialogue_computation(v3, dialogue40, opts) -> None:
    model, feats, bundle = v3
    man = json.loads((bundle / "manifest.json").read_text())
    assert man["model"]["layer_bands"] == [7, 2, 2]
    be = OnnxBackend(bundle, device="cpu")
    assert be.info.layer_bands == (7, 2, 2) and be.info.layer_reach(5) == (5, 2, 2)
    user, agent, um = dialogue40
    n = 20 * RATE  # 20 turns: every ring wraps
    base = SamplingOptions(seed=4, **opts)
    engine = generate_dialogue(be, user[:n], agent[:n], um[:500], base).motion
    reference = generate_dialogue(TorchBackend(model, feats), user[:n], agent[:n], um[:500],
                                  dataclasses.replace(base, kv_cache=False)).motion
    assert np.abs(engine - reference).max() <= PARITY
    # the bands matter: the same weights reaching all 7 turns in every layer give another take
    wide = Timar(dataclasses.replace(model.cfg, layer_bands=None)).eval()
    wide.load_state_dict(model.state_dict())
    other = generate_dialogue(TorchBackend(wide, feats), user[:n], agent[:n], um[:500],
                              dataclasses.replace(base, kv_cache=False)).motion
    assert np.abs(other - reference).max() > 1e-3


@pytest.mark.parametrize(
    "bands, message",
    [([7, 2], "'layer_bands' must list 3 integers in 0..7"), ([7, 2, 8], "0..7"), ([7, 2, "2"], "0..7")],
    ids=["length", "range", "type"],
)
def test_bad_layer_bands_are_refused_by_field(v3, tmp_path, bands, message) -> None:
    bad = _damaged(v3[2], tmp_path / "bad", lambda m: m["model"].__setitem__("layer_bands", bands))
    with pytest.raises(BundleError, match=r"manifest\.json") as err:
        load_bundle(bad)
    assert message in str(err.value)


def test_engine_refuses_the_uncached_path_with_a_reason(v2_bundle, dialogue40) -> None:
    user, agent, _ = dialogue40
    with pytest.raises(ValueError, match="cached turn-relative backbone only"):
        generate_dialogue(OnnxBackend(v2_bundle, device="cpu"), user[:RATE], agent[:RATE], None,
                          SamplingOptions(kv_cache=False))


def _damaged(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    man = json.loads((dst / "manifest.json").read_text())
    change(man)
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["model"].__setitem__("backbone", "rotary_cached"), "unknown backbone 'rotary_cached'"),
        (lambda m: m["model"].__setitem__("num_heads", 5), "'num_heads' 5 does not divide width 128"),
        (lambda m: m["model"].pop("depth"), "'depth' must be an integer"),
        (lambda m: m["files"]["backbone"].__setitem__("inputs", ["tokens", "mask"]), "turn_relative_cached backbone"),
        (lambda m: m["files"]["backbone"].__setitem__("inputs", ["tokens", "mask", "past_k", "past_v"]),
         "exported before the ring-buffer cache: export it again"),
        (lambda m: m["motion_normalization"].__setitem__("std", [0.0] * 56), "'std' values must lie in"),
        (lambda m: m["motion_normalization"].__setitem__("mean", [0.0] * 3), "'mean' must be 56 finite numbers"),
        (lambda m: m.__setitem__("motion_normalization", [1, 2]), "'motion_normalization' must be null"),
    ],
    ids=["kind", "heads", "depth", "inputs", "old-inputs", "std0", "mean-len", "norm-type"],
)
def test_bad_backbone_or_normalisation_is_refused_by_field(v2_bundle, tmp_path, change, message) -> None:
    bad = _damaged(v2_bundle, tmp_path / "bad", change)
    with pytest.raises(BundleError, match=r"manifest\.json") as err:
        load_bundle(bad)
    assert message in str(err.value)


def test_window_manifest_claiming_a_cache_is_refused_at_session_load(v2_bundle, tmp_path) -> None:
    # the graph's own inputs disagree with a manifest that calls it a window backbone
    def to_window(m):
        m["model"]["backbone"] = "window"
        m["files"]["backbone"]["inputs"] = ["tokens", "mask"]
        m["files"]["backbone"]["outputs"] = ["z"]

    bad = _damaged(v2_bundle, tmp_path / "bad", to_window)
    with pytest.raises(BundleError, match="inputs"):
        OnnxBackend(bad, device="cpu")


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(layer_bands=(7, 2)), "layer_bands must give 3 values in 0..7"),
        (dict(layer_bands=(7, 2, 8)), "layer_bands must give 3 values in 0..7"),
        (dict(layer_bands=(7, 2, 2), position="window"), "layer_bands needs position 'turn_relative'"),
    ],
    ids=["length", "range", "window"],
)
def test_bad_layer_bands_in_a_config_are_refused(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        preset("timar_cpu_v2", **fields)
    assert preset("timar_cpu_v3").bands == (7, 2, 2) and preset("timar_cpu_v2").bands == (7, 7, 7)
