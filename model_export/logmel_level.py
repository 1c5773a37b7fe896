"""The log-mel level of speech: the fixed constants of ``speech.LevelPreservingNorm`` and how they
were measured, plus the frame level used to show that a quiet track stays quiet.

The constants are the per-bin mean and std (natural-log units) of ``LogMelFeatures`` over the active
frames of speech at -26 dBFS active level (ITU-T P.56's usual reference): one utterance of each of the
251 LibriSpeech train-clean-100 speakers in ``../shared/fixtures/librispeech``, each scaled so that its
active frames (10-ms frames within 30 dB of the utterance's 95th-percentile frame) have an RMS of
-26 dBFS. ``measure_speech_logmel_stats`` reproduces them (``addon_tests/test_audio_level.py`` checks it
when the fixtures are there). They define the model: never change them, add a new table instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

REFERENCE_DBFS = -26.0
ACTIVE_RANGE_DB = 30.0
# (sample_rate, n_fft, hop, n_mels) -> per-bin log-mel (mean, std) of speech at REFERENCE_DBFS
_SPEECH_MEAN_16K_400_160_64 = (
    -3.09, -2.62, -1.79, -1.17, -0.92, -1.02, -1.57, -2.08, -2.05, -2.04, -2.06, -2.16,
    -2.47, -2.72, -3.06, -3.42, -3.75, -4.18, -4.32, -4.55, -4.78, -4.94, -5.08, -5.22,
    -5.30, -5.39, -5.45, -5.44, -5.38, -5.35, -5.38, -5.43, -5.53, -5.62, -5.75, -5.88,
    -5.92, -5.91, -5.93, -5.99, -6.08, -6.15, -6.21, -6.36, -6.53, -6.67, -6.77, -6.83,
    -6.95, -7.13, -7.34, -7.52, -7.72, -7.91, -8.08, -8.22, -8.35, -8.46, -8.51, -8.59,
    -8.67, -8.75, -8.83, -8.92,
)
_SPEECH_STD_16K_400_160_64 = (
    2.90, 2.97, 3.09, 3.18, 3.34, 3.50, 3.58, 3.51, 3.41, 3.45, 3.47, 3.46,
    3.46, 3.45, 3.46, 3.44, 3.39, 3.35, 3.28, 3.21, 3.14, 3.09, 3.06, 3.05,
    3.03, 3.01, 2.99, 2.98, 2.97, 2.98, 2.97, 2.95, 2.93, 2.89, 2.85, 2.83,
    2.84, 2.86, 2.89, 2.90, 2.90, 2.89, 2.88, 2.87, 2.85, 2.84, 2.85, 2.86,
    2.88, 2.90, 2.90, 2.90, 2.89, 2.89, 2.86, 2.83, 2.78, 2.73, 2.68, 2.63,
    2.59, 2.54, 2.50, 2.49,
)
SPEECH_LOGMEL_STATS: dict[tuple[int, int, int, int], tuple[tuple[float, ...], tuple[float, ...]]] = {
    (16_000, 400, 160, 64): (_SPEECH_MEAN_16K_400_160_64, _SPEECH_STD_16K_400_160_64),
}


Stats = tuple[tuple[float, ...], tuple[float, ...]]


def speech_logmel_stats(sample_rate: int, n_fft: int, hop: int, n_mels: int) -> Stats:
    key = (int(sample_rate), int(n_fft), int(hop), int(n_mels))
    if key not in SPEECH_LOGMEL_STATS:
        raise ValueError(
            f"no speech log-mel statistics for (rate, n_fft, hop, n_mels) = {key}; known: "
            f"{sorted(SPEECH_LOGMEL_STATS)} (measure them with model_export.logmel_level.measure_speech_logmel_stats)"
        )
    return SPEECH_LOGMEL_STATS[key]


def active_frames(x: np.ndarray, hop: int = 160) -> np.ndarray:
    """Bool per ``hop``-sample frame: within ACTIVE_RANGE_DB of the 95th-percentile frame level."""
    fr = np.asarray(x, np.float64)[: len(x) // hop * hop].reshape(-1, hop)
    lv = 10 * np.log10((fr**2).mean(1) + 1e-20)
    return lv > np.percentile(lv, 95) - ACTIVE_RANGE_DB


def at_active_level(x: np.ndarray, dbfs: float = REFERENCE_DBFS, hop: int = 160) -> np.ndarray:
    """``x`` scaled so that its active frames have an RMS of ``dbfs``."""
    x = np.asarray(x, np.float64)
    fr = x[: len(x) // hop * hop].reshape(-1, hop)
    act = 10 * np.log10((fr[active_frames(x, hop)] ** 2).mean() + 1e-20)
    return (x * 10 ** ((dbfs - act) / 20)).astype(np.float32)


def measure_speech_logmel_stats(
    files: Iterable[Path], sample_rate: int = 16_000, n_fft: int = 400, hop: int = 160, n_mels: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin (mean, std) of the log-mel of the active frames of ``files`` at REFERENCE_DBFS."""
    import torch

    from timar_blender.engine.audio import load_audio

    from .speech import LogMelFeatures

    feats = LogMelFeatures(sample_rate, n_fft, hop, n_mels)
    rows = []
    for f in files:
        x = at_active_level(load_audio(f, target_rate=sample_rate), hop=hop)
        n = len(x) // sample_rate * sample_rate
        if n == 0:
            continue
        with torch.no_grad():
            m = feats(torch.from_numpy(x[:n].reshape(-1, sample_rate))).reshape(-1, n_mels).numpy()
        rows.append(m[active_frames(x[:n], hop)[: len(m)]])
    m = np.concatenate(rows).astype(np.float64)
    return m.mean(0), m.std(0)


def frame_level_db(logmel: np.ndarray) -> np.ndarray:
    """(..., L, n_mels) log-mel -> (..., L) level in dB: the mean mel power of each frame."""
    return 10 * np.log10(np.exp(np.asarray(logmel, np.float64)).mean(-1))


def listening_levels(seed: int = 0) -> dict[str, dict[str, float]]:
    """Median log-mel frame level (dB) of speech, partner bleed and room tone on the behaviour
    benchmark's pure-listening case, with raw samples ("none") and per-file normalisation ("file")."""
    import torch

    from timar_blender.engine.audio import normalize_per_file

    from .behaviour import one_sided_case
    from .speech import LogMelFeatures

    case = one_sided_case("listening", seed=seed)
    user, agent = case.tracks
    rate, hop = 16_000, 160
    n = min(len(user), len(agent)) // rate * rate
    t = np.arange(n // hop) * hop / rate
    talking = np.zeros(len(t), bool)  # the user speaks (the timeline holds only the user's turns)
    for _, start, end, *_ in case.timeline or []:
        talking |= (t >= start) & (t < end)
    feats = LogMelFeatures(rate, 400, hop, 64)

    def level(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            chunks = torch.from_numpy(np.ascontiguousarray(x[:n], np.float32).reshape(-1, rate))
            return frame_level_db(feats(chunks).reshape(-1, 64).numpy())

    out = {}
    for path, norm in (("none", lambda x: x), ("file", normalize_per_file)):
        lu, la = level(norm(user)), level(norm(agent))
        out[path] = {
            "speech (user track, user talking)": float(np.median(lu[talking])),
            "bleed (agent track, user talking)": float(np.median(la[talking])),
            "room tone (agent track, user silent)": float(np.median(la[~talking])),
        }
    return out


def main() -> int:
    levels = listening_levels()
    print("Median log-mel frame level (dB) on the behaviour benchmark's pure-listening case (seed 0)\n")
    print("| frames | raw samples (\"none\") | per-file normalised (\"file\") |\n|---|---:|---:|")
    for key in levels["none"]:
        print(f"| {key} | {levels['none'][key]:.1f} | {levels['file'][key]:.1f} |")
    for path in ("none", "file"):
        v = list(levels[path].values())
        print(f"\n{path}: speech - bleed {v[0] - v[1]:.1f} dB, speech - room tone {v[0] - v[2]:.1f} dB", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
