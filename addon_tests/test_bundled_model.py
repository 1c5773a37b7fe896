"""The model shipped inside the extension: what its manifest promises, and that it behaves on real
voices it never heard, recorded with room tone and bleed (mouth closed in silence, jaw locked to its
speech, head moving while listening, seeds giving different head takes), judged by the behaviour
benchmark's measures and goals (``model_export/behaviour_measures.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from timar_blender.engine.bundle import load_bundle
from timar_blender.engine.job import BUNDLED_MODEL


def test_manifest_states_licence_provenance_and_size() -> None:
    bundle = load_bundle(BUNDLED_MODEL)  # validates the manifest and every file's SHA-256
    man = bundle.manifest
    assert "Apache-2.0" in bundle.license
    data = man["source"]["training_data"]
    assert data["hours"] > 1.0 and len(data["voices"]) > 20 and data["calibration"].startswith("xkHwlcDSOjc")
    # model v2: real voices (attributed), the cacheable backbone, level-preserving audio, its own defaults
    lib = data["sources"]["librispeech"]
    assert lib["speakers"] > 200 and "CC BY 4.0" in lib["license"]
    assert "LibriSpeech" in bundle.license and "CC BY 4.0" in bundle.license
    assert man["model"]["backbone"] == "turn_relative_cached" and man["audio"]["normalization"] == "none"
    # model v3: the upper layers reach 2 turns back, so a turn's cost hardly grows with the context
    assert man["model"]["layer_bands"] == [7, 2, 2] and bundle.info.layer_bands == (7, 2, 2)
    # model v4: fine-tuned with the jaw weighing 3x in the head's loss (a sharper, less seed-driven jaw)
    assert man["source"]["config"]["jaw_loss_weight"] == 3.0
    assert man["recommended_options"], "the bundle carries the options it was measured best with"
    size = sum(f.stat().st_size for f in Path(BUNDLED_MODEL).iterdir() if f.is_file())
    assert size < 30e6
    assert max(man["parity"]["max_abs_error"].values()) < 1e-3  # engine vs PyTorch, measured at export


@pytest.fixture(scope="module")
def held_out() -> dict:
    """The shipped bundle with its default options (as Generate runs it), seeds 0-2, on a 40-s dialogue
    of two held-out LibriSpeech speakers recorded with room tone and partner bleed."""
    from model_export import behaviour

    if not (behaviour.SHARED / "librispeech" / "test-other").is_dir():
        pytest.skip(f"{behaviour.SHARED}: fixtures absent (held-out voices live in ../shared, not in a fresh clone)")
    case = behaviour.librispeech_cases([0], 40.0)[0]
    return behaviour.score_case(behaviour.BundleSource("", threads=1), case, [0, 1, 2])


def _meets(held_out: dict, key: str) -> None:
    from model_export.behaviour_measures import GOALS

    value = held_out["values"][key]
    assert value is not None and GOALS[key].passes(value), f"{key} = {value:.3g}, goal {GOALS[key].text()}"


def test_bundled_model_keeps_its_mouth_closed_in_room_tone(held_out) -> None:
    _meets(held_out, "silent_open")


def test_bundled_model_jaw_is_locked_to_its_speech(held_out) -> None:
    _meets(held_out, "r_jaw_db")
    _meets(held_out, "seed_r_jaw")


def test_bundled_model_moves_its_head_while_listening(held_out) -> None:
    _meets(held_out, "head_listen")


def test_bundled_model_seeds_give_different_head_takes(held_out) -> None:
    _meets(held_out, "seed_r_head")
    _meets(held_out, "jitter_head")


@pytest.fixture(scope="module")
def held_out_dualtalk() -> dict:
    """The shipped bundle (default options, seeds 0-2) on the held-out real DualTalk conversation."""
    from model_export import behaviour

    if not behaviour.DEMO.is_dir():
        pytest.skip(f"{behaviour.DEMO}: fixtures absent (the DualTalk clips live in ../shared, not in a fresh clone)")
    case = next(c for c in behaviour.dualtalk_cases() if c.name == "DualTalk UbjUDM1MiGE")
    return behaviour.score_case(behaviour.BundleSource("", threads=1), case, [0, 1, 2])


def test_bundled_model_jaw_is_clean_on_the_held_out_dualtalk_clip(held_out_dualtalk) -> None:
    _meets(held_out_dualtalk, "cycles")
    _meets(held_out_dualtalk, "seed_r_jaw")


@pytest.mark.xfail(
    strict=True,
    reason="goal not met yet: model v4's jaw jitters at 10.7 mrad/frame on UbjUDM (goal <= 10; the teacher "
    "9.2, the real speaker 22, the energy baseline 30)",
)
def test_bundled_model_jaw_jitter_on_the_held_out_dualtalk_clip(held_out_dualtalk) -> None:
    _meets(held_out_dualtalk, "jitter_jaw")


@pytest.mark.parametrize(
    ("item", "message"),
    [("smoothing=1e9", "recommended_options.smoothing"), ("smoothing", "OPTION=VALUE"), ("colour=2", "colour")],
)
def test_export_refuses_a_bad_recommendation_before_reading_the_checkpoint(tmp_path, item, message):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "model_export", "export", "--checkpoint", str(tmp_path / "none.pth"),
         "--out", str(tmp_path / "b"), "--recommend", item],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists()
