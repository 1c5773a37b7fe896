"""Tests for model_export.data (DualTalk-format reading and windowing) and the audio loader it uses
(timar_blender.engine.audio), on real files written to tmp_path with soundfile/numpy."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_dualtalk_folder

from model_export import data as D
from model_export.speech import LogMelFeatures
from timar_blender.engine.audio import AudioError, load_audio, normalize_per_file

RATE, FPS = 16_000, 25


def _flame_from_npz(path: Path) -> np.ndarray:
    """FLAME-56 built by hand from the npz arrays: exp | jaw = pose[:, 3:6] | neck = pose[:, 0:3]."""
    with np.load(path) as z:
        return np.concatenate([z["exp"][:, :50], z["pose"][:, 3:6], z["pose"][:, 0:3]], axis=1)


def _direction(report: D.ScanReport, name: str) -> D.Direction:
    (d,) = [d for d in report.directions if d.name == name]
    return d


def _tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray, rate: int = RATE) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spec)])


def _write_motion(path: Path, frames: int, seed: int = 0, **extra: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    arrays = {"exp": rng.standard_normal((frames, 50)).astype(np.float32),
              "pose": rng.standard_normal((frames, 6)).astype(np.float32)}
    arrays.update(extra)
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- both directions


def test_every_conversation_gives_both_directions(synthetic_dualtalk: Path):
    report = D.scan_folder(synthetic_dualtalk)
    f = synthetic_dualtalk
    assert sorted(d.name for d in report.directions) == [
        "clip0_speaker1", "clip0_speaker2", "clip1_speaker1", "clip1_speaker2"]
    assert not report.skipped
    for clip in ("clip0", "clip1"):
        a, b = _direction(report, f"{clip}_speaker1"), _direction(report, f"{clip}_speaker2")
        assert (a.agent_wav, a.user_wav) == (f / f"{clip}_speaker1.wav", f / f"{clip}_speaker2.wav")
        assert (a.agent_npz, a.user_npz) == (f / f"{clip}_speaker1.npz", f / f"{clip}_speaker2.npz")
        # the other direction swaps user and agent
        assert (b.agent_wav, b.user_wav) == (a.user_wav, a.agent_wav)
        assert (b.agent_npz, b.user_npz) == (a.user_npz, a.agent_npz)


def test_loaded_directions_carry_the_right_audio_and_motion(synthetic_dualtalk: Path):
    report = D.scan_folder(synthetic_dualtalk)
    f = synthetic_dualtalk
    c1 = D.load_conversation(_direction(report, "clip0_speaker1"))
    c2 = D.load_conversation(_direction(report, "clip0_speaker2"))
    s1, _ = sf.read(f / "clip0_speaker1.wav", dtype="float32")
    s2, _ = sf.read(f / "clip0_speaker2.wav", dtype="float32")
    np.testing.assert_allclose(c1.agent_audio, normalize_per_file(s1), atol=1e-5)
    np.testing.assert_allclose(c1.user_audio, normalize_per_file(s2), atol=1e-5)
    np.testing.assert_array_equal(c2.agent_audio, c1.user_audio)
    np.testing.assert_array_equal(c2.user_audio, c1.agent_audio)
    assert abs(float(c1.agent_audio.mean())) < 1e-4 and float(c1.agent_audio.std()) == pytest.approx(1, abs=1e-3)
    np.testing.assert_array_equal(c1.agent_motion, _flame_from_npz(f / "clip0_speaker1.npz"))
    np.testing.assert_array_equal(c1.user_motion, _flame_from_npz(f / "clip0_speaker2.npz"))
    np.testing.assert_array_equal(c2.agent_motion, c1.user_motion)
    assert not np.array_equal(c1.agent_motion, c1.user_motion)


def test_load_flame56_column_mapping(tmp_path: Path):
    exp = np.arange(7 * 50, dtype=np.float64).reshape(7, 50)
    pose = 1000 + np.arange(7 * 6, dtype=np.float64).reshape(7, 6)  # [neck 0:3 | jaw 3:6]
    np.savez(tmp_path / "m.npz", exp=exp, pose=pose, shape=np.zeros((7, 100)))
    m = D.load_flame56(tmp_path / "m.npz")
    assert m.shape == (7, D.MOTION_DIM) and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :50], exp)
    np.testing.assert_array_equal(m[:, 50:53], pose[:, 3:6])  # jaw
    np.testing.assert_array_equal(m[:, 53:56], pose[:, 0:3])  # neck
    assert m[0, 50] == 1003 and m[0, 53] == 1000


# --------------------------------------------------------------------------- every window


@pytest.fixture(scope="module")
def twenty_second_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dualtalk_folder(tmp_path_factory.mktemp("long") / "dt", clips=1, seconds=20.0, seed=3)


@pytest.fixture(scope="module")
def logmel() -> LogMelFeatures:
    return LogMelFeatures(RATE, 400, 160, 64).eval()


def _windows(folder: Path, feats: torch.nn.Module, stride: int | None) -> tuple[D.WindowDataset, list]:
    convs = [D.load_conversation(d) for d in D.scan_folder(folder).directions]
    ds = D.WindowDataset(convs, feats, samples_per_turn=RATE, frames_per_turn=FPS, window_turns=8,
                         stride_turns=stride)
    return ds, convs


def _direct_features(feats: torch.nn.Module, wav: Path, t0: int, t1: int) -> torch.Tensor:
    """Features of seconds [t0, t1) of a file, computed here from the file itself."""
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == RATE
    audio = normalize_per_file(audio)
    chunks = torch.from_numpy(audio[t0 * RATE : t1 * RATE].reshape(t1 - t0, RATE).copy())
    with torch.no_grad():
        return feats(chunks)


@pytest.mark.parametrize(("stride", "starts"), [(None, [0, 8]), (4, [0, 4, 8, 12])])
def test_every_window_is_kept(twenty_second_clip: Path, logmel: LogMelFeatures, stride, starts):
    ds, convs = _windows(twenty_second_clip, logmel, stride)
    assert len(convs) == 2
    assert len(ds) == 2 * len(starts)
    assert ds.items == [(ci, s) for ci in range(2) for s in starts]
    f = twenty_second_clip
    for i, (ci, start) in enumerate(ds.items):
        conv = convs[ci]
        item = ds[i]
        agent_npz, user_npz = conv.direction.agent_npz, conv.direction.user_npz
        f0, f1 = start * FPS, (start + 8) * FPS
        # motion of window k is npz frames [k*stride*25 : +200], not always the last window
        np.testing.assert_array_equal(item["agent_motion"].numpy(), _flame_from_npz(agent_npz)[f0:f1])
        np.testing.assert_array_equal(item["user_motion"].numpy(), _flame_from_npz(user_npz)[f0:f1])
        assert item["agent_motion"].shape == (200, 56)
        assert bool(item["user_motion_present"])
        # speech features equal the features of those seconds computed directly from the files
        for key, wav in (("agent_speech", conv.direction.agent_wav), ("user_speech", conv.direction.user_wav)):
            assert item[key].shape == (8, 100, 64) and item[key].dtype == torch.float32
            want = _direct_features(logmel, wav, start, start + 8)
            torch.testing.assert_close(item[key], want, atol=3e-2, rtol=2e-3)
    # windows really differ (a loader that always returned one window would fail above or here)
    assert not torch.equal(ds[0]["agent_motion"], ds[1]["agent_motion"])
    assert not torch.allclose(ds[0]["agent_speech"], ds[1]["agent_speech"], atol=0.5)
    # user of one direction is the agent of the other
    half = len(starts)
    assert convs[0].direction.agent_wav == f / "clip0_speaker1.wav"
    torch.testing.assert_close(ds[0]["user_speech"], ds[half]["agent_speech"])
    torch.testing.assert_close(ds[0]["agent_motion"], ds[half]["user_motion"])


def test_clip_shorter_than_a_window_gives_no_windows_and_is_logged(tmp_path: Path, logmel, caplog):
    folder = write_dualtalk_folder(tmp_path / "dt", clips=1, seconds=7.5)
    caplog.set_level(logging.INFO, logger="model_export.data")
    ds, convs = _windows(folder, logmel, None)
    assert len(convs) == 2 and len(ds) == 0
    assert "2 directions shorter than one 8-s window skipped" in caplog.text


def test_window_dataset_needs_agent_motion(synthetic_dualtalk: Path, logmel):
    (synthetic_dualtalk / "clip0_speaker2.npz").unlink()
    report = D.scan_folder(synthetic_dualtalk, allow_missing_motion=True, require_agent_motion=False)
    d = _direction(report, "clip0_speaker2")
    assert d.agent_npz is None
    conv = D.load_conversation(d)
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.wav"):
        D.WindowDataset([conv], logmel, samples_per_turn=RATE, frames_per_turn=FPS, window_turns=8)


# --------------------------------------------------------------------------- encodings and rates


@pytest.mark.parametrize(
    ("subtype", "rate", "channels"),
    [("PCM_16", 44100, 2), ("PCM_24", 22050, 1), ("PCM_U8", 8000, 1), ("FLOAT", 16000, 1)],
)
def test_any_encoding_and_rate_loads_as_mono_16k(tmp_path: Path, subtype: str, rate: int, channels: int):
    seconds = 1.2345
    tone = _tone(440, seconds, rate)
    data = np.stack([tone, tone], axis=1) if channels == 2 else tone
    path = tmp_path / f"tone_{subtype}.wav"
    sf.write(path, data, rate, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype and sf.info(str(path)).channels == channels
    wave = load_audio(path)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - len(tone) * RATE / rate) <= 1
    assert _peak_hz(wave) == pytest.approx(440, abs=1.5)
    # the same waveform, not just the same pitch: compare with the ideal tone away from the edges
    ideal = _tone(440, len(wave) / RATE, RATE)[: len(wave)]
    mid = slice(800, len(wave) - 800)
    assert np.corrcoef(wave[mid], ideal[mid])[0, 1] > 0.99
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.03)


def test_stereo_channel_selection(tmp_path: Path):
    left, right = _tone(440, 1.0, 44100), _tone(1000, 1.0, 44100, amp=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    l_, r_ = load_audio(path, channel=0), load_audio(path, channel=1)
    assert _peak_hz(l_) == pytest.approx(440, abs=1.5)
    assert _peak_hz(r_) == pytest.approx(1000, abs=1.5)
    assert np.abs(r_).max() == pytest.approx(0.3, abs=0.02)
    both = load_audio(path)
    assert len(both) == len(l_) == RATE
    np.testing.assert_allclose(both, (l_ + r_) / 2, atol=1e-4)
    with pytest.raises(AudioError, match=r"stereo\.wav.*channel 2.*2 channels"):
        load_audio(path, channel=2)
    with pytest.raises(AudioError, match=r"stereo\.wav"):
        load_audio(path, channel=-1)
    mono = tmp_path / "mono.wav"
    sf.write(mono, left, 44100)
    with pytest.raises(AudioError, match=r"mono\.wav.*mono"):
        load_audio(mono, channel=1)


def test_folder_with_mixed_encodings_loads(synthetic_dualtalk: Path):
    f = synthetic_dualtalk
    s1, _ = sf.read(f / "clip0_speaker1.wav", dtype="float32")
    s2, _ = sf.read(f / "clip0_speaker2.wav", dtype="float32")
    import soxr

    up = soxr.resample(s1, RATE, 44100, quality="HQ")
    sf.write(f / "clip0_speaker1.wav", np.stack([up, up], axis=1), 44100, subtype="PCM_24")
    sf.write(f / "clip0_speaker2.wav", s2[::2].copy(), 8000, subtype="PCM_16")
    conv = D.load_conversation(_direction(D.scan_folder(f), "clip0_speaker1"))
    assert conv.agent_audio.shape == conv.user_audio.shape == (10 * RATE,)
    assert np.corrcoef(conv.agent_audio, normalize_per_file(s1))[0, 1] > 0.99


# --------------------------------------------------------------------------- errors name the file


def test_missing_partner_wav(synthetic_dualtalk: Path):
    (synthetic_dualtalk / "clip0_speaker2.wav").unlink()
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.wav"):
        D.scan_folder(synthetic_dualtalk)
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.wav"):
        D.scan_folder(synthetic_dualtalk, allow_missing_motion=True)


def test_missing_npz(synthetic_dualtalk: Path):
    f = synthetic_dualtalk
    (f / "clip0_speaker2.npz").unlink()
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.npz"):
        D.scan_folder(f)
    report = D.scan_folder(f, allow_missing_motion=True)
    assert sorted(d.name for d in report.directions) == ["clip0_speaker1", "clip1_speaker1", "clip1_speaker2"]
    assert report.skipped["directions whose agent has no motion"] == 1
    assert "1 skipped: directions whose agent has no motion" in report.summary()
    assert report.notes["directions without user motion (user tokens = fake_latent)"] == 1
    kept = _direction(report, "clip0_speaker1")
    assert kept.user_npz is None and kept.agent_npz == f / "clip0_speaker1.npz"
    assert _direction(report, "clip1_speaker1").user_npz == f / "clip1_speaker2.npz"
    conv = D.load_conversation(kept)
    assert conv.user_motion is None and conv.agent_motion.shape == (250, 56)
    ds = D.WindowDataset([conv], LogMelFeatures(RATE, 400, 160, 64), samples_per_turn=RATE, frames_per_turn=FPS,
                         window_turns=8)
    item = ds[0]
    assert not bool(item["user_motion_present"])
    assert item["user_motion"].shape == (200, 56) and not item["user_motion"].any()


def _load_clip0(folder: Path) -> D.Conversation:
    return D.load_conversation(_direction(D.scan_folder(folder), "clip0_speaker1"))


def test_empty_wav_names_the_file(synthetic_dualtalk: Path):
    (synthetic_dualtalk / "clip0_speaker2.wav").write_bytes(b"")
    with pytest.raises((D.DataError, AudioError), match=r"clip0_speaker2\.wav.*empty"):
        _load_clip0(synthetic_dualtalk)
    with pytest.raises(AudioError, match=r"clip0_speaker2\.wav"):
        load_audio(synthetic_dualtalk / "clip0_speaker2.wav")


def test_wav_header_without_samples_names_the_file(synthetic_dualtalk: Path):
    sf.write(synthetic_dualtalk / "clip0_speaker1.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises((D.DataError, AudioError), match=r"clip0_speaker1\.wav.*no samples"):
        _load_clip0(synthetic_dualtalk)


def test_text_file_renamed_wav_names_the_file(synthetic_dualtalk: Path):
    (synthetic_dualtalk / "clip0_speaker1.wav").write_text("this is not audio\n" * 50)
    with pytest.raises((D.DataError, AudioError), match=r"clip0_speaker1\.wav.*cannot read"):
        _load_clip0(synthetic_dualtalk)


def test_npz_without_pose_names_the_file(synthetic_dualtalk: Path):
    np.savez(synthetic_dualtalk / "clip0_speaker2.npz", exp=np.zeros((250, 50), np.float32))
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.npz.*'pose'"):
        _load_clip0(synthetic_dualtalk)


@pytest.mark.parametrize("content", [b"", b"not a zip archive at all"])
def test_empty_or_corrupt_npz_names_the_file(synthetic_dualtalk: Path, content: bytes):
    (synthetic_dualtalk / "clip0_speaker1.npz").write_bytes(content)
    with pytest.raises(D.DataError, match=r"clip0_speaker1\.npz"):
        _load_clip0(synthetic_dualtalk)


def test_npz_with_wrong_shapes_names_the_file(tmp_path: Path):
    np.savez(tmp_path / "m.npz", exp=np.zeros((10, 50)), pose=np.zeros((9, 6)))
    with pytest.raises(D.DataError, match=r"m\.npz.*\(10, 50\).*\(9, 6\)"):
        D.load_flame56(tmp_path / "m.npz")


def test_npz_with_nan_names_the_file(synthetic_dualtalk: Path):
    exp = np.zeros((250, 50), np.float32)
    pose = np.zeros((250, 6), np.float32)
    pose[100, 4] = np.nan  # a jaw value
    np.savez(synthetic_dualtalk / "clip0_speaker2.npz", exp=exp, pose=pose)
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.npz.*NaN"):
        _load_clip0(synthetic_dualtalk)


def test_motion_longer_than_audio_names_npz_and_both_durations(synthetic_dualtalk: Path):
    _write_motion(synthetic_dualtalk / "clip0_speaker1.npz", 255)  # audio is 10 s = 250 frames
    with pytest.raises(D.DataError) as err:
        _load_clip0(synthetic_dualtalk)
    msg = str(err.value)
    assert "clip0_speaker1.npz" in msg
    assert "255 motion frames" in msg and "clip0_speaker1.wav lasts 10.00 s" in msg and "250.0 frames" in msg


def test_length_tolerance_boundary(synthetic_dualtalk: Path):
    assert D.LENGTH_TOLERANCE_FRAMES == 2
    f = synthetic_dualtalk
    # DualTalk-style: audio cut to whole 1024-sample codec frames (1.6 motion frames short) still loads
    s1, _ = sf.read(f / "clip0_speaker1.wav", dtype="float32")
    sf.write(f / "clip0_speaker1.wav", s1[:-1024], RATE, subtype="FLOAT")
    conv = _load_clip0(f)
    assert len(conv.agent_audio) == 10 * RATE - 1024 and len(conv.agent_motion) == 250
    # two frames of motion too many is within tolerance, three is not
    _write_motion(f / "clip0_speaker2.npz", 252)
    _load_clip0(f)
    _write_motion(f / "clip0_speaker2.npz", 253)
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.npz: 253 motion frames"):
        _load_clip0(f)


def test_partner_audio_one_second_shorter_names_the_file(synthetic_dualtalk: Path):
    s2, _ = sf.read(synthetic_dualtalk / "clip0_speaker2.wav", dtype="float32")
    sf.write(synthetic_dualtalk / "clip0_speaker2.wav", s2[:-RATE], RATE, subtype="FLOAT")
    with pytest.raises(D.DataError, match=r"clip0_speaker2\.wav lasts 9\.00 s") as err:
        _load_clip0(synthetic_dualtalk)
    assert "clip0_speaker1.wav" in str(err.value) and "10.00 s" in str(err.value)


def test_audio_with_nan_samples_names_the_file(synthetic_dualtalk: Path):
    s1, _ = sf.read(synthetic_dualtalk / "clip0_speaker1.wav", dtype="float32")
    s1[1234] = np.nan
    sf.write(synthetic_dualtalk / "clip0_speaker1.wav", s1, RATE, subtype="FLOAT")
    with pytest.raises((D.DataError, AudioError), match=r"clip0_speaker1\.wav.*NaN"):
        _load_clip0(synthetic_dualtalk)
    with pytest.raises(AudioError, match=r"clip0_speaker1\.wav"):
        load_audio(synthetic_dualtalk / "clip0_speaker1.wav")


def test_missing_and_empty_folders(tmp_path: Path):
    with pytest.raises(D.DataError, match="nowhere"):
        D.scan_folder(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(D.DataError, match="no <clip>_speaker1/2"):
        D.scan_folder(tmp_path)
    with pytest.raises(AudioError, match=r"gone\.wav.*not found"):
        load_audio(tmp_path / "gone.wav")
    with pytest.raises(D.DataError, match=r"gone\.npz.*not found"):
        D.load_flame56(tmp_path / "gone.npz")


# --------------------------------------------------------------------------- log counts


def test_unmatched_files_are_counted_and_logged(synthetic_dualtalk: Path, caplog):
    f = synthetic_dualtalk
    (f / "notes.txt").write_text("session notes")
    sf.write(f / "clip0_speaker3.wav", np.zeros(RATE, np.float32), RATE)
    (f / "clip1_speaker1.mp4").write_bytes(b"\0")
    caplog.set_level(logging.INFO, logger="model_export.data")
    report = D.scan_folder(f)
    assert len(report.directions) == 4
    assert report.skipped == {"entries not named <clip>_speaker{1,2}.{wav,npz}": 3}
    assert "4 directions; 3 skipped: entries not named <clip>_speaker{1,2}.{wav,npz}" in caplog.text
    assert str(f) in caplog.text


# --------------------------------------------------------------------------- real DualTalk demo


XK = "xkHwlcDSOjc_sub_video_109_000"
UB = "UbjUDM1MiGE_sub_video_72"


def test_demo_scan(demo_folder: Path):
    report = D.scan_folder(demo_folder, allow_missing_motion=True)
    assert sorted(d.name for d in report.directions) == [f"{UB}_speaker2", f"{XK}_speaker1"]
    assert report.skipped == {"directions whose agent has no motion": 2}
    assert report.notes == {"directions without user motion (user tokens = fake_latent)": 2}
    for d in report.directions:
        assert d.user_npz is None and d.agent_npz is not None
    with pytest.raises(D.DataError, match=r"_speaker[12]\.npz: missing motion"):
        D.scan_folder(demo_folder)


def test_demo_loads_despite_codec_length_mismatch_and_windows(demo_folder: Path, logmel):
    report = D.scan_folder(demo_folder, allow_missing_motion=True)
    convs = {d.name: D.load_conversation(d) for d in report.directions}
    xk = convs[f"{XK}_speaker1"]
    assert len(xk.agent_audio) == 479232 and len(xk.agent_motion) == 750  # 29.952 s vs 750 frames: 1.2 apart
    assert abs(len(xk.agent_audio) * FPS / RATE - len(xk.agent_motion)) == pytest.approx(1.2)
    np.testing.assert_array_equal(xk.agent_motion, _flame_from_npz(demo_folder / f"{XK}_speaker1.npz"))
    assert len(convs[f"{UB}_speaker2"].agent_motion) == 587
    ordered = [convs[f"{UB}_speaker2"], convs[f"{XK}_speaker1"]]
    ds = D.WindowDataset(ordered, logmel, samples_per_turn=RATE, frames_per_turn=FPS, window_turns=8)
    assert ds.items == [(0, 0), (0, 8), (1, 0), (1, 8), (1, 16)]  # 23 s -> 2, 29 s -> 3
    last = ds[4]
    assert last["agent_motion"].shape == (200, 56) and last["agent_speech"].shape == (8, 100, 64)
    np.testing.assert_array_equal(last["agent_motion"].numpy(), xk.agent_motion[400:600])
    assert not bool(last["user_motion_present"])
