"""Room tone, bleed and the microphone degradation of corpus v2 (no fixtures needed: the spectra
bank is committed)."""

import numpy as np
import pytest

from model_export.corpus import acoustics
from timar_blender.engine.contract import SPEECH_RATE

RATE = SPEECH_RATE


def _tone_speech(seconds: float, f0: float, on: tuple[float, float]) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.1 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    x[(t < on[0]) | (t >= on[1])] = 0.0
    return x.astype(np.float32)


def test_bank_holds_real_room_spectra():
    bank = acoustics.tone_bank()
    assert bank.ndim == 2 and bank.shape[1] == acoustics.NFFT // 2 + 1 and len(bank) >= 50
    assert np.allclose(bank.sum(1), 1.0, atol=1e-3)
    # real rooms are not white: most spectra put far less than half their power above 4 kHz
    high = bank[:, bank.shape[1] // 2 :].sum(1)
    assert np.median(high) < 0.3


def test_room_tone_has_level_and_spectrum_and_never_repeats():
    rng = np.random.default_rng(0)
    spec = acoustics.tone_bank()[3]
    y = acoustics.room_tone(4 * RATE, rng, -55.0, spec)
    assert abs(acoustics.dbfs(y) - (-55.0)) < 0.5
    half = len(y) // 2
    assert abs(np.corrcoef(y[:half], y[half:])[0, 1]) < 0.05  # not a loop
    # its spectrum follows the measured one (correlation of log spectra over 100 Hz..7 kHz)
    p = np.abs(np.fft.rfft(y[: RATE].astype(np.float64))) ** 2
    f = np.fft.rfftfreq(RATE, 1 / RATE)
    want = np.interp(f, np.linspace(0, RATE / 2, len(spec)), spec)
    band = (f > 100) & (f < 7000)
    from scipy.ndimage import uniform_filter1d

    r = np.corrcoef(np.log(uniform_filter1d(p, 200)[band]), np.log(want[band] + 1e-20))[0, 1]
    assert r > 0.8


@pytest.mark.parametrize("profile", ["train", "eval"])
def test_degraded_tracks_are_never_digitally_silent_and_carry_bleed(profile):
    user = _tone_speech(6.0, 180.0, (0.5, 2.5))
    agent = _tone_speech(6.0, 300.0, (3.0, 5.0))
    u, a, info = acoustics.degrade_pair(user, agent, np.random.default_rng(1), profile)
    assert u.shape == user.shape and a.shape == agent.shape
    assert np.isfinite(u).all() and np.isfinite(a).all() and np.abs(a).max() <= 1.0
    lo, _hi = acoustics.PROFILES[profile]["tone_dbfs"]
    for x in (u, a):
        frames = x[: len(x) // 640 * 640].reshape(-1, 640)
        assert (np.sqrt((frames.astype(np.float64) ** 2).mean(1)) > 10 ** ((lo - 10) / 20)).all()
    # the agent's track while only the user speaks: louder than room tone alone (the user bleeds in)
    if "bleed_db" in info["speaker2"]:
        seg = a[int(0.7 * RATE) : int(2.3 * RATE)]
        assert acoustics.dbfs(seg) > info["speaker2"]["tone_dbfs"] + 1.0
    with pytest.raises(ValueError, match="profile"):
        acoustics.degrade_pair(user, agent, np.random.default_rng(1), "studio")
