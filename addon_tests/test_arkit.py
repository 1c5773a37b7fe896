"""ARKit retargeting, name matching, mapping presets and the bpy-free file exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from timar_blender.engine import arkit, exports
from timar_blender.engine.arkit import ARKIT_NAMES


def test_three_spellings_match_the_same_channel() -> None:
    for spelling in ("eyeBlinkLeft", "EyeBlinkLeft", "eyeBlink_L", "eye_blink_left", "Face:eyeBlink_L"):
        assert arkit.arkit_index(spelling) == 0, spelling
    assert arkit.arkit_index("mouthSmile_R") == ARKIT_NAMES.index("mouthSmileRight")
    assert arkit.arkit_index("jawOpen") == ARKIT_NAMES.index("jawOpen")
    assert arkit.arkit_index("Exp001") is None and arkit.arkit_index("Basis") is None
    found, missing = arkit.match_shape_keys(["Basis", "JawOpen", "eyeBlink_L", "EyeBlinkLeft", "mouthClose"])
    assert found == {0: "eyeBlink_L", 17: "JawOpen", 18: "mouthClose"}  # first spelling wins
    assert len(missing) == 49 and 17 not in missing
    assert not arkit.looks_like_arkit(["JawOpen", "eyeBlink_L"])
    assert arkit.looks_like_arkit(list(ARKIT_NAMES[:12]))


def test_default_map_opens_the_jaw_with_the_flame_jaw_and_stays_in_bounds() -> None:
    rmap = arkit.default_retarget_map()
    assert len(rmap.extra["poses"]) >= 10 and "paired poses" in rmap.source
    rest = np.tile(rmap.rest, (3, 1))
    rest_weights = rmap.apply(rest)
    assert rest_weights.max() < 0.02  # the teacher's neutral listening face is the neutral ARKit face
    openings = []
    for jaw in (0.0, 0.05, 0.1):
        m = rmap.rest.copy()
        m[50] = jaw
        openings.append(rmap.apply(m[None])[0, ARKIT_NAMES.index("jawOpen")])
    assert openings[0] < openings[1] < openings[2]
    wild = np.random.default_rng(0).normal(0, 3, (200, 56))
    out = rmap.apply(wild)
    assert out.shape == (200, 52) and out.min() >= 0.0 and out.max() <= 1.0
    head = rmap.head(rest)
    assert np.allclose(head, 0.0)


def test_pose_table_is_reproduced_by_the_fit() -> None:
    from model_export.corpus.teacher import load_calibration
    from model_export.retarget_fit import POSES, fit, flame_pose

    st = load_calibration()["folds"]["xkHwlcDSOjc_sub_video_109_000_speaker1"]
    rmap, residual = fit(st)
    assert max(residual.values()) < 0.1
    label, recipe, pose = POSES[4]  # open vowel
    got = rmap.apply(flame_pose(recipe, st)[None])[0]
    assert abs(got[ARKIT_NAMES.index("jawOpen")] - pose["jawOpen"]) < 0.1, label


def test_retarget_map_file_validation(tmp_path: Path) -> None:
    rmap = arkit.default_retarget_map()
    good = tmp_path / "map.json"
    rmap.save(good)
    again = arkit.load_retarget_map(good)
    assert np.array_equal(again.weights, rmap.weights) and np.array_equal(again.rest, rmap.rest)
    d = json.loads(good.read_text())
    d["weights"] = d["weights"][:-1]
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"short\.json: 'weights' has shape \(51, 56\)"):
        arkit.load_retarget_map(bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        arkit.load_retarget_map(tmp_path / "broken.json")
    with pytest.raises(ValueError, match=r"missing\.json: cannot read"):
        arkit.load_retarget_map(tmp_path / "missing.json")
    for literal in ("NaN", "Infinity", "-Infinity"):  # what Python's and JavaScript's JSON writers emit
        d = json.loads(good.read_text())
        d["bias"][0] = "PLACEHOLDER"
        text = json.dumps(d).replace('"PLACEHOLDER"', literal)
        assert f", {literal}," in text or f"[{literal}," in text
        (tmp_path / "nan.json").write_text(text)
        with pytest.raises(ValueError, match=r"nan\.json: 'bias' contains NaN or infinite"):
            arkit.load_retarget_map(tmp_path / "nan.json")


def test_mapping_preset_gain_clamp_and_round_trip(tmp_path: Path) -> None:
    preset, missing = arkit.preset_for(["Basis", "JawOpen", "eyeBlink_L", "MouthSmile_R"])
    assert set(preset.channels) == {"jawOpen", "eyeBlinkLeft", "mouthSmileRight"}
    assert "mouthClose" in missing and len(missing) == 49
    preset.channels["jawOpen"].gain = 2.0
    preset.channels["jawOpen"].clamp_max = 0.8
    w = np.zeros((4, 52), np.float32)
    w[:, ARKIT_NAMES.index("jawOpen")] = [0.0, 0.2, 0.5, 1.0]
    out = preset.apply(w)
    assert np.allclose(out["JawOpen"], [0.0, 0.4, 0.8, 0.8])
    path = tmp_path / "rig.json"
    preset.save(path)
    loaded = arkit.load_preset(path)
    assert loaded.channels == preset.channels


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "not a mapping preset"),
        (lambda d: d["channels"].update(notAShape={"target": "x"}), "'notAShape' is not an ARKit channel"),
        (lambda d: d["channels"]["jawOpen"].update(gain="big"), "'gain' must be a finite number"),
        (lambda d: d["channels"]["jawOpen"].update(clamp=[1, 0]), "clamp min 1 is above max 0"),
        (lambda d: d["channels"].update(JawOpen={"target": "Other"}), "repeats ARKit channel jawOpen"),
        (lambda d: d["channels"].update(mouthClose={"target": "JawOpen"}), "both drive shape key 'JawOpen'"),
    ],
)
def test_bad_presets_name_the_file_and_problem(tmp_path: Path, change, message: str) -> None:
    d = {"format": "timar-arkit-mapping", "version": 1, "channels": {"jawOpen": {"target": "JawOpen"}}}
    change(d)
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="preset.json: .*" + message.replace("(", r"\(").replace("[", r"\[")):
        arkit.load_preset(path)


def test_blinks_are_natural_and_seeded() -> None:
    b = arkit.blink_track(25 * 120, 25.0, seed=3)
    onsets = np.flatnonzero((b[1:] > 0.5) & (b[:-1] <= 0.5))
    assert 20 <= len(onsets) <= 50  # ~17 per minute over two minutes
    assert b.min() == 0.0 and b.max() <= 1.0 and np.mean(b > 0.5) < 0.1
    assert np.array_equal(b, arkit.blink_track(25 * 120, 25.0, seed=3))
    assert not np.array_equal(b, arkit.blink_track(25 * 120, 25.0, seed=4))


# The first line of a real Live Link Face recording, byte for byte (LF line end): anim/alex_rom_3.csv
# in github.com/alexdjulin/LiveLinkFace-CSV-Retarget-For-Motionbuilder (commit 122e2b2, Oct 2021), a
# take exported from Epic's Live Link Face iOS app; its anim/S07-001.csv and alex_rom_4.csv have the same
# first line. Its rows look like "13:13:04:31.652,61,0.1236470118,..." (timecode frames 00-59, 10 decimals).
REAL_LIVE_LINK_HEADER = (
    b"Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    b"EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,"
    b"EyeLookUpRight,EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,"
    b"MouthFunnel,MouthPucker,MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,"
    b"MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,"
    b"MouthRollUpper,MouthShrugLower,MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,"
    b"MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,"
    b"BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,"
    b"NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,"
    b"RightEyePitch,RightEyeRoll"
    b"\n"
)


def test_live_link_csv_header_is_a_real_captures_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "take.csv"
    exports.write_live_link_csv(path, np.zeros((3, 52)), np.zeros((3, 3)), 25.0)
    data = path.read_bytes()
    assert data[: len(REAL_LIVE_LINK_HEADER)] == REAL_LIVE_LINK_HEADER
    assert b"\r" not in data


def test_live_link_csv_round_trip_long_take(tmp_path: Path) -> None:
    fps, frames = 30.0, 30 * 60 * 6  # a 6-minute take
    rng = np.random.default_rng(1)
    motion = rng.normal(0, 0.05, (frames, 56)).astype(np.float32)
    weights = arkit.default_retarget_map().apply(motion)
    weights[:, ARKIT_NAMES.index("jawLeft")] = 0.25  # the columns Live Link Face orders unlike Apple
    weights[:, ARKIT_NAMES.index("mouthRight")] = 0.75
    head = exports.head_ypr(motion)
    path = tmp_path / "take.csv"
    exports.write_live_link_csv(path, weights, head, fps)
    header, values = exports.read_live_link_csv(path)
    assert header == list(exports.LIVE_LINK_COLUMNS) and len(header) == 2 + 61
    assert header[2] == "EyeBlinkLeft" and header[2 + 16] == "JawLeft" and header[2 + 17] == "JawOpen"
    assert header[54:57] == ["HeadYaw", "HeadPitch", "HeadRoll"]
    assert values.shape == (frames, 61)
    assert np.all(values[:, header.index("JawLeft") - 2] == 0.25)
    assert np.all(values[:, header.index("MouthRight") - 2] == 0.75)
    np.testing.assert_allclose(exports.arkit_columns(header, values), weights, atol=1e-9)
    np.testing.assert_allclose(values[:, 52:55], head, atol=1e-9)
    assert not values[:, 55:].any()  # no gaze in FLAME-56
    lines = path.read_text().splitlines()
    row = re.compile(r"\d\d:\d\d:\d\d:\d\d\.\d{3},61(,-?\d+\.\d{10}){61}")  # as the real recording's rows
    assert all(row.fullmatch(line) for line in lines[1:])
    assert lines[1].startswith("00:00:00:00.000,61,") and lines[31].startswith("00:00:01:00.000,")
    assert lines[2].startswith("00:00:00:02.000,")  # 1/30 s = 2 timecode frames at 60 fps
    assert lines[-1].startswith("00:05:59:58.000,")


def test_live_link_timecode_starts_where_asked() -> None:
    start = "12:27:47:47.169"  # a real recording's first timecode: the time of day, frames at 60 fps
    assert exports.timecode(exports.parse_timecode(start)) == start
    rows = [exports.timecode(exports.parse_timecode(start) + i / 25.0) for i in range(7)]
    assert rows[1] == "12:27:47:49.569" and rows[2] == "12:27:47:51.969"  # 0.04 s = 2.4 frames at 60 fps
    assert rows[6] == "12:27:48:01.569"
    assert exports.timecode(exports.parse_timecode("23:59:59:59.500") + 1 / 60) == "00:00:00:00.500"
    for bad in ("12:27:47", "12:27:47:60", "24:00:00:00", "1:2:3:4", "00:00:00:00.1234"):
        with pytest.raises(ValueError, match=f"timecode '{re.escape(bad)}'"):
            exports.parse_timecode(bad)


def test_head_angles_follow_the_neck_axes() -> None:
    m = np.zeros((3, 56), np.float32)
    m[0, 53] = 0.2  # nod: pitch
    m[1, 54] = 0.3  # yaw
    m[2, 55] = -0.1  # roll
    ypr = exports.head_ypr(m)
    assert np.allclose(ypr, [[0, 0.2, 0], [0.3, 0, 0], [0, 0, -0.1]], atol=1e-6)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_flame_export_round_trip(tmp_path: Path, suffix: str) -> None:
    motion = np.random.default_rng(2).normal(0, 0.1, (25 * 330, 56)).astype(np.float32)  # 5.5 minutes
    path = tmp_path / f"take{suffix}"
    exports.write_flame(path, motion, 25.0)
    got, fps, names = exports.read_flame(path)
    assert fps == 25.0 and len(names) == 56 and names[50].lower().startswith("jaw")
    assert got.shape == motion.shape and np.allclose(got, motion, atol=1e-6)
    with pytest.raises(ValueError, match=r"take\.txt: FLAME export needs a \.npz or \.json"):
        exports.write_flame(tmp_path / "take.txt", motion, 25.0)
