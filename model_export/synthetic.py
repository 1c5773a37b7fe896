"""Small synthetic conversations in DualTalk layout, for smoke runs and tests on a fresh clone
(no dataset needed). Audio is a speech-like harmonic tone gated into turns; motion follows the
audio envelope so that a model has something learnable. Not a training corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from timar_blender.engine.contract import EXPRESSION, JAW, MOTION_DIM, NECK, dualtalk_from_motion


def synth_speech(seconds: float, rate: int, seed: int, active: list[tuple[float, float]]) -> np.ndarray:
    """Speech-like audio: a glottal-pulse-ish harmonic tone with syllable-rate amplitude
    modulation inside the ``active`` intervals, faint noise elsewhere."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * rng.random() + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syll = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.random() * 6))
    gate = np.zeros_like(t)
    for a, b in active:
        gate[(t >= a) & (t < b)] = 1.0
    return (0.3 * voice * syll * gate + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def synth_motion(audio: np.ndarray, rate: int, fps: int, seed: int) -> np.ndarray:
    """FLAME-56 frames whose jaw follows the audio envelope (so a model can learn something)."""
    rng = np.random.default_rng(seed)
    hop = rate // fps
    n = len(audio) // hop
    env = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    env = env / (env.max() + 1e-9)
    m = np.zeros((n, MOTION_DIM), np.float32)
    m[:, EXPRESSION] = 0.3 * np.sin(np.arange(n)[:, None] / 9.0 + rng.random(50) * 6) * rng.random(50)
    m[:, 0] += 1.5 * env
    m[:, JAW.start] = 0.25 * env  # jaw opening
    m[:, NECK] = 0.05 * np.sin(np.arange(n)[:, None] / 13.0 + rng.random(3) * 6)
    return m


def write_dualtalk_folder(
    folder: Path, clips: int = 2, seconds: float = 10.0, rate: int = 16_000, fps: int = 25, seed: int = 0
) -> Path:
    """``clips`` two-person conversations in DualTalk layout (wav + npz for both speakers)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for c in range(clips):
        half = seconds / 2
        turns = {"speaker1": [(0.2, half - 0.3)], "speaker2": [(half, seconds - 0.2)]}
        for s, (spk, active) in enumerate(turns.items()):
            audio = synth_speech(seconds, rate, seed * 100 + c * 10 + s, active)
            sf.write(folder / f"clip{c}_{spk}.wav", audio, rate, subtype="FLOAT")
            m = synth_motion(audio, rate, fps, seed * 100 + c * 10 + s)
            exp, pose = dualtalk_from_motion(m)
            np.savez(folder / f"clip{c}_{spk}.npz", exp=exp, pose=pose, shape=np.zeros((len(m), 100), np.float32))
    return folder


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m model_export.synthetic", description="write synthetic DualTalk-format conversations"
    )
    p.add_argument("out", type=Path)
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--seconds", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write_dualtalk_folder(a.out, a.clips, a.seconds, seed=a.seed)
    print(f"wrote {a.clips} conversations of {a.seconds:.0f} s to {a.out}")


if __name__ == "__main__":
    main()
