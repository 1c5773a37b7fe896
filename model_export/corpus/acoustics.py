"""What a microphone adds to clean speech: room tone, the partner's voice bleeding in, the room,
the phone line, the gain.

Real tracks are never digitally silent. Between its owner's phrases a real track carries room tone
(noise with the room's and the microphone's spectrum, not white or pink) and the partner's voice
(-35 ... -12 dB, delayed, filtered). A model that only ever heard digital zeros learns "any signal ->
mouth open". ``degrade_pair`` turns two clean tracks of a dialogue into what two microphones would
record; the clean tracks and the timeline stay untouched for the teacher.

Room-tone spectra come from real silences (LibriSpeech lead-ins and pauses, the DualTalk clips'
silences): ``build_tone_bank`` measures them once into ``room_tone_spectra.npz`` (committed, a few
KB, so synthesis needs no fixtures); ``room_tone`` draws non-repeating noise with one of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from timar_blender.engine.contract import SPEECH_RATE

NFFT = 512
BANK = Path(__file__).resolve().parent / "room_tone_spectra.npz"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"

# (low, high) ranges per profile; "train" is the corpus, "eval" the held-out benchmark dialogues
PROFILES: dict[str, dict[str, tuple[float, float] | float]] = {
    "train": {
        "tone_dbfs": (-75.0, -40.0),
        "bleed_db": (-35.0, -12.0),
        "speech_dbfs": (-36.0, -14.0),
        "p_reverb": 0.5,
        "p_phone": 0.15,
        "p_clip": 0.05,
        "p_bleed": 0.85,
    },
    "eval": {
        "tone_dbfs": (-62.0, -48.0),
        "bleed_db": (-30.0, -20.0),
        "speech_dbfs": (-28.0, -20.0),
        "p_reverb": 0.3,
        "p_phone": 0.0,
        "p_clip": 0.0,
        "p_bleed": 1.0,
    },
}


def dbfs(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


# ----------------------------------------------------------------------------- room-tone bank


def _quiet_spectrum(x: np.ndarray, rate: int = SPEECH_RATE, quantile: float = 0.15) -> np.ndarray | None:
    """Mean power spectrum (NFFT//2+1) of the quietest frames of a recording, or None if they are
    digital silence."""
    if rate != SPEECH_RATE:
        import soxr

        x = soxr.resample(x, rate, SPEECH_RATE)
    hop = NFFT // 2
    n = (len(x) - NFFT) // hop
    if n < 20:
        return None
    idx = np.arange(n)[:, None] * hop + np.arange(NFFT)[None, :]
    frames = x[idx] * np.hanning(NFFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(1)
    quiet = energy <= np.quantile(energy, quantile)
    spec = power[quiet].mean(0)
    if spec.sum() < 1e-14:
        return None
    return spec / spec.sum()


def build_tone_bank(shared: Path = SHARED, out: Path = BANK) -> int:
    """Measure room-tone spectra from the real recordings under ``shared`` (LibriSpeech
    ``train-clean-100`` only: held-out speakers stay out, and the DualTalk clips) into ``out``."""
    import soundfile as sf

    files = sorted((shared / "librispeech" / "train-clean-100").glob("*.flac"))
    files += sorted((shared / "dualtalk_demo").rglob("*.wav"))
    spectra, names = [], []
    for f in files:
        x, sr = sf.read(f, dtype="float64", always_2d=True)
        s = _quiet_spectrum(x.mean(1), sr)
        if s is not None:
            spectra.append(s)
            names.append(f.name)
    if not spectra:
        raise FileNotFoundError(f"{shared}: no recordings with room tone found")
    np.savez_compressed(out, spectra=np.asarray(spectra, np.float32), names=np.asarray(names))
    return len(spectra)


def tone_bank(path: Path = BANK) -> np.ndarray:
    """(K, NFFT//2+1) normalised power spectra of real room tone."""
    with np.load(path) as z:
        return z["spectra"].astype(np.float64)


def room_tone(n: int, rng: np.random.Generator, level_dbfs: float, spectrum: np.ndarray) -> np.ndarray:
    """``n`` samples of non-repeating noise with the power ``spectrum`` at ``level_dbfs`` RMS, with a
    slow +-1.5 dB level wander (rooms breathe: ventilation, traffic)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.linspace(0, 1, len(spec))
    shape = np.sqrt(np.interp(f, np.linspace(0, 1, len(spectrum)), spectrum))
    y = np.fft.irfft(spec * shape, n)
    wander = np.interp(np.arange(n), np.linspace(0, n, 8), rng.uniform(-1.5, 1.5, 8))
    y *= 10 ** (wander / 20)
    y *= 10 ** (level_dbfs / 20) / (np.sqrt(np.mean(y**2)) + 1e-20)
    return y.astype(np.float32)


# ----------------------------------------------------------------------------- effects


def room_ir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A short synthetic impulse response: direct path plus an exponentially decaying noise tail."""
    n = max(int(rt60 * SPEECH_RATE), 16)
    t = np.arange(n) / SPEECH_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SPEECH_RATE)] = 0.0
    ir = float(rng.uniform(0.15, 0.35)) * tail / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    return ir


def bleed(partner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The partner's voice as the other microphone hears it: delayed 1-25 ms, band-limited, with room."""
    delay = int(rng.uniform(0.001, 0.025) * SPEECH_RATE)
    y = np.concatenate([np.zeros(delay), partner[: len(partner) - delay]])
    lo, hi = float(rng.uniform(80, 300)), float(rng.uniform(2500, 7000))
    y = sosfilt(butter(2, [lo, hi], btype="band", fs=SPEECH_RATE, output="sos"), y)
    return fftconvolve(y, room_ir(rng, float(rng.uniform(0.2, 0.5))))[: len(partner)]


def telephone(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band and an 8-kHz round trip."""
    from scipy.signal import resample_poly

    y = sosfilt(butter(4, [300, 3400], btype="band", fs=SPEECH_RATE, output="sos"), x)
    return resample_poly(resample_poly(y, 1, 2), 2, 1)[: len(x)]


def _u(rng: np.random.Generator, r) -> float:
    return float(rng.uniform(*r))


def degrade_track(
    own: np.ndarray,
    partner: np.ndarray,
    rng: np.random.Generator,
    profile: str = "train",
    bank: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """One microphone's recording of ``own`` clean speech with ``partner`` in the room."""
    p = PROFILES[profile]
    bank = tone_bank() if bank is None else bank
    own = np.asarray(own, np.float64)
    partner = np.asarray(partner, np.float64)
    n = len(own)
    info: dict = {}
    speech_db = _u(rng, p["speech_dbfs"])
    active = np.abs(own) > 1e-6
    ref = dbfs(own[active]) if active.any() else -20.0
    g = 10 ** ((speech_db - ref) / 20)
    x = own * g
    if rng.random() < p["p_reverb"]:
        rt60 = _u(rng, (0.15, 0.45))
        x = fftconvolve(x, room_ir(rng, rt60))[:n]
        info["rt60_s"] = round(rt60, 3)
    if rng.random() < p["p_bleed"] and np.any(partner):
        b_db = _u(rng, p["bleed_db"])
        pa = np.abs(partner) > 1e-6
        pref = dbfs(partner[pa]) if pa.any() else -20.0
        x = x + bleed(partner * 10 ** ((speech_db + b_db - pref) / 20), rng)
        info["bleed_db"] = round(b_db, 1)
    tone_db = _u(rng, p["tone_dbfs"])
    k = int(rng.integers(len(bank)))
    x = x + room_tone(n, rng, tone_db, bank[k])
    info.update(speech_dbfs=round(speech_db, 1), tone_dbfs=round(tone_db, 1), tone_spectrum=k)
    if rng.random() < p["p_phone"]:
        x = telephone(x)
        info["telephone"] = True
    if rng.random() < p["p_clip"]:
        peak = np.abs(x).max() + 1e-12
        x = np.clip(x * (1.3 / peak), -1, 1)
        info["clipped"] = True
    peak = float(np.abs(x).max())
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32), info


def degrade_pair(
    clean_user: np.ndarray, clean_agent: np.ndarray, rng: np.random.Generator, profile: str = "train"
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Two microphones' recordings of a dialogue (each hears its owner, the room and the partner)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown degradation profile {profile!r}; known: {sorted(PROFILES)}")
    bank = tone_bank()
    u, iu = degrade_track(clean_user, clean_agent, rng, profile, bank)
    a, ia = degrade_track(clean_agent, clean_user, rng, profile, bank)
    return u, a, {"profile": profile, "speaker1": iu, "speaker2": ia}


if __name__ == "__main__":
    print(f"{build_tone_bank()} room-tone spectra -> {BANK}")
