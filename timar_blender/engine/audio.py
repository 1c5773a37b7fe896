"""Reading speech tracks: any WAV/FLAC/OGG encoding and rate, mono or stereo -> mono 16 kHz float32.

soundfile (libsndfile) decodes, soxr resamples; both ship small wheels for every platform Blender
runs on. Errors name the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import SPEECH_RATE as TARGET_RATE

# checked on the file's header before decoding: a header claiming 1 Hz would otherwise be resampled
# into gigabytes, and an hours-long claim decoded before anything could refuse it
RATE_RANGE = (4_000, 384_000)
MAX_SECONDS = 4 * 3600.0
MAX_CHANNELS = 64
MAX_DECODED = 1 << 30  # samples over all channels decoded at once (4 GiB as float32)


class AudioError(ValueError):
    """A speech track that cannot be used; the message names the file."""


def resample(wave: np.ndarray, rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    if rate == target_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    return soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), rate, target_rate, quality="HQ").astype(
        np.float32
    )


def to_mono(wave: np.ndarray, channel: int | None = None, *, source: str = "audio") -> np.ndarray:
    """Pick ``channel`` of a (N, C) array, or average the channels when ``channel`` is None."""
    if wave.ndim == 1:
        if channel not in (None, 0):
            raise AudioError(f"{source}: channel {channel} requested but the file is mono")
        return wave
    if channel is None:
        return wave.mean(axis=1)
    if not 0 <= channel < wave.shape[1]:
        raise AudioError(f"{source}: channel {channel} requested but the file has {wave.shape[1]} channels")
    return wave[:, channel]


def load_audio(path: str | Path, channel: int | None = None, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Mono float32 samples at ``target_rate``; ``channel``: one voice of a stereo file.

    Raises AudioError for a missing, empty, unreadable or non-finite file, a header with an
    implausible rate, length or channel count, or a ``channel`` of a file that is not stereo.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    try:
        head = sf.info(str(path))
    except Exception as exc:  # libsndfile reports format problems as RuntimeError/LibsndfileError
        raise AudioError(f"{path}: cannot read audio ({_one_line(exc)})") from None
    check_header(path, head.samplerate, head.frames, head.channels)
    if channel is not None and head.channels > 2:
        raise AudioError(f"{path}: one stereo file (a voice per channel) was expected, but it has {head.channels} "
                         "channels; mix it down to the two voices first")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:
        raise AudioError(f"{path}: cannot read audio ({_one_line(exc)})") from None
    if wave.size == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    wave = to_mono(wave, channel, source=str(path))
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    return resample(wave, int(rate), target_rate)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_header(path: object, rate: int, frames: int, channels: int) -> None:
    """Refuse a declared rate, length or channel count no speech track has (before decoding)."""
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise AudioError(
            f"{path}: sample rate {rate} Hz is outside {RATE_RANGE[0]}-{RATE_RANGE[1]} Hz (a damaged header?)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: {channels} channels; at most {MAX_CHANNELS} are read")
    if frames > MAX_SECONDS * rate:
        raise AudioError(
            f"{path}: {frames / rate / 3600:.1f} hours of audio; at most {MAX_SECONDS / 3600:g} hours are read"
        )
    if frames * channels > MAX_DECODED:
        raise AudioError(
            f"{path}: {frames / rate / 3600:.1f} hours of {channels}-channel audio at {rate} Hz is more than "
            f"{MAX_DECODED} samples to decode; mix it down to the voices needed or lower its rate first"
        )


NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's


def normalize_per_file(wave: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the whole track, as Wav2Vec2FeatureExtractor does."""
    return Normalizer.of_file(wave)(wave)


class Normalizer:
    """Normalises a track chunk by chunk.

    ``stats=(mean, variance)`` fixes them (per-file normalisation when they are the whole file's:
    exactly ``normalize_per_file``); without, the statistics are causal: those of every sample
    seen so far, this chunk included, so a live stream can use it.
    """

    def __init__(self, stats: tuple[float, float] | None = None) -> None:
        self.fixed = stats
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    @classmethod
    def of_file(cls, wave: np.ndarray) -> Normalizer:
        w = np.asarray(wave, dtype=np.float32)
        return cls((float(w.mean()), float(w.var())))

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.fixed is not None:
            mean, var = self.fixed
        else:  # Chan et al.'s parallel update of the running mean / sum of squares
            n_b = len(chunk)
            if n_b:
                mean_b = float(chunk.mean(dtype=np.float64))
                m2_b = float(((chunk - mean_b) ** 2).sum(dtype=np.float64))
                n = self.n + n_b
                delta = mean_b - self.mean
                self.mean += delta * n_b / n
                self.m2 += m2_b + delta * delta * self.n * n_b / n
                self.n = n
            mean, var = self.mean, self.m2 / max(self.n, 1)
        return ((chunk - np.float32(mean)) / np.float32(np.sqrt(var + NORM_EPS))).astype(np.float32)


def check_finite(wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise AudioError(f"{what}: expected mono samples, got an array of shape {wave.shape}")
    bad = np.count_nonzero(~np.isfinite(wave))
    if bad:
        raise AudioError(f"{what}: {bad} NaN or infinite samples")
    return wave
