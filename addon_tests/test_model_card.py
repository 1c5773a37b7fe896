"""The model card: its behaviour measures on signals whose answer is known, and the Markdown rendered
from the JSON alone (every figure in the text is the JSON's): the behaviour benchmark table with
PASS/FAIL per goal beside the energy baseline, the single-fold note, the licences (LibriSpeech
attribution, TTS engines, DualTalk clips) and the corpus make-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from model_export import behaviour, card_render, model_card
from model_export import card_measures as mc
from model_export.corpus.calibrate import frame_db
from model_export.corpus.voices import ATTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures"

RATE, FPS = 16000, 25


def _speech_like(seconds: float, on: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1e-3, int(seconds * RATE))
    for a, b in on:
        i, j = int(a * RATE), int(b * RATE)
        env = 0.2 + 0.2 * np.sin(np.linspace(0, 20 * np.pi, j - i)) ** 2
        x[i:j] += rng.normal(0, 1, j - i) * env
    return x.astype(np.float32)


def test_jaw_energy_correlation_tracks_speech() -> None:
    audio = _speech_like(20, [(2, 6), (9, 14)])
    db = frame_db(audio, 20 * FPS)
    motion = np.zeros((20 * FPS, 56), np.float32)
    motion[:, 50] = (db - db.min()) / np.ptp(db) * 0.2  # jaw opens with loudness
    assert mc.jaw_energy_r(motion, audio) > 0.9
    motion[:, 50] = np.random.default_rng(0).normal(0, 0.05, len(motion))  # unrelated jaw
    assert abs(mc.jaw_energy_r(motion, audio)) < 0.2
    motion[:, 50] = 0.0
    assert np.isnan(mc.jaw_energy_r(motion, audio))  # a frozen jaw has no correlation


def test_listening_head_measures_only_listening_frames() -> None:
    audio = _speech_like(20, [(0, 10)])
    motion = np.zeros((20 * FPS, 56), np.float32)
    motion[: 10 * FPS, 53] = np.random.default_rng(1).normal(0, 0.2, 10 * FPS)  # moves only while talking
    still = mc.listening_head(motion, audio)
    assert still["frames"] > 8 * FPS and max(still["std"]) < 1e-6
    motion[10 * FPS + 10 :, 54] = np.deg2rad(3.0) * np.sin(np.arange(10 * FPS - 10) / 5)
    moving = mc.listening_head(motion, audio)
    assert moving["std"][1] == pytest.approx(3.0 / np.sqrt(2), rel=0.15)


def test_seed_spread_and_drift() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0, 0.1, (500, 56)).astype(np.float32)
    same = mc.seed_spread([base, base.copy(), base.copy()])
    assert same["jaw_x"]["across_seeds"] < 1e-6 and same["jaw_x"]["ratio"] < 1e-5
    different = mc.seed_spread([rng.normal(0, 0.1, (500, 56)) for _ in range(4)])
    assert 0.7 < different["jaw_x"]["ratio"] < 1.2  # independent takes: spread ~ the signal's own std
    long = rng.normal(0, 0.1, (25 * 60 * 4, 56)).astype(np.float32)
    audio = _speech_like(240, [(t, t + 3) for t in range(0, 240, 6)])
    steady = mc.drift(long, audio)
    assert len(steady["minutes"]) == 4 and steady["finite"] and steady["jaw_mean_range_over_std"] < 0.2
    drifting = long.copy()
    drifting[:, 50] += np.linspace(0, 0.3, len(long))
    assert mc.drift(drifting, audio)["jaw_mean_range_over_std"] > 1.0


def test_table_and_baseline_verdicts() -> None:
    keys = {f"{m}_{g}": 1.0 for m in ("fd", "mse", "sid") for g in ("exp", "jaw", "pose")}
    rows = {"Neutral pose": dict(keys), "Training mean": dict(keys), "Model n = 7": {**keys, "fd_jaw": 0.5}}
    table = card_render.metric_table(rows)
    assert table.count("\n") == 4 and "FD JAW ×1000" in table and "| 500.00 |" in table
    verdicts = card_render.beats(rows, "Model n = 7")
    assert sum(v.startswith("✓") for v in verdicts) == 2  # FD JAW against both baselines, nothing else


def _speech_case(name: str, seconds: float, agent_turns: list[tuple[float, float]], seed: int) -> behaviour.Case:
    """A constructed dialogue: the agent speaks in ``agent_turns``, the user in the gaps (timeline known)."""
    user_turns = [(b + 0.3, c - 0.3) for (_, b), (c, _) in pairwise(agent_turns)]
    agent = _speech_like(seconds, agent_turns, seed)
    user = _speech_like(seconds, user_turns, seed + 1)
    timeline = sorted([(1, a, b, "turn") for a, b in agent_turns] + [(0, a, b, "turn") for a, b in user_turns],
                      key=lambda x: x[1])
    return behaviour.Case(name, (user, agent), timeline=timeline, description="constructed")


def _still_head_model(case: behaviour.Case, seed: int) -> np.ndarray:
    """A 'model' that opens the jaw at random and sways the head by 3 degrees in pitch and yaw (a
    different phase per seed): head std about 2 degrees (the mean over pitch, yaw, roll)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((case.frames, 56), np.float32)
    m[:, 50] = np.abs(rng.normal(0, 0.03, case.frames))
    t = np.arange(case.frames) / FPS
    m[:, 53] = np.deg2rad(3.0) * np.sin(2 * np.pi * 0.3 * t + seed)
    m[:, 54] = np.deg2rad(3.0) * np.cos(2 * np.pi * 0.2 * t + 2 * seed)
    return m


@pytest.fixture(scope="module")
def bench() -> dict:
    cases = [_speech_case("constructed A", 24, [(1, 5), (9, 14), (18, 22)], 3),
             _speech_case("constructed B", 24, [(2, 7), (12, 16)], 5)]
    sources = [behaviour.FunctionSource("model", _still_head_model), behaviour.EnergySource()]
    return behaviour.run_benchmark(sources, cases, seeds=(0, 1))


def _card(bench: dict | None = None, **card) -> dict:
    keys = {f"{m}_{g}": 1.0 for m in ("fd", "mse", "sid") for g in ("exp", "jaw", "pose")}
    table = {"Neutral pose": keys, "Training mean": keys, "Teacher": keys, "Energy baseline": keys,
             "Model n = 0": keys, "Model n = 7": keys}
    out = {
        "card": {"name": "m", "model": {"width": 64, "depth": 2, "parameters": 1.2e6, "max_context_turns": 8},
                 "precision": "fp32", "license": "Apache-2.0", "bundle_mb": 5.0, "shipped_clip": "clipA_speaker1",
                 "seeds": [0, 1], "figures": {"clipB": "docs/b.png"}, **card},
        "folds": {"clipA_speaker1": {"sets": {"real": {"sequences": ["clipB"], "table": table}}}},
        "behaviour": {
            "latency_ms": {"median": 17.3, "p95": 21.0, "turns": 40},
            "long": {"sequence": "long1", "audio_seconds": 600.0, "generation_seconds": 12.0, "finite": True,
                     "jaw_mean_range_over_std": 0.5, "neck_std_last_over_first": 1.0, "minutes": []},
        },
    }
    if bench is not None:
        out["benchmark"] = bench
    return out


def test_the_card_text_takes_every_figure_from_the_json() -> None:
    text = card_render.render(_card(cpu_count=8, head_orientation_spread_deg=16.4, train={
        "steps": 1700, "fixed_loss_before": 14.812, "fixed_loss_after": 0.532},
        real_jaw_speech_r={"clipB": -0.05, "clipC": 0.62}))
    assert "17.3 ms per 1-s turn" in text and "8 CPU cores" in text and "on 8 CPU cores" in text
    assert "differs by up to 16°" in text
    assert "0.532 at the end (14.812 at its start)" in text
    assert "`clipB` recording's FLAME jaw hardly follows" in text and "r = -0.05" in text
    assert "clipC" not in text  # a recording whose jaw follows its speech is not called weak
    assert "![clipB](docs/b.png)" in text
    assert "Only the shipped fold was trained" in text and "(1 fold)" in text
    other = card_render.render(_card(cpu_count=2, head_orientation_spread_deg=3.0,
                                     real_jaw_speech_r={"clipB": 0.7}))
    assert "2 CPU cores" in other and "up to 3°" in other and "hardly follows" not in other
    assert "Last training run" not in other  # no training summary: nothing claimed about it
    two = _card()
    two["folds"]["clipB_speaker2"] = two["folds"]["clipA_speaker1"]
    assert "(2 folds)" in card_render.render(two) and "Only the shipped fold" not in card_render.render(two)


def test_the_card_shows_the_behaviour_benchmark_with_verdicts_beside_the_baseline(bench: dict) -> None:
    text = card_render.render(_card(bench, options={"context_turns": 7, "smoothing": 2.0}))
    section = text.split("## Behaviour benchmark")[1].split("\n## ")[0]
    summary = next(line for line in section.splitlines() if line.startswith("| measure | goal |"))
    assert summary == "| measure | goal | model | energy baseline |"
    rows = {line.split(" (")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    # the constructed model's jaw is noise: it fails the jaw goals the energy baseline passes
    assert rows["r_jaw_db"].count("PASS") == 1 and rows["r_jaw_db"].index("FAIL") < rows["r_jaw_db"].index("PASS")
    # its head sways everywhere: it passes head_talk where the still baseline fails
    assert rows["head_talk"].index("PASS") < rows["head_talk"].index("FAIL")
    passed, failed = card_render.goals_verdict(bench)
    assert "r_jaw_db" in failed and "head_talk" in passed and "head_talk" not in failed
    assert f"passes {len(passed)} and fails {len(failed)} of the judged goals" in section
    assert "##### constructed A" in section and "#### Cases" in section  # the report's headings, demoted
    assert "# Behaviour benchmark\n" not in text  # its title is the card's section heading
    assert "context_turns = 7, smoothing = 2.0" in text


def test_the_licence_section_attributes_librispeech_and_lists_the_corpus(bench: dict) -> None:
    corpus = {"dialogues": 400, "hours": 6.7, "voices": ["espeak:en-us+f1", "ls:19"],
              "calibration": "mean of all folds", "sources": {
        "tts_voices": {"engines": "espeak-ng (GPL-3.0), flite (BSD-like)", "count": 61}, "tts_share": 0.2,
        "librispeech": {**ATTRIBUTION, "speakers": 238, "split": "train-clean-100"},
        "acoustics": "room tone and bleed"}}
    lic = model_card.licences(corpus, ["clipA", "clipB"])
    text = card_render.render(_card(bench, training_data=corpus, licences=lic))
    section = text.split("## Licences")[1].split("\n## ")[0]
    assert ATTRIBUTION["copyright"] in section and "CC BY 4.0" in section and ATTRIBUTION["url"] in section
    assert "train-clean-100 subset" in section  # trained on real voices: said so
    assert "espeak-ng (GPL-3.0), flite (BSD-like)" in section and "`clipA`, `clipB`" in section
    assert "238 real LibriSpeech speakers (train-clean-100); 61 TTS voices" in text
    assert "real LibriSpeech voices and TTS voices" in text
    assert "**Caveat:** the shipped model's training corpus calibrated its teacher on `mean of all folds`" in text
    tts_only = {"dialogues": 201, "hours": 3.3, "voices": ["espeak:en-us+f1"]}  # a v1 corpus: no sources
    text = card_render.render(_card(bench, training_data=tts_only, licences=model_card.licences(tts_only, [])))
    section = text.split("## Licences")[1].split("\n## ")[0]
    assert "CC BY 4.0" in section and "held out; not trained on" in section  # the benchmark's test-other
    assert "dialogues of TTS voices" in text and "Make-up" not in text and "Caveat" not in text
    assert "teacher calibrated on one real DualTalk clip (`clipA_speaker1`)" in text


def test_fold_arguments_and_default_options() -> None:
    f = model_card.parse_fold("clipA_speaker1=bundle")
    assert f.model is None and f.test is None and f.train is None and f.conversation == "clipA"
    f = model_card.parse_fold("clipA_speaker1=run/ck.pth=test=train")
    assert f.model == Path("run/ck.pth") and f.test == Path("test") and f.train == Path("train")
    assert model_card.parse_fold("c=ck.pth==train").test is None
    for bad in ("clipA", "clipA=", "a=b=c=d=e"):
        with pytest.raises(Exception, match="CLIP=MODEL"):
            model_card.parse_fold(bad)
    bundled = ROOT / "timar_blender" / "model"
    recommended = json.loads((bundled / "manifest.json").read_text()).get("recommended_options", {})
    s = model_card.default_settings(bundled)
    for k, v in recommended.items():
        assert getattr(s, k) == v  # the card measures what Generate uses


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "dualtalk_demo").is_dir() or not (SHARED / "librispeech" / "test-other").is_dir(),
                    reason="needs ../shared/fixtures (DualTalk clips and LibriSpeech test-other)")
def test_the_card_command_on_the_bundled_model(tmp_path: Path) -> None:
    """One fold (the bundle itself), short benchmark cases: the card, its JSON and the plots are written."""
    out = tmp_path / "card" / "MODEL_CARD.md"
    proc = subprocess.run(
        [sys.executable, "-m", "model_export.model_card", "--bundle", str(ROOT / "timar_blender" / "model"),
         "--fold", "xkHwlcDSOjc_sub_video_109_000_speaker1=bundle", "--cases", "librispeech", "--dialogues", "0",
         "--seconds", "12", "--seeds", "0", "1", "--no-teacher", "--out", str(out),
         "--figures", str(tmp_path / "card" / "fig")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = json.loads(out.with_suffix(".json").read_text())
    assert set(raw["benchmark"]["sources"]) == {"model", "energy baseline", "real person"}
    assert raw["behaviour"]["latency_ms"]["turns"] > 0
    assert list(raw["folds"]) == ["xkHwlcDSOjc_sub_video_109_000_speaker1"]
    assert raw["folds"]["xkHwlcDSOjc_sub_video_109_000_speaker1"]["sets"]["real"]["sequences"] == [
        "UbjUDM1MiGE_sub_video_72_speaker2"]  # the conversation not used for calibration
    text = out.read_text()
    assert text == card_render.render(raw) and "CC BY 4.0" in text
    for rel in raw["card"]["figures"].values():
        assert (out.parent / rel).stat().st_size > 10_000
