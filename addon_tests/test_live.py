"""Live mode without a sound card: the engine's LiveSession on stand-in sources (in process) and, in a
subprocess, on a real PortAudio capture device that plays a raw file (ALSA ``file`` plugin), through
to Blender's live operators and the take read back from a saved .blend."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from blender_helpers import at_scene_frames, quaternions, same_rotations
from conftest import ROOT, synth_speech

from timar_blender.engine import job, settings
from timar_blender.engine.audio import load_audio
from timar_blender.engine.capture import CaptureError, WaveSource, choose_rate
from timar_blender.engine.dialogue import generate_dialogue, live_normalization
from timar_blender.engine.live import LiveSession, latency_stats
from timar_blender.engine.sampler import SamplingOptions
from timar_blender.engine.take import TakePipeline

RATE = 16_000
OPTS = SamplingOptions(seed=5, context_turns=3)


@pytest.fixture(scope="module")
def backend():
    if not job.BUNDLED_MODEL.joinpath("manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    return job.backend_for("")


@pytest.fixture(scope="module")
def user() -> np.ndarray:
    return synth_speech(4.0, RATE, 11, [(0.3, 1.6), (2.2, 3.7)])


@pytest.fixture(scope="module")
def agent() -> np.ndarray:
    return synth_speech(2.2, RATE, 12, [(1.5, 2.1)])  # shorter than the take: silence after it


def run(session: LiveSession, timeout: float = 60.0):
    """Poll like the Blender timer until the session has its audio (or fails); every turn poll saw."""
    seen = []
    session.start()
    t0 = time.perf_counter()
    while not (session.done or session.error) and time.perf_counter() - t0 < timeout:
        seen += [t.index for t in session.poll()]
        time.sleep(0.005)
    take = session.stop()
    return take, seen + [t.index for t in session.poll()]


def offline(backend, take) -> np.ndarray:
    norm = live_normalization(backend.info)
    return generate_dialogue(backend, take.user_audio, take.agent_audio, None, OPTS, normalization=norm).motion


@pytest.mark.parametrize("realtime", [False, True])
def test_every_turn_arrives_and_the_take_equals_offline(backend, user, agent, realtime: bool) -> None:
    session = LiveSession(backend, WaveSource(user, RATE, realtime=realtime), OPTS, agent_audio=agent,
                          max_seconds=2.5)
    take, seen = run(session)
    assert take.error is None
    np.testing.assert_array_equal(take.user_audio, user[:40_000])  # exactly the first 2.5 s
    np.testing.assert_array_equal(take.agent_audio[:len(agent)], agent)
    assert not take.agent_audio[len(agent):].any()
    assert seen == [0, 1, 2] and [t.final for t in take.turns] == [False, False, True]  # the half turn on stop
    assert take.motion.shape == (62, 56)  # round(2.5 s * 25 fps), as generate_dialogue trims
    np.testing.assert_array_equal(take.motion, offline(backend, take))
    live = [t for t in take.turns if not t.final]
    assert all(t.available >= t.audio_end for t in live)
    if realtime:  # paced: a turn ends when its last sample is "spoken", ~1 s apart
        ends = [t.audio_end for t in live]
        assert 0.8 < ends[1] - ends[0] < 1.2


def test_resampled_source_and_no_agent(backend, user) -> None:
    import soxr

    u48 = soxr.resample(user, RATE, 48_000).astype(np.float32)
    take, seen = run(LiveSession(backend, WaveSource(u48, 48_000, realtime=False), OPTS, max_seconds=2.0))
    assert take.capture_rate == 48_000 and len(take.user_audio) == 32_000 and seen == [0, 1]
    assert np.abs(take.user_audio[200:-200] - user[200:31_800]).max() < 0.01  # streaming resampler, no drift
    assert not take.agent_audio.any()
    np.testing.assert_array_equal(take.motion, offline(backend, take))


def test_device_that_disappears_keeps_what_was_captured(backend, user) -> None:
    """A device unplugged mid-take (PortAudio's stream finishes by itself): reported, audio kept."""
    source = WaveSource(user[:27_000], RATE, realtime=False, fail_at_end="the microphone 'USB' stopped (unplugged?)")
    session = LiveSession(backend, source, OPTS)
    take, seen = run(session)
    assert "unplugged" in take.error
    np.testing.assert_array_equal(take.user_audio, user[:27_000])
    assert seen[:1] == [0] and take.motion.shape == (42, 56)
    np.testing.assert_array_equal(take.motion, offline(backend, take))


def test_device_that_goes_silent_is_reported(backend, user) -> None:
    session = LiveSession(backend, WaveSource(user[:20_000], RATE, realtime=False, name="mic"), OPTS,
                          watchdog_seconds=0.3)
    take, _ = run(session)
    assert take.error.startswith("no audio from 'mic'")
    assert len(take.user_audio) == 20_000 and take.motion.shape == (31, 56)


class _Breaks:
    """The bundled backend, failing from the third speech encoding on."""

    def __init__(self, backend) -> None:
        self.inner, self.info, self.calls = backend, backend.info, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_speech(self, chunks):
        self.calls += 1
        if self.calls >= 3:
            raise RuntimeError("model exploded")
        return self.inner.encode_speech(chunks)


def test_inference_failure_is_surfaced_and_the_audio_kept(backend, user) -> None:
    session = LiveSession(_Breaks(backend), WaveSource(user, RATE, realtime=False), OPTS, max_seconds=3.5)
    take, seen = run(session)
    assert "model exploded" in take.error
    assert seen == [0, 1] and take.motion.shape == (50, 56)
    assert len(take.user_audio) >= 32_000  # capture went on after the failure


def test_rate_choice() -> None:
    only = {48_000, 44_100}

    def refusal(rate: int) -> str | None:
        return None if rate in only else "Invalid sample rate"

    assert choose_rate(refusal, 44_100) == 44_100  # the device's own before other fallbacks
    assert choose_rate(refusal, 8_000) == 48_000
    assert choose_rate(lambda r: None, 48_000) == 16_000  # no resampling when the device can
    with pytest.raises(CaptureError, match="refuses 22050 Hz"):
        choose_rate(refusal, 44_100, requested=22_050)
    with pytest.raises(CaptureError, match="none of the usual sample rates"):
        choose_rate(lambda r: "no", 44_100)


def test_playhead_and_latency_stats(backend, user) -> None:
    session = LiveSession(backend, WaveSource(user, RATE, realtime=False), OPTS, max_seconds=2.0)
    assert session.frame_at(0.0) is None
    take, _ = run(session)
    t1 = take.turns[-1]
    assert session.frame_at(t1.available)[:2] == (1, 0)
    assert session.frame_at(t1.available + 0.5)[:2] == (1, 12)
    turn, frame, values = session.frame_at(t1.available + 5.0)  # late next turn: hold the last frame
    assert (turn, frame) == (1, 24) and np.array_equal(values, t1.motion[24])
    st = latency_stats([0.010, 0.020, 0.030, 0.040])
    assert st == {"n": 4, "median_ms": 25.0, "p95_ms": 38.5, "max_ms": 40.0}


# --- a real PortAudio capture device fed from a file ---------------------------------------------

ASOUNDRC = """pcm.{name} {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{raw}"
  format "raw"
}}
"""


def _write_raw(path: Path, wave: np.ndarray) -> np.ndarray:
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype("<i2")
    pcm.tofile(path)
    return pcm


@pytest.mark.skipif(ctypes.util.find_library("portaudio") is None, reason="libportaudio2 is not installed")
def test_live_mode_on_a_virtual_capture_device(backend, user, agent, tmp_path: Path) -> None:
    """The capture device plays a file (as fast as it can here; a paced device passes the same way:
    the take is limited by samples, not time). Every turn must arrive and the take read back from
    the saved .blend must equal offline generation on the captured audio."""
    pytest.importorskip("sounddevice")
    import soxr

    pcm16 = _write_raw(tmp_path / "in16.raw", user)
    _write_raw(tmp_path / "in48.raw", soxr.resample(user, RATE, 48_000))
    (tmp_path / ".asoundrc").write_text(
        ASOUNDRC.format(name="timar_wav", raw=tmp_path / "in16.raw")
        + ASOUNDRC.format(name="timar_wav48", raw=tmp_path / "in48.raw"))
    sf.write(tmp_path / "agent.wav", agent, RATE, subtype="FLOAT")
    case = {"seed": OPTS.seed, "context_turns": OPTS.context_turns, "seconds": 3.0,
            "agent_wav": str(tmp_path / "agent.wav")}
    (tmp_path / "case.json").write_text(json.dumps(case))
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    r = subprocess.run([sys.executable, str(ROOT / "addon_tests" / "live_device_script.py"), str(tmp_path)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((tmp_path / "results.json").read_text())
    arr = np.load(tmp_path / "results.npz")
    assert "timar_wav" in out["devices"]

    # the engine on the device: the first 3 s of the file, bit for bit, every turn, offline-equal
    e = out["engine"]
    assert e["capture_rate"] == RATE and e["error"] is None
    np.testing.assert_array_equal(arr["engine_user"], pcm16[:48_000] / np.float32(32768))
    assert e["seen"] == [0, 1, 2] and e["final"] == []
    assert arr["engine_motion"].shape == (75, 56)
    np.testing.assert_array_equal(arr["engine_motion"], arr["engine_offline"])
    # a 48 kHz capture, resampled on the way
    e = out["engine48"]
    assert e["capture_rate"] == 48_000 and e["seen"] == [0, 1, 2] and len(arr["engine48_user"]) == 48_000
    assert np.abs(arr["engine48_user"][200:-200] - user[200:47_800]).max() < 0.01
    np.testing.assert_array_equal(arr["engine48_motion"], arr["engine48_offline"])
    # clear messages for a missing device and a refused rate
    assert "'no_such_microphone' not found" in out["missing"] and "timar_wav" in out["missing"]
    assert "refuses 768000 Hz" in out["rate"]

    # Blender: Start / ticks / Stop, audio saved next to the .blend, keys from the saved file
    b = out["blender"]
    assert b["turns"] == [0, 1, 2] and b["final"] == [] and "next to the .blend" in b["report"]
    assert len(b["wavs"]) == 1 and Path(b["wavs"][0]).parent == tmp_path
    captured = load_audio(b["wavs"][0])
    np.testing.assert_array_equal(captured, pcm16[:48_000] / np.float32(32768))
    agent_used = np.zeros(len(captured), np.float32)
    agent_used[:len(agent)] = agent
    # what Stop keys: the scene's settings over the bundle's recommended options, through the take pipeline
    used = settings.resolve({"seed": OPTS.seed, "context_turns": OPTS.context_turns},
                            settings.read_recommended(job.BUNDLED_MODEL))
    raw = generate_dialogue(backend, captured, agent_used, None, used.sampling_options(),
                            normalization=live_normalization(backend.info))
    expected = TakePipeline.from_settings(used).motion(raw.motion)
    offsets, values = at_scene_frames(expected, 25.0, b["fps"])
    np.testing.assert_allclose(arr["keys_frames"], 5 + offsets, atol=1e-4)
    np.testing.assert_allclose(arr["keys_exp"], values[:, :50], atol=1e-5)
    same_rotations(np.asarray(arr["keys_neck"], np.float64), quaternions(values[:, 53:56]), atol=1e-5)
    if b["audaspace"]:
        assert sorted(b["strips"]) == sorted([[b["wavs"][0], 5], [str(tmp_path / "agent.wav"), 5]])
