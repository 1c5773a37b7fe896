"""The behaviour measures (../shared/docs/motion-behaviour.md), each on a constructed motion whose
value is known in closed form, the frame-label and n/a rules, and a short end-to-end benchmark run
through the engine on a real DualTalk clip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model_export import behaviour_measures as bm

FPS = 25
DEG = math.pi / 180


def _labels(talk: np.ndarray, listen: np.ndarray | None = None, level: np.ndarray | None = None) -> bm.Labels:
    talk = np.asarray(talk, bool)
    listen = np.zeros_like(talk) if listen is None else np.asarray(listen, bool) & ~talk
    level = np.zeros(len(talk)) if level is None else level
    return bm.Labels(level=level, talk=talk, listen=listen)


def _motion(n: int, jaw: np.ndarray | None = None, head_deg: np.ndarray | None = None) -> np.ndarray:
    m = np.zeros((n, 56))
    if jaw is not None:
        m[:, 50] = jaw
    if head_deg is not None:
        m[:, 53:56] = np.asarray(head_deg).reshape(n, -1) * DEG
    return m


def _gauss_gain(f_hz: float, sigma: float) -> float:
    """Amplitude response of a Gaussian(σ frames) at f Hz (continuous-kernel formula)."""
    w = 2 * math.pi * f_hz / FPS
    return math.exp(-(w**2) * sigma**2 / 2)


# ----------------------------------------------------------------------------- frame labels


def test_frame_level_is_40ms_rms_db_floored_50db_under_p99():
    t = np.arange(16000) / 16000
    loud = 0.1 * np.sin(2 * np.pi * 250 * t)  # 1 s, RMS 0.1/sqrt(2) -> -23.0 dB
    x = np.concatenate([np.zeros(16000), loud, 1e-5 * np.ones(16000)])  # silence, tone, -100 dB DC
    db = bm.frame_level(x, 75)
    assert len(db) == 75
    expected = 20 * math.log10(0.1 / math.sqrt(2))
    assert db[25:50] == pytest.approx(expected, abs=0.01)
    assert db[:25] == pytest.approx(expected - 50, abs=0.01)  # digital zeros -> the floor
    assert db[50:] == pytest.approx(expected - 50, abs=0.01)  # -100 dB is under the floor too
    # frames past the end of the audio are silence
    assert bm.frame_level(loud, 40)[25:] == pytest.approx(expected - 50, abs=0.01)


def test_energy_mask_start_stop_hysteresis_and_widening():
    # 100 frames at -60 dB, then a -20 dB burst; floor p10 = -60, loud p99 = -20
    # start = max(-60 + 13, -20 - 35) = -47, stop = -53
    db = np.full(200, -60.0)
    db[50:80] = -20.0
    db[80:90] = -50.0  # below start but above stop, right after talk: still talking
    db[150:160] = -50.0  # the same level from silence never starts talk
    db[170:172] = -45.0  # above start: starts
    raw = bm.energy_mask(db.copy(), fps=FPS)
    expected = np.zeros(200, bool)
    expected[50:90] = True
    expected[170:172] = True
    # widened by 0.2 s = 5 frames on each side
    from scipy.ndimage import binary_dilation

    assert np.array_equal(raw, binary_dilation(expected, iterations=5))
    assert raw[45] and not raw[44] and raw[94] and not raw[95] and not raw[155]


def test_energy_mask_start_level_follows_the_noise_floor():
    # a high floor: start = floor + 13 wins over loud - 35
    db = np.full(100, -40.0)
    db[40:60] = -20.0
    db[70:75] = -30.0  # only 10 dB over the floor: not talk
    talk = bm.energy_mask(db)
    assert talk[40:60].all() and not talk[70:75].any()


def test_timeline_labels_talk_listen_silent():
    timeline = [(0, 0.0, 2.0, "turn"), (1, 1.0, 3.0, "turn"), {"speaker": 0, "start": 3.5, "end": 4.0}]
    lab = bm.frame_labels(np.zeros(16000 * 5), np.zeros(16000 * 5), 125, timeline)
    assert lab.source == "timeline"
    talk = np.zeros(125, bool)
    talk[25:75] = True  # frame centres 1.02 .. 2.98 s
    assert np.array_equal(lab.talk, talk)
    listen = np.zeros(125, bool)
    listen[:25] = True  # the user speaks alone (overlap 1-2 s is talk)
    listen[87:100] = True  # centres 3.5 .. 3.98 s
    assert np.array_equal(lab.listen, listen)
    assert np.array_equal(lab.silent, ~talk)
    assert lab.seconds() == {"talk": 2.0, "silent": 3.0, "listen": 1.52, "total": 5.0}


def test_energy_labels_use_both_tracks():
    t = np.arange(16000) / 16000
    tone = 0.1 * np.sin(2 * np.pi * 200 * t)
    hiss = 1e-4 * np.random.default_rng(0).standard_normal(16000)
    agent = np.concatenate([tone, hiss, hiss, hiss])
    user = np.concatenate([hiss, hiss, tone, hiss])
    lab = bm.frame_labels(agent, user, 100)
    assert lab.source == "energy"
    assert lab.talk[:25].all() and not lab.talk[31:].any()  # 1 s + 0.2 s widening
    assert lab.listen[50:75].all() and not lab.listen[:45].any() and not lab.listen[81:].any()


# ----------------------------------------------------------------------------- measures


def test_silent_open_is_the_share_of_silent_frames_above_the_threshold():
    n = 200
    talk = np.zeros(n, bool)
    talk[:100] = True
    jaw = np.zeros(n)
    jaw[:100] = 0.1  # p25 = p90 = 0.1; silent p10 = 0 -> threshold 0.1 + 0.3 * 0.1 = 0.13
    jaw[100:107] = 0.2  # 7 of 100 silent frames above
    jaw[107:120] = 0.125  # just under the threshold
    assert bm.silent_open(jaw, _labels(talk)) == pytest.approx(7.0)
    assert bm.take_measures(_motion(n, jaw), _labels(talk))["silent_open"] == pytest.approx(7.0)


def test_r_jaw_db_is_pearson_with_the_level():
    rng = np.random.default_rng(1)
    level = rng.uniform(-60, -20, 300)
    talk = np.ones(300, bool)
    assert bm.r_jaw_db(0.002 * level + 0.2, _labels(talk, level=level)) == pytest.approx(1.0)
    assert bm.r_jaw_db(-level, _labels(talk, level=level)) == pytest.approx(-1.0)
    assert bm.r_jaw_db(np.full(300, 0.05), _labels(talk, level=level)) == 0.0  # a frozen jaw has no relation
    noise = rng.standard_normal(300)
    assert bm.r_jaw_db(noise, _labels(talk, level=level)) == pytest.approx(np.corrcoef(noise, level)[0, 1])


@pytest.mark.parametrize("f_hz", [2.0, 3.0, 4.0])
def test_articulation_of_a_sine_jaw(f_hz):
    n = 60 * FPS
    t = np.arange(n) / FPS
    amp = 0.02  # rad
    jaw = 0.05 + amp * np.sin(2 * np.pi * f_hz * t)
    talk = np.zeros(n, bool)
    talk[100:-100] = True  # away from the filters' edges
    gain = _gauss_gain(f_hz, 1.0) - _gauss_gain(f_hz, 5.0)
    expected = 1000 * amp * gain / math.sqrt(2)  # std of a sine = amplitude / sqrt(2), in mrad
    assert bm.articulation(jaw, _labels(talk)) == pytest.approx(expected, rel=0.02)
    # a slow jaw (0.1 Hz) is outside the 1.5-6 Hz band
    slow = 0.05 + amp * np.sin(2 * np.pi * 0.1 * t)
    assert bm.articulation(slow, _labels(talk)) < 0.05 * expected


def test_cycles_count_jaw_peaks_per_second_of_talk():
    n = 40 * FPS
    t = np.arange(n) / FPS
    jaw = 0.05 * (1 - np.cos(2 * np.pi * 2.0 * t)) / 2  # 2 openings per second
    talk = np.zeros(n, bool)
    talk[: 20 * FPS] = True
    assert bm.cycles(jaw, _labels(talk)) == pytest.approx(2.0, abs=0.06)  # 39-40 of 40 (the first is an edge)
    # openings smaller than the 0.01-rad prominence are not cycles
    tiny = 0.008 * (1 - np.cos(2 * np.pi * 2.0 * t)) / 2
    assert bm.cycles(tiny, _labels(talk)) == 0.0
    # peaks on silent frames are not counted
    jaw_silent_only = np.where(talk, 0.0, jaw)
    assert bm.cycles(jaw_silent_only, _labels(talk)) == pytest.approx(0.0, abs=0.06)


def test_head_std_of_sines_with_the_moving_average():
    n = 40 * FPS
    t = np.arange(n) / FPS
    f, amp = 0.25, 2.0  # deg
    head = np.stack([amp * np.sin(2 * np.pi * f * t + ph) for ph in (0.0, 1.0, 2.0)], axis=1)
    w = 2 * math.pi * f / FPS
    ma_gain = abs(math.sin(5 * w / 2) / (5 * math.sin(w / 2)))  # 5-frame moving average
    listen = np.zeros(n, bool)
    listen[100 : 100 + 20 * FPS] = True  # 20 s = 5 whole periods
    lab = _labels(~listen, listen)
    value = bm.take_measures(_motion(n, head_deg=head), lab)["head_listen"]
    assert value == pytest.approx(amp * ma_gain / math.sqrt(2), rel=0.01)
    # only the pitch moves: the mean over the three axes is a third
    pitch_only = head.copy()
    pitch_only[:, 1:] = 0
    assert bm.head_std(pitch_only * DEG, listen) == pytest.approx(amp * ma_gain / math.sqrt(2) / 3, rel=0.01)
    # talk frames are scored by head_talk
    assert bm.take_measures(_motion(n, head_deg=head), lab)["head_talk"] == pytest.approx(
        head[~listen].std(0).mean(), rel=0.05
    )


def test_nods_count_peaks_and_troughs_per_minute_of_silence():
    n = 60 * FPS
    i = np.arange(n)
    pitch = 2.0 * np.cos(2 * np.pi * (i - 25) / 50)  # peaks at 25, 75, ..., 1475 (30); troughs 50..1450 (29)
    head = np.stack([pitch, np.zeros(n), np.zeros(n)], axis=1)
    silent_all = _labels(np.zeros(n, bool))
    assert bm.nods_per_min(head * DEG, silent_all) == pytest.approx(59.0)
    # swings under 1 degree of prominence are not nods (0.4 deg amplitude -> 0.8 deg peak to trough)
    assert bm.nods_per_min(head * 0.2 * DEG, silent_all) == 0.0
    # nods while talking do not count; the rate is per minute of silent frames
    talk = np.zeros(n, bool)
    talk[:738] = True  # the first 15 peaks (25..725) and 14 troughs (50..700) lie in talk
    rate = bm.nods_per_min(head * DEG, _labels(talk))
    assert rate == pytest.approx(30 / ((n - 738) / FPS / 60))
    # under 20 s of silence: n/a
    talk[: n - 20 * FPS + 1] = True
    assert bm.nods_per_min(head * DEG, _labels(talk)) is None


def test_nod_prominence_is_measured_within_1_5_s():
    # a slow 3-deg drift (period 20 s) with 0.6-deg wiggles: over the whole take the wiggles' peaks
    # have no 1-deg prominence, and within +-1.5 s the drift adds < 1 deg -> no nods
    n = 60 * FPS
    t = np.arange(n) / FPS
    pitch = 3.0 * np.sin(2 * np.pi * t / 20)
    head = np.stack([pitch, np.zeros(n), np.zeros(n)], axis=1)
    lab = _labels(np.zeros(n, bool))
    # the drift's own peaks (every 10 s) would have 6-deg prominence over the whole take but not within
    # +-1.5 s (3 (1 - cos(2 pi 1.5 / 20)) = 0.33 deg)
    assert bm.nods_per_min(head * DEG, lab) == 0.0


def test_jitter_of_alternating_and_linear_motion():
    n = 100
    alt = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    head = np.stack([0.1 * alt, 0.2 * alt, np.zeros(n)], axis=1)  # |2nd diff| = 4a: 0.4, 0.8, 0 deg
    assert bm.jitter_head(head * DEG) == pytest.approx((0.4 + 0.8 + 0.0) / 3)
    assert bm.jitter_jaw(0.002 * alt) == pytest.approx(8.0)  # 4 * 2 mrad
    ramp = np.linspace(0, 0.3, n)
    assert bm.jitter_jaw(ramp) == pytest.approx(0.0, abs=1e-9)
    assert bm.jitter_head(np.stack([ramp, ramp, ramp], 1)) == pytest.approx(0.0, abs=1e-9)


def test_seam_on_a_staircase_and_a_ramp():
    n = 10 * FPS
    i = np.arange(n)
    r, h = 0.001, 0.03
    stairs = h * (i // FPS) + r * i  # a step of h at every turn edge on a ramp of r per frame
    # edges: |mean after - mean before| = h + 3r; mid-turn (frame 13): 3r
    assert bm.seam(stairs) == pytest.approx((h + 3 * r) / (3 * r))
    assert bm.seam(r * i) == pytest.approx(1.0)  # no seams
    assert bm.seam(np.zeros(n)) is None  # nothing moves: no ratio
    assert bm.seam(np.zeros(20)) is None  # no edge


def test_seed_correlations():
    n = 200
    t = np.arange(n) / FPS
    s = np.sin(2 * np.pi * 0.7 * t)
    a, b = _motion(n, 0.01 * s, np.stack([s, s, s], 1)), _motion(n, 0.02 * s, np.stack([s, s, s], 1))
    c = _motion(n, -0.01 * s, np.stack([s, -s, s], 1))
    assert bm.seed_r([a, b], [50]) == pytest.approx(1.0)
    # pairs (a,b) = 1, (a,c) = -1, (b,c) = -1 -> -1/3
    assert bm.seed_r([a, b, c], [50]) == pytest.approx(-1 / 3)
    # head: pitch/roll r = 1 in all pairs, yaw 1, -1, -1 -> mean over 3 axes and 3 pairs = (3 + 3 - 1) / 9
    assert bm.seed_r([a, b, c], [53, 54, 55]) == pytest.approx(5 / 9)
    assert bm.seed_r([a], [50]) is None
    rng = np.random.default_rng(3)
    takes = [_motion(5000, rng.standard_normal(5000), rng.standard_normal((5000, 3))) for _ in range(3)]
    assert abs(bm.seed_r(takes, [53, 54, 55])) < 0.05


def test_na_rules_need_two_seconds_of_each_label():
    n = 30 * FPS
    rng = np.random.default_rng(4)
    m = _motion(n, 0.05 + 0.02 * rng.standard_normal(n), rng.standard_normal((n, 3)))
    talk = np.zeros(n, bool)
    talk[: 2 * FPS - 1] = True  # 1.96 s of talk
    listen = np.zeros(n, bool)
    listen[100 : 100 + 2 * FPS - 1] = True
    v = bm.take_measures(m, _labels(talk, listen))
    for k in ("silent_open", "r_jaw_db", "artic", "cycles", "head_talk", "head_listen"):
        assert v[k] is None, k
    for k in ("nods_per_min", "jitter_head", "jitter_jaw", "seam"):
        assert v[k] is not None, k
    talk[2 * FPS - 1] = True  # exactly 2 s
    listen[100 + 2 * FPS - 1] = True
    v = bm.take_measures(m, _labels(talk, listen))
    assert all(v[k] is not None for k in v)
    # seed_r_jaw is judged only when the agent talks
    quiet = _labels(np.zeros(n, bool), listen)
    out = bm.behaviour([m, m[::-1].copy()], quiet)
    assert out["seed_r_jaw"] is None and out["seed_r_head"] is not None
    assert bm.verdicts(out)["seed_r_jaw"] is None


def test_behaviour_averages_takes_and_judges_goals():
    n = 30 * FPS
    talk = np.zeros(n, bool)
    talk[: 15 * FPS] = True
    alt = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    t1 = _motion(n, 0.0005 * alt)  # jitter 2 mrad
    t2 = _motion(n, 0.004 * alt)  # jitter 16 mrad
    out = bm.behaviour([t1, t2], _labels(talk))
    assert out["jitter_jaw"] == pytest.approx(9.0)
    assert list(out) == list(bm.KEYS)
    v = bm.verdicts(out)
    assert v["jitter_jaw"] is True
    assert bm.GOALS["jitter_jaw"].passes(10.0) is True and bm.GOALS["jitter_jaw"].passes(10.01) is False
    assert v["head_talk"] is False  # a still head fails the talking-head goal
    assert v["head_listen"] is None  # no listening frames
    assert bm.GOALS["head_listen"].passes(0.79) is False and bm.GOALS["head_listen"].passes(6.01) is False
    assert bm.GOALS["head_listen"].passes(3.0) is True
    assert bm.GOALS["silent_open"].text() == "≤ 10%" and bm.GOALS["artic"].text() == "≥ 8 mrad"
    with pytest.raises(ValueError, match="labels"):
        bm.take_measures(_motion(n - 1), _labels(talk))


def test_energy_baseline_maps_the_level_onto_the_xkh_jaw_range():
    t = np.arange(16000) / 16000
    hiss = 1e-4 * np.random.default_rng(5).standard_normal(16000)
    x = np.concatenate([hiss, 0.2 * np.sin(2 * np.pi * 250 * t), 0.02 * np.sin(2 * np.pi * 250 * t), hiss])
    m = bm.energy_baseline(x, 100)
    lo, hi = bm.XKH_JAW_RANGE
    assert m[:25, 50] == pytest.approx(lo) and m[75:, 50] == pytest.approx(lo)  # closed in room tone
    assert m[25:50, 50] == pytest.approx(hi, abs=1e-4)  # the loudest frames open fully
    # 20 dB quieter: gate = max(p99 - 40, p10 + 10) = -57 dB, p99 = -17 dB -> half open
    assert m[50:75, 50] == pytest.approx(lo + (hi - lo) * 0.5, abs=1e-3)
    assert not np.any(m[:, :50]) and not np.any(m[:, 51:])  # the head and face stay still
    lab = bm.frame_labels(x, None, 100)
    assert bm.r_jaw_db(m[:, 50], lab) > 0.95


# ----------------------------------------------------------------------------- end to end


def test_benchmark_end_to_end_on_a_real_clip(tmp_path, demo_folder):
    """The benchmark on the first 8 s of the DualTalk xkH conversation (both tracks as recorded):
    the bundled model through the engine (2 seeds), the energy baseline and the real person."""
    from model_export import behaviour as B

    case = B.dualtalk_cases(demo_folder)[0]
    n_s = 8 * 16000
    case = B.Case(
        name="xkH first 8 s",
        tracks=(case.tracks[0][:n_s], case.tracks[1][:n_s]),
        real_motion=case.real_motion[:200],
        description="test",
    )
    bundle = B.BundleSource(threads=1)
    report = B.run_benchmark([bundle, B.EnergySource(), B.RealSource()], [case], seeds=(0, 1))
    json.dumps(report)  # JSON-ready
    src = report["sources"]
    assert set(src) == {"bundled model", "energy baseline", "real person"}
    model = src["bundled model"]["cases"]["xkH first 8 s"]
    assert model["seeds"] == [0, 1] and model["frames"] == 200 and len(model["per_take"]) == 2
    assert model["values"]["seed_r_head"] is not None  # two seeds -> a seed correlation
    assert src["bundled model"]["turn_latency_ms"]["turns"] == 2 * 7  # 8 turns per run, the first left out
    from timar_blender.engine import settings
    from timar_blender.engine.job import BUNDLED_MODEL

    shipped = settings.resolve({}, settings.read_recommended(BUNDLED_MODEL))  # what Generate uses
    assert src["bundled model"]["options"]["smoothing"] == shipped.smoothing
    assert src["bundled model"]["options"]["head_noise_correlation"] == shipped.head_noise_correlation
    # the real row is the measures of the clip's own FLAME, labelled by the energy mask of its tracks
    real = src["real person"]["cases"]["xkH first 8 s"]
    lab = bm.frame_labels(case.tracks[1], case.tracks[0], 200)
    direct = bm.behaviour([case.real_motion[:200]], lab)
    for k, v in direct.items():
        assert real["values"][k] == (None if v is None else pytest.approx(v)), k
    assert real["values"]["seed_r_jaw"] is None  # one take
    energy = src["energy baseline"]["cases"]["xkH first 8 s"]["values"]
    assert energy["r_jaw_db"] > 0.9 and energy["head_talk"] == 0.0
    text = B.markdown(report)
    assert "| silent_open (silent frames with open jaw) | ≤ 10% |" in text
    assert "### xkH first 8 s" in text and "per-turn latency" in text
    # the same model and seed give the same take (the engine is deterministic per seed)
    again = bundle(case, 0)
    first = B.BundleSource(threads=1)(case, 0)
    assert np.array_equal(again, first)


def test_pooled_silent_open_judges_a_case_without_talk():
    """A case without talk gets the open-jaw threshold of the same source's talking cases."""
    from model_export import behaviour as B

    n = 20 * FPS
    talk = np.zeros(n, bool)
    talk[: 10 * FPS] = True
    talking = _labels(talk)
    quiet = _labels(np.zeros(n, bool))
    jaw_t = np.where(talk, 0.1, 0.0)  # threshold 0.1 + 0.3 * 0.1 = 0.13
    jaw_q = np.zeros(n)
    jaw_q[: n // 4] = 0.2  # a quarter of the frames open
    res = {
        "dialogue": {"values": {"silent_open": 0.0}, "_takes": [_motion(n, jaw_t)], "_labels": talking},
        "listening": {"values": {"silent_open": None}, "_takes": [_motion(n, jaw_q)], "_labels": quiet},
        "absent": None,
    }
    assert B.pooled_silent_open(res) == {"listening": pytest.approx(25.0)}
    del res["dialogue"]
    assert B.pooled_silent_open(res) == {}  # no talking case: nothing to take the threshold from


def test_held_out_cases_are_never_digitally_silent(demo_folder):
    """The assembled held-out cases: real voices with room tone and bleed on both tracks, timelines
    with the right speakers (pure talking: only the agent; pure listening: only the user)."""
    pytest.importorskip("model_export.corpus.acoustics", reason="the room-tone/bleed synthesis is not in this tree")
    from model_export import behaviour as B

    shared = demo_folder.parent
    talking = B.one_sided_case("talking", 0, 12.0, shared)
    listening = B.one_sided_case("listening", 0, 12.0, shared)
    for case in (talking, listening):
        assert all(len(t) == 12 * 16000 for t in case.tracks)
        for t in case.tracks:
            frames = np.abs(t[: 300 * 640].reshape(300, 640)).max(1)
            assert frames.min() > 0  # no digitally silent 40-ms frame
    assert {s[0] for s in talking.timeline} == {1} and {s[0] for s in listening.timeline} == {0}
    lab = talking.labels()
    assert lab.seconds()["talk"] > 6 and lab.seconds()["listen"] == 0
    lab = listening.labels()
    assert lab.seconds()["talk"] == 0 and lab.seconds()["listen"] > 6
    d = B.held_out_dialogue(0, 12.0, shared)
    assert {s[0] for s in d.timeline} == {0, 1}


def test_calibration_group_is_the_teacher_clip_only(demo_folder):
    """Option sweeps may validate on the clip teacher v2 is calibrated on, never on the held-out one."""
    from model_export import behaviour as B

    shared = demo_folder.parent
    calib = B.default_cases(shared, groups=["calibration"])
    assert [c.name for c in calib] == ["DualTalk xkH"]
    both = B.default_cases(shared, groups=["dualtalk", "calibration"])
    assert [c.name for c in both] == ["DualTalk xkH", "DualTalk UbjUDM1MiGE"]
