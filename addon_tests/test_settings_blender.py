"""The settings boundary in real Blender: the panel's properties carry the settings table's defaults
and limits, a model bundle's recommended options are the defaults (shown in the panel, used by
Generate and headless) until the artist sets a value, and headless flags that are not given keep
the scene's settings (which the run leaves as they were)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from blender_helpers import import_bpy, new_scene, read_keys, run_headless, write_wavs

bpy = import_bpy()

from timar_blender.blender.props import TIMAR_PG_settings, settings_of  # noqa: E402
from timar_blender.engine import job  # noqa: E402
from timar_blender.engine.settings import OPTIONS, RECOMMENDABLE, SETTING_NAMES  # noqa: E402

pytestmark = pytest.mark.usefixtures("blender_addon")

JAW = 'key_blocks["Exp001"].value'


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> tuple[Path, Path]:
    return write_wavs(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def recommending_model(tmp_path_factory) -> Path:
    """The bundled model with a manifest recommending smoothing 2 and temperature 0.5 (over its own)."""
    folder = tmp_path_factory.mktemp("models") / "recommending"
    shutil.copytree(job.BUNDLED_MODEL, folder)
    man = json.loads((folder / "manifest.json").read_text())
    man["recommended_options"] = {**man.get("recommended_options", {}), "smoothing": 2.0, "temperature": 0.5}
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


def test_panel_properties_take_defaults_and_limits_from_the_settings_table() -> None:
    props = TIMAR_PG_settings.bl_rna.properties
    checked = 0
    for name in SETTING_NAMES:
        o, p = OPTIONS[name], props[name]
        if o.kind in (int, float) and p.type in ("INT", "FLOAT"):
            assert (p.hard_min, p.hard_max) == pytest.approx((o.min, o.max)), name
            assert p.soft_max == pytest.approx(o.soft_max if o.soft_max is not None else o.max), name
            checked += 1
        if p.type in ("INT", "FLOAT", "BOOLEAN", "STRING") and not o.recommendable:
            assert p.default == pytest.approx(o.default) if o.kind is float else p.default == o.default, name
    assert checked >= 12


def test_the_models_recommendation_is_the_default_until_the_artist_sets_a_value(wavs, recommending_model) -> None:
    scene = new_scene(agent_audio=str(wavs[0]), user_audio=str(wavs[1]), model_path=str(recommending_model))
    s = scene.timar
    assert (s.smoothing, s.temperature) == (2.0, 0.5)  # what the panel shows
    assert (settings_of(scene).smoothing, settings_of(scene).temperature) == (2.0, 0.5)
    assert bpy.ops.timar.generate() == {"FINISHED"}
    recommended = read_keys(s.character.data.shape_keys, JAW)

    s.smoothing = 0.0  # the artist's 0 wins over the model's 2, although 0 is also the global default
    assert settings_of(scene).smoothing == 0.0 and s.smoothing == 0.0
    assert bpy.ops.timar.generate() == {"FINISHED"}
    raw = read_keys(s.character.data.shape_keys, JAW)
    assert np.abs(np.diff(raw[:, 1], 2)).mean() > 1.5 * np.abs(np.diff(recommended[:, 1], 2)).mean()

    assert bpy.ops.timar.use_model_options() == {"FINISHED"}
    assert s.smoothing == 2.0

    # the bundled model (the same graphs and its other recommendations), the same values set by hand:
    # the same keys
    s.model_path = ""
    from timar_blender.engine.job import BUNDLED_MODEL
    from timar_blender.engine.settings import read_recommended

    shipped = read_recommended(BUNDLED_MODEL)
    assert (s.smoothing, s.temperature) == (
        shipped.get("smoothing", OPTIONS["smoothing"].default),
        shipped.get("temperature", OPTIONS["temperature"].default),
    )
    s.smoothing, s.temperature = 2.0, 0.5
    assert bpy.ops.timar.generate() == {"FINISHED"}
    np.testing.assert_array_equal(read_keys(s.character.data.shape_keys, JAW), recommended)


def test_a_bad_recommendation_is_refused_naming_the_field(wavs, recommending_model, tmp_path) -> None:
    bad = tmp_path / "bad_model"
    shutil.copytree(recommending_model, bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["recommended_options"] = {"smoothing": 1e9}
    (bad / "manifest.json").write_text(json.dumps(man))
    scene = new_scene(agent_audio=str(wavs[0]), user_audio=str(wavs[1]), model_path=str(bad))
    assert scene.timar.smoothing == 0.0  # the panel falls back to the default
    with pytest.raises(RuntimeError, match=r"manifest.json: recommended_options.smoothing: 1000000000 is outside"):
        bpy.ops.timar.generate()
    assert not bpy.data.actions


def _saved_settings(path: Path) -> dict:
    """The TIMAR settings saved in a .blend (opened in this process)."""
    bpy.ops.wm.open_mainfile(filepath=str(path))
    s = bpy.context.scene.timar
    return {n: getattr(getattr(s, n), "name", getattr(s, n)) for n in SETTING_NAMES}


def test_headless_flags_not_given_keep_the_scene_settings(wavs, recommending_model, tmp_path) -> None:
    scene = new_scene(agent_audio=str(wavs[0]), user_audio=str(wavs[1]), model_path=str(recommending_model),
                      seed=5, strength_jaw=0.5, context_turns=3, start_frame=10, add_sound=False)
    base = tmp_path / "base.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(base), copy=True)
    assert bpy.ops.timar.generate() == {"FINISHED"}  # the panel's take from the same scene
    panel = read_keys(scene.timar.character.data.shape_keys, JAW)
    before = _saved_settings(base)

    out = tmp_path / "out.blend"
    r = run_headless(["--blend", str(base), "--out", str(out), "--json", str(tmp_path / "s.json")], tmp_path)
    assert r.returncode == 0, r.stderr
    take = json.loads((tmp_path / "s.json").read_text())["dialogues"][0]["takes"][0]
    assert take["take"].endswith("seed 5") and take["frames"][0] == 10
    after = _saved_settings(out)
    assert after == before  # nothing overwritten (smoothing still follows the model: 2.0)
    assert after["smoothing"] == 2.0 and after["seed"] == 5

    bpy.ops.wm.open_mainfile(filepath=str(out))
    np.testing.assert_array_equal(read_keys(bpy.context.scene.timar.character.data.shape_keys, JAW), panel)

    r = run_headless(["--blend", str(base), "--seed", "7", "--smoothing", "nan"], tmp_path)
    assert r.returncode == 2 and "command line: --smoothing: must be a finite number, got nan" in r.stderr

    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"agent_audo": str(wavs[0])},
                                 {"seed": 8, "takes": 0},
                                 {"seed": 8, "out": str(tmp_path / "b.blend")}]))
    r = run_headless(["--blend", str(base), "--batch", str(batch), "--json", str(tmp_path / "b.json")], tmp_path)
    assert r.returncode == 1
    assert f"{batch} [dialogue 1]: agent_audo: unknown key (did you mean 'agent_audio'?)" in r.stderr
    assert f"{batch} [dialogue 2]: takes: 0 is outside its range [1, 16]" in r.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert [d["ok"] for d in b["dialogues"]] == [False, False, True]
    assert b["dialogues"][2]["takes"][0]["take"].endswith("seed 8")
    assert _saved_settings(tmp_path / "b.blend")["seed"] == 5


def test_every_recommendable_option_is_in_the_panel() -> None:
    props = TIMAR_PG_settings.bl_rna.properties
    assert all(name in props for name in RECOMMENDABLE)
