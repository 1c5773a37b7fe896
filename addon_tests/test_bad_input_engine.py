"""Bad input to the engine and the exporter (no Blender): audio files, model bundles, checkpoints and
export folders. Each kind asserts its exact outcome — a one-line error naming the file and the field,
or a correct take — and, for a refusal, that no input file changed. One engine load serves every
audio case; every bundle case works on its own copy of the bundled model."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch  # imported here, not inside a test: torch binds its log handlers to the stderr of the moment
from bad_input_helpers import (
    BUNDLED,
    RATE,
    assert_one_line,
    copy_bundle,
    edit_manifest,
    flac_declaring,
    pcm16_wav,
    sound,
    speech,
    tree_state,
    write,
)

from timar_blender.engine.audio import AudioError, load_audio
from timar_blender.engine.bundle import BundleError
from timar_blender.engine.dialogue import generate_dialogue
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

pytestmark = pytest.mark.skipif(not (BUNDLED / "manifest.json").exists(), reason="no bundled model")


@pytest.fixture(scope="module")
def backend() -> OnnxBackend:
    return OnnxBackend(BUNDLED, device="cpu", threads=1)


# ----------------------------------------------------------------------------- audio files

def _float_wav_with(value: float) -> Callable[[Path], Path]:
    def make(p: Path) -> Path:
        x = speech(1.0)
        x[4000] = value
        return sound(p, x, subtype="FLOAT")

    return make


def _wav_zero_samples(p: Path) -> Path:
    return write(p, pcm16_wav(RATE, np.zeros(0)))


def _flac_garbage(p: Path) -> Path:
    data = bytearray(sound(p, speech(1.0), format="FLAC").read_bytes())
    data[200:] = np.random.default_rng(3).integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    return write(p, bytes(data))


# name -> (file maker, load_audio keyword arguments, what the message must say)
AUDIO_REFUSED: dict[str, tuple[Callable[[Path], Path], dict, str]] = {
    "missing": (lambda p: p, {}, "audio file not found"),
    "directory": (lambda p: (p.mkdir(), p)[1], {}, "audio file not found"),
    "zero_bytes": (lambda p: write(p, b""), {}, r"audio file is empty \(0 bytes\)"),
    "text_named_wav": (lambda p: write(p, b"this is not audio\n" * 50), {}, "cannot read audio"),
    "truncated_header": (lambda p: write(p, pcm16_wav(RATE, speech(1.0))[:30]), {}, "cannot read audio"),
    "header_rate_1hz": (lambda p: write(p, pcm16_wav(1, speech(3.0))), {}, "sample rate 1 Hz is outside 4000-384000"),
    "header_rate_3999hz": (lambda p: write(p, pcm16_wav(3999, speech(1.0))), {}, "sample rate 3999 Hz is outside"),
    "header_rate_500khz": (lambda p: write(p, pcm16_wav(500_000, speech(1.0))), {}, "sample rate 500000 Hz"),
    "flac_declares_5_hours": (lambda p: flac_declaring(p, 5 * 3600), {}, r"5\.0 hours of audio; at most 4 hours"),
    "flac_declares_3_hours_at_384khz": (lambda p: flac_declaring(p, 3 * 3600, 384_000), {},
                                        "more than 1073741824 samples to decode"),
    "float_wav_nan": (_float_wav_with(np.nan), {}, "NaN or infinite samples"),
    "float_wav_inf": (_float_wav_with(np.inf), {}, "NaN or infinite samples"),
    "wav_without_samples": (_wav_zero_samples, {}, "cannot read audio|holds no samples"),
    "six_channels_as_stereo": (lambda p: sound(p, np.tile(speech(1.0)[:, None], (1, 6))), {"channel": 0},
                               "one stereo file .* has 6 channels"),
    "mono_as_stereo_right": (lambda p: sound(p, speech(1.0)), {"channel": 1},
                             "channel 1 requested but the file is mono"),
    "seventy_channels": (lambda p: sound(p, np.zeros((1600, 70), np.float32), subtype="FLOAT"), {},
                         "70 channels; at most 64"),
    "random_bytes_flac": (lambda p: write(p, np.random.default_rng(1).bytes(5000)), {}, "cannot read audio"),
    "flac_damaged_frames": (_flac_garbage, {}, "cannot read audio|NaN"),
}


@pytest.mark.parametrize("kind", sorted(AUDIO_REFUSED))
def test_bad_audio_file_is_refused_by_name(kind: str, tmp_path: Path) -> None:
    make, kwargs, message = AUDIO_REFUSED[kind]
    suffix = ".flac" if "flac" in kind else ".wav"
    path = make(tmp_path / f"{kind}{suffix}")
    before = tree_state(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, **kwargs)
    assert time.perf_counter() - t0 < 5.0  # refused from the header, not after decoding gigabytes
    assert str(info.value).startswith(str(path))
    assert_one_line(str(info.value), str(path))
    assert tree_state(tmp_path) == before


# name -> (file maker, load_audio keyword arguments, expected samples at 16 kHz)
AUDIO_ACCEPTED: dict[str, tuple[Callable[[Path], Path], dict, int]] = {
    "silence": (lambda p: sound(p, np.zeros(2 * RATE, np.float32)), {}, 2 * RATE),
    "ten_milliseconds": (lambda p: sound(p, speech(0.01)), {}, 160),
    "rate_4khz_edge": (lambda p: write(p, pcm16_wav(4000, speech(1.0, rate=4000))), {}, RATE),
    "rate_384khz_edge": (lambda p: sound(p, speech(0.5, rate=384_000), 384_000), {}, RATE // 2),
    "pcm_u8": (lambda p: sound(p, speech(1.0), subtype="PCM_U8"), {}, RATE),
    "pcm_24": (lambda p: sound(p, speech(1.0), subtype="PCM_24"), {}, RATE),
    "float64": (lambda p: sound(p, speech(1.0), subtype="DOUBLE"), {}, RATE),
    "mu_law": (lambda p: sound(p, speech(1.0), subtype="ULAW"), {}, RATE),
    "flac_44k1": (lambda p: sound(p, speech(1.0, rate=44_100), 44_100, format="FLAC"), {}, RATE),
    "ogg_vorbis": (lambda p: sound(p, speech(1.0, rate=22_050), 22_050, format="OGG", subtype="VORBIS"), {}, RATE),
    "clipped_square": (lambda p: sound(p, np.sign(np.sin(np.arange(RATE) / 9.0)).astype(np.float32)), {}, RATE),
    "dc_only": (lambda p: sound(p, np.full(RATE, 0.9, np.float32)), {}, RATE),
    "six_channels_mixed_down": (lambda p: sound(p, np.tile(speech(1.0)[:, None], (1, 6)) / 6), {}, RATE),
    "stereo_right_channel": (lambda p: sound(p, np.stack([speech(1.0, 1), speech(1.0, 2)], 1)), {"channel": 1}, RATE),
}


@pytest.mark.parametrize("kind", sorted(AUDIO_ACCEPTED))
def test_awkward_audio_gives_a_correct_take(kind: str, tmp_path: Path, backend: OnnxBackend) -> None:
    make, kwargs, samples = AUDIO_ACCEPTED[kind]
    suffix = ".flac" if "flac" in kind else ".ogg" if "ogg" in kind else ".wav"
    path = make(tmp_path / f"{kind}{suffix}")
    before = tree_state(tmp_path)
    wave = load_audio(path, **kwargs)
    assert wave.dtype == np.float32 and abs(len(wave) - samples) <= 2 and np.isfinite(wave).all()
    take = generate_dialogue(backend, wave, wave, options=SamplingOptions(seed=1))
    frames = max(1, round(len(wave) / RATE * 25))
    assert take.motion.shape == (frames, 56) and np.isfinite(take.motion).all()
    assert np.abs(take.motion).max() < 10  # a take, not a blow-up
    assert tree_state(tmp_path) == before


# ----------------------------------------------------------------------------- model bundles

def _man(fn) -> Callable[[Path], None]:
    return lambda folder: edit_manifest(folder, fn)


def _set(section: str, key: str, value) -> Callable[[Path], None]:
    return _man(lambda m: m[section].__setitem__(key, value))


def _respaced(m: dict) -> dict:
    d = m["diffusion"]
    return d["respaced"][str(d["default_sampling_steps"])]


def _swap_graph_files(m: dict) -> None:
    """The speech and motion encoders' paths and hashes swapped; names and shapes left as declared."""
    a, b = m["files"]["speech_encoder"], m["files"]["motion_encoder"]
    a["path"], b["path"] = b["path"], a["path"]
    a["sha256"], b["sha256"] = b["sha256"], a["sha256"]


def _swap_graph_entries(m: dict) -> None:
    f = m["files"]
    f["speech_encoder"], f["motion_encoder"] = f["motion_encoder"], f["speech_encoder"]


def _graph_link_outside(folder: Path) -> None:
    outside = folder.parent / "elsewhere.onnx"
    (folder / "backbone.onnx").rename(outside)
    (folder / "backbone.onnx").symlink_to(outside)


def _stray_link_outside(folder: Path) -> None:
    (folder / "backbone.onnx.data").symlink_to("/etc/hostname")


def _deep_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)


def _tokens(values) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        seps, fake = values()
        np.savez(folder / "tokens.npz", separators=seps, fake_latent=fake)
        import hashlib

        digest = hashlib.sha256((folder / "tokens.npz").read_bytes()).hexdigest()
        edit_manifest(folder, lambda m: m["files"]["constants"].__setitem__("sha256", {"tokens.npz": digest}))

    return damage


def _tokens_file(write_it: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        import hashlib

        write_it(folder / "tokens.npz")
        digest = hashlib.sha256((folder / "tokens.npz").read_bytes()).hexdigest()
        edit_manifest(folder, lambda m: m["files"]["constants"].__setitem__("sha256", {"tokens.npz": digest}))

    return damage


def _bomb(path: Path) -> None:
    """A 1-kB .npz whose fake_latent header declares 10^9 floats (4 GB once loaded)."""
    import io
    import zipfile

    with np.load(BUNDLED / "tokens.npz") as z:
        seps = z["separators"]
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.BytesIO()
        np.save(buf, seps)
        zf.writestr("separators.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
        zf.writestr("fake_latent.npy", buf.getvalue() + bytes(64))


def _nan_tokens():
    with np.load(BUNDLED / "tokens.npz") as z:
        seps = z["separators"].copy()
        seps[3, 5] = np.nan
        return seps, z["fake_latent"]


def _object_tokens():
    return np.array([{"x": 1}], dtype=object), np.zeros(3)


# name -> (damage, what the message must say (regex), whether it names the manifest or a file)
BUNDLE_REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    "no_manifest": (lambda f: (f / "manifest.json").unlink(), r"manifest\.json: not found"),
    "manifest_not_json": (lambda f: (f / "manifest.json").write_text("{nope"), r"manifest\.json: not valid JSON"),
    "manifest_nested_100k": (_deep_manifest, r"manifest\.json: not valid JSON"),
    "manifest_is_a_list": (lambda f: (f / "manifest.json").write_text("[]"), "not a timar-model-bundle manifest"),
    "version_2": (_man(lambda m: m.update(version=2)), "manifest version 2"),
    "train_steps_1e8": (_set("diffusion", "train_steps", 100_000_000),
                        r"\[diffusion\]: 'train_steps' is 100000000; this engine accepts 1\.\.10000"),
    "train_steps_1e12_float": (_set("diffusion", "train_steps", 1e12), r"'train_steps' has the wrong type \(float\)"),
    "sampling_steps_0": (_set("diffusion", "default_sampling_steps", 0), "'default_sampling_steps' is 0"),
    "sampling_steps_above_train_steps": (_man(lambda m: m["diffusion"].update(train_steps=100,
                                                                             default_sampling_steps=500)),
                                         "default_sampling_steps 500 exceeds train_steps 100"),
    "unknown_schedule": (_set("diffusion", "schedule", "sigmoid"), r"\[diffusion\]: unknown schedule 'sigmoid'"),
    "coefficient_is_text": (_man(lambda m: _respaced(m)["log_betas"].__setitem__(2, "x")),
                            r"respaced 'log_betas' holds 'x', not a finite number"),
    "coefficient_wrong_value": (_man(lambda m: _respaced(m)["posterior_mean_coef1"].__setitem__(0, 0.5)),
                                "'posterior_mean_coef1' disagrees with the cosine"),
    "coefficients_too_few": (_man(lambda m: _respaced(m)["log_betas"].pop()),
                             r"respaced 'log_betas' must be a list of \d+ numbers"),
    "frames_per_turn_30": (_man(lambda m: m["model"].update(frames_per_turn=30, turn_length=130)),
                           r"speech_encoder\.onnx: output 'speech_tokens' has shape .* implies \['\*', 30, "),
    "samples_per_turn_8000": (_set("model", "samples_per_turn", 8000),
                              r"speech_encoder\.onnx: input 'audio' has shape .* implies \['\*', 8000\]"),
    "speech_rate_1e30": (_set("model", "speech_rate", 10**30), r"\[model\]: 'speech_rate' is 1000000000000000"),
    "fps_absurd": (_man(lambda m: m["model"].update(frames_per_turn=250, turn_length=1010, samples_per_turn=1600)),
                   "2500 frames/s; this engine accepts"),
    "max_context_turns_0": (_set("model", "max_context_turns", 0), "'max_context_turns' is 0"),
    "token_dim_negative": (_set("model", "token_dim", -128), "'token_dim' is -128"),
    "width_wrong": (_set("model", "width", 132), r"backbone\.onnx: output 'z' has shape .* implies"),
    "cached_backbone_kind_missing": (_man(lambda m: m["model"].pop("backbone")),
                                     r"\[model\]: the backbone graph is a cached one .* 'missing'"),
    "cached_backbone_called_window": (_set("model", "backbone", "window"),
                                      r"\[model\]: the backbone graph is a cached one .* 'window'"),
    "motion_dim_57": (_set("model", "motion_dim", 57), "'motion_dim' is 57; this engine accepts 56"),
    "channels_not_text": (_man(lambda m: m.update(channels=list(range(56)))), "list of channel names"),
    "channels_reordered": (_man(lambda m: m["channels"].reverse()), "56 FLAME channel names in order"),
    "graphs_swapped_hashes_fixed": (_man(_swap_graph_files),
                                    r"graph's inputs are \['motion'\] but .* lists \['audio'\]"),
    "graph_entries_swapped": (_man(_swap_graph_entries), r"the speech_encoder graph has no input 'audio'"),
    "head_inputs_misdeclared": (_man(lambda m: m["files"]["diffusion_head"].update(inputs=["x", "t"])),
                                r"graph's inputs are \['c', 't', 'x'\]"),
    "external_data_integer": (_man(lambda m: m["files"]["backbone"].update(external_data=[5])),
                              "'backbone' external_data must be a list of file names"),
    "external_data_escapes": (_man(lambda m: m["files"]["backbone"].update(external_data=["../../../../etc/hostname"])),
                              "external_data path '../../../../etc/hostname' must stay inside the bundle"),
    "graph_path_escapes": (_man(lambda m: m["files"]["backbone"].update(path="sub/../../x.onnx")),
                           "must stay inside the bundle"),
    "graph_symlinked_outside": (_graph_link_outside, "a link leading outside the bundle"),
    "stray_link_outside": (_stray_link_outside, r"backbone\.onnx\.data: a link leading outside the bundle"),
    "sha256_not_a_mapping": (_man(lambda m: m["files"]["backbone"].update(sha256="abc")), "sha256 must map"),
    "graph_truncated": (lambda f: (f / "backbone.onnx").write_bytes((f / "backbone.onnx").read_bytes()[:999]),
                        r"backbone\.onnx: contents do not match the manifest's SHA-256"),
    "tokens_hold_nan": (_tokens(_nan_tokens), r"tokens\.npz: holds non-finite values"),
    "tokens_are_pickles": (_tokens(_object_tokens), r"tokens\.npz: shapes disagree with the manifest: 'separators'"),
    "tokens_decompression_bomb": (_tokens_file(_bomb), r"tokens\.npz: shapes disagree .* \(1000000000,\)"),
    "tokens_not_a_zip": (_tokens_file(lambda p: p.write_bytes(b"not a zip")), r"tokens\.npz: cannot read"),
}


@pytest.mark.parametrize("kind", sorted(BUNDLE_REFUSED))
def test_bad_bundle_is_refused_fast_by_file_and_field(kind: str, tmp_path: Path) -> None:
    damage, message = BUNDLE_REFUSED[kind]
    folder = copy_bundle(tmp_path / "bundle")
    damage(folder)
    before = tree_state(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(BundleError, match=message) as info:
        OnnxBackend(folder, device="cpu", threads=1)
    assert time.perf_counter() - t0 < 5.0
    assert_one_line(str(info.value), str(folder))
    assert tree_state(tmp_path) == before


def test_bundle_with_unknown_extra_fields_still_loads(tmp_path: Path, backend: OnnxBackend) -> None:
    """Fields this engine does not know (a newer exporter's) are not refused; the take is the same."""
    folder = copy_bundle(tmp_path / "bundle")
    edit_manifest(folder, lambda m: m.update(future_field={"x": 1}) or m["model"].update(future_number=10**40))
    other = OnnxBackend(folder, device="cpu", threads=1)
    wave = speech(2.0)
    a = generate_dialogue(other, wave, wave, options=SamplingOptions(seed=2)).motion
    b = generate_dialogue(backend, wave, wave, options=SamplingOptions(seed=2)).motion
    assert np.array_equal(a, b)


def test_loading_can_be_cancelled(tmp_path: Path) -> None:
    from timar_blender.engine.dialogue import Cancelled

    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 1  # let the first graph load, then cancel

    with pytest.raises(Cancelled, match="cancelled while loading the model"):
        OnnxBackend(BUNDLED, device="cpu", threads=1, should_cancel=cancel)
    assert len(asked) == 2


# ----------------------------------------------------------------------------- checkpoints and export folders

def _export_cli(args: list[str], capsys) -> tuple[int, str]:
    import logging

    from model_export.__main__ import main

    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        code = main(["export", *args])
    finally:  # the CLI configures logging onto pytest's captured stream: undo it
        root.handlers[:] = handlers
    return code, capsys.readouterr().err.strip()


def test_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    before = tree_state(tmp_path)
    code, err = _export_cli(["--checkpoint", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and not (tmp_path / "pwned").exists()
    assert_one_line(err, "evil.pth", "never loaded")
    assert "weights_only" not in err
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("tool", ["evaluate", "train", "model_card"])
def test_every_cli_refuses_such_a_checkpoint_in_one_line(tool: str, tmp_path: Path) -> None:
    """The training, evaluation and model-card commands read checkpoints too: the same one line."""
    import subprocess
    import sys

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Payload(), "model_ema": Payload()}, tmp_path / "evil.pth")
    args = {
        "evaluate": ["--checkpoint", "evil.pth", "--data", str(tmp_path)],
        "train": ["--init", "evil.pth", "--data", str(tmp_path), "--out", "run"],
        "model_card": ["--bundle", str(BUNDLED), "--fold", "x=evil.pth=a=b", "--long", ".", "--out", "card.md"],
    }[tool]
    before = tree_state(tmp_path)
    proc = subprocess.run([sys.executable, "-m", f"model_export.{tool}", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(BUNDLED.parents[1])})
    assert proc.returncode == 2, proc.stderr
    assert_one_line(proc.stderr.strip().splitlines()[-1], "evil.pth", "never loaded")
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr
    assert not (tmp_path / "pwned").exists() and tree_state(tmp_path) == before


@pytest.mark.parametrize(("kind", "content", "message"), [
    ("not_a_checkpoint", b"PK\x03\x04 not really a zip", "not a loadable checkpoint"),
    ("missing", None, "checkpoint not found"),
])
def test_unusable_checkpoint_is_one_line(kind: str, content: bytes | None, message: str, tmp_path: Path,
                                         capsys) -> None:
    path = tmp_path / f"{kind}.pth"
    if content is not None:
        path.write_bytes(content)
    before = tree_state(tmp_path)
    code, err = _export_cli(["--checkpoint", str(path), "--out", str(tmp_path / "b")], capsys)
    assert code == 2
    assert_one_line(err, str(path), message)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("kind", ["unrelated_folder", "out_is_a_file", "bundle_with_own_files"])
def test_export_never_deletes_what_is_not_a_bundle(kind: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    if kind == "unrelated_folder":
        write(out / "thesis" / "chapter1.tex", b"years of work")
        message = "not empty and not a model bundle"
    elif kind == "out_is_a_file":
        write(out, b"a file")
        message = "exists and is not a folder"
    else:
        copy_bundle(out)
        write(out / "my_notes.txt", b"keep me")
        message = r"holds files that are not part of its bundle \(my_notes.txt\)"
    before = tree_state(tmp_path)
    # refused before the checkpoint is even read (it does not exist)
    code, err = _export_cli(["--checkpoint", str(tmp_path / "none.pth"), "--out", str(out)], capsys)
    assert code == 2
    assert_one_line(err, str(out))
    import re

    assert re.search(message, err)
    assert tree_state(tmp_path) == before


@pytest.fixture(scope="module")
def tiny_model():
    from model_export.config import preset
    from model_export.model import Timar
    from model_export.speech import build_speech_features

    torch.manual_seed(0)
    cfg = preset("timar_cpu_tiny")
    return Timar(cfg).eval(), build_speech_features(cfg)


def test_failed_export_keeps_the_previous_bundle(tmp_path: Path, tiny_model) -> None:
    from model_export.export import export_bundle

    out = copy_bundle(tmp_path / "bundle")
    before = tree_state(tmp_path)
    model, _ = tiny_model
    with pytest.raises(Exception):  # noqa: B017 - torch's exporter's own error: any failure will do
        export_bundle(model, torch.nn.Linear(3, 3), out, source={}, license_text="t", check=False)
    assert tree_state(tmp_path) == before  # the old bundle is whole and nothing is left beside it
    OnnxBackend(out, device="cpu", threads=1)


def test_export_replaces_a_previous_bundle_in_one_step(tmp_path: Path, tiny_model) -> None:
    from model_export.export import export_bundle

    out = copy_bundle(tmp_path / "bundle")
    old = json.loads((out / "manifest.json").read_text())
    model, feats = tiny_model
    export_bundle(model, feats, out, source={"checkpoint": "tiny"}, license_text="t", check=False)
    new = json.loads((out / "manifest.json").read_text())
    assert new["source"] == {"checkpoint": "tiny"} and new["model"]["width"] != old["model"]["width"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # nothing left beside it
    OnnxBackend(out, device="cpu", threads=1)
