"""The settings boundary (bpy-free): one frozen object, defaults written once, every numeric option
range-checked with a message naming the option and the source, and the model bundle's
recommended options used as defaults unless the user set a value."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from timar_blender.engine import settings as S
from timar_blender.engine.contract import ModelInfo

BUNDLED = Path(__file__).resolve().parent.parent / "timar_blender" / "model"


def test_every_numeric_option_has_a_documented_range():
    for name, opt in S.OPTIONS.items():
        if opt.kind in (int, float):
            assert opt.min is not None and opt.max is not None, name
            assert opt.min <= opt.default <= opt.max, name
            if opt.soft_max is not None:
                assert opt.min <= opt.soft_max <= opt.max, name


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("temperature", math.inf, "finite"),
        ("temperature", -1.0, "outside its range [0, 5]"),
        ("strength_jaw", math.nan, "finite"),
        ("cfg", 1e30, "outside its range [1, 10]"),
        ("cfg", -5.0, "outside its range"),
        ("smoothing", 1e6, "outside its range [0, 25] frames"),
        ("smoothing", math.nan, "finite"),
        ("seed", -1, "outside its range [0, 2147483647]"),
        ("takes", 0, "outside its range [1, 16]"),
        ("context_turns", 100, "outside its range [0, 63]"),
        ("context_turns", 2.5, "whole number"),
        ("start_frame", 100_000_000, "outside its range"),
        ("stereo", 1, "true or false"),
        ("seed", "3", "must be a number"),
        ("rig_type", "MAYA", "one of AUTO, FLAME, ARKIT"),
    ],
)
def test_bad_values_are_refused_naming_option_and_source(name, value, words):
    with pytest.raises(S.SettingsError) as err:
        S.resolve({name: value}, where="talks.json [dialogue 2]")
    text = str(err.value)
    assert text.startswith(f"talks.json [dialogue 2]: {name}: "), text
    assert words in text
    assert err.value.option == name


def test_unknown_option_is_refused_with_the_closest_name():
    with pytest.raises(S.SettingsError, match=r"agent_audo: unknown option \(did you mean 'agent_audio'\?\)"):
        S.check_values({"agent_audo": "a.wav"}, "batch.json [dialogue 1]")


def test_command_line_spelling_in_messages():
    with pytest.raises(S.SettingsError, match=r"^command line: --strength-jaw: must be a finite number"):
        S.check_values({"strength_jaw": math.nan}, "command line", spell=lambda n: "--" + n.replace("_", "-"))


def test_settings_are_frozen_and_converted():
    s = S.resolve({"seed": 4.0, "smoothing": 2})
    assert s.seed == 4 and isinstance(s.seed, int)
    assert s.smoothing == 2.0 and isinstance(s.smoothing, float)
    with pytest.raises(FrozenInstanceError):
        s.seed = 5  # type: ignore[misc]
    assert s.changed(seed=9).seed == 9 and s.seed == 4
    with pytest.raises(S.SettingsError, match="seed"):
        s.changed(seed=-3)


def test_priority_default_then_model_then_user():
    assert S.resolve().smoothing == S.DEFAULTS.smoothing == 0.0
    rec = {"smoothing": 2.0, "temperature": 0.7}
    s = S.resolve({}, rec)
    assert (s.smoothing, s.temperature) == (2.0, 0.7)
    s = S.resolve({"smoothing": 0.0}, rec)  # a user's explicit 0 wins over the model's 2
    assert (s.smoothing, s.temperature) == (0.0, 0.7)


def test_sampling_options_carry_every_sampling_setting():
    s = S.resolve({"num_iter": 4, "mask_history_agent": False, "cfg": 2.0, "seed": 11, "clamp_variance": False})
    o = s.sampling_options()
    assert (o.num_iter, o.mask_history_agent, o.cfg, o.seed, o.clamp_variance) == (4, False, 2.0, 11, False)


def test_model_limits():
    info = ModelInfo(motion_dim=56, frames_per_turn=25, samples_per_turn=16000, token_dim=8, max_context_turns=4,
                     train_steps=100)
    S.resolve({"context_turns": 3}).validate(info)
    for name, value in (("context_turns", 4), ("num_iter", 26), ("sampling_steps", 101)):
        with pytest.raises(S.SettingsError, match=f"model x: {name}: .* more than this model allows"):
            S.resolve({"context_turns": 3, name: value}).validate(info, "model x")


def test_manifest_recommendations_are_validated():
    man = {"diffusion": {"default_sampling_steps": 7}, "recommended_options": {"smoothing": 1.5, "num_iter": 3}}
    assert S.parse_recommended(man, "m.json") == {"sampling_steps": 7, "smoothing": 1.5, "num_iter": 3}
    bad = [
        ({"recommended_options": {"seed": 3}}, "recommended_options.seed: not an option a model can recommend"),
        ({"recommended_options": {"smoothing": 1e9}}, "recommended_options.smoothing: 1000000000 is outside"),
        ({"recommended_options": {"temperature": "hot"}}, "recommended_options.temperature: must be a number"),
        ({"recommended_options": [1, 2]}, "recommended_options: must be an object"),
        ({"diffusion": {"default_sampling_steps": 0}}, "diffusion.default_sampling_steps: 0 is outside"),
    ]
    for manifest, words in bad:
        with pytest.raises(S.SettingsError) as err:
            S.parse_recommended(manifest, "m.json")
        assert str(err.value).startswith("m.json: ") and words in str(err.value), str(err.value)


def test_read_recommended_follows_the_manifest_file(tmp_path):
    assert S.read_recommended(tmp_path) == {}  # no manifest: nothing recommended (loading reports it)
    man = json.loads((BUNDLED / "manifest.json").read_text())
    assert S.read_recommended(BUNDLED)["sampling_steps"] == man["diffusion"]["default_sampling_steps"]
    man["recommended_options"] = {"smoothing": 2.0}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(man))
    assert S.read_recommended(tmp_path)["smoothing"] == 2.0
    man["recommended_options"] = {"smoothing": 3.0}
    path.write_text(json.dumps(man))
    import os

    os.utime(path, ns=(1, 2_000_000_000))  # a new modification time: the cache must not hide the edit
    assert S.read_recommended(tmp_path)["smoothing"] == 3.0


def test_the_bundle_carries_its_recommendations_and_refuses_bad_ones(tmp_path):
    import shutil

    from timar_blender.engine.bundle import BundleError, load_bundle

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED, folder)
    man = json.loads((folder / "manifest.json").read_text())
    man["recommended_options"] = {"smoothing": 2.0, "num_iter": 4, "mask_history_agent": False}
    (folder / "manifest.json").write_text(json.dumps(man))
    b = load_bundle(folder)
    assert b.recommended == {"sampling_steps": man["diffusion"]["default_sampling_steps"], "smoothing": 2.0,
                             "num_iter": 4, "mask_history_agent": False}
    s = S.resolve({"num_iter": 2}, b.recommended)  # what every front end does with them
    assert (s.smoothing, s.num_iter, s.mask_history_agent) == (2.0, 2, False)
    for rec, words in (({"num_iter": 26}, "num_iter: 26 is more than this model allows (at most 25)"),
                       ({"cfg": float("nan")}, "recommended_options.cfg: must be a finite number"),
                       ({"takes": 2}, "recommended_options.takes: not an option a model can recommend")):
        man["recommended_options"] = rec
        (folder / "manifest.json").write_text(json.dumps(man))
        with pytest.raises(BundleError) as err:
            load_bundle(folder)
        assert str(err.value).startswith(str(folder / "manifest.json")) and words in str(err.value), str(err.value)


def test_the_engine_declares_its_public_api():
    import timar_blender.engine as engine

    assert {"Settings", "TakePipeline", "ModelInfo", "CHANNEL_NAMES", "load_bundle", "generate_dialogue"} <= set(
        engine.__all__
    )
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    with pytest.raises(AttributeError):
        engine.not_a_name  # noqa: B018
