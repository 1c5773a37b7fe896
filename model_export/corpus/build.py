"""Build a training corpus in DualTalk layout: synthetic dialogues (``dialogue.py``) with FLAME-56
motion for both speakers from the calibrated teacher (``teacher.py``).

    python -m model_export.corpus.build OUT --dialogues 200 --seconds 60 --seed 0 [--real]

Writes ``<clip>_speaker{1,2}.wav``, ``<clip>_speaker{1,2}.npz`` (``exp`` (T, 50), ``pose`` (T, 6) =
[neck | jaw], as DualTalk stores them), ``<clip>_timeline.json``, and ``corpus.json`` with its size
and make-up (hours, voices, share of speech / listening / overlap). Reproducible from the seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .dialogue import corpus_summary, write_dialogue
from .teacher import load_calibration, teach


def write_motion(path: Path, motion: np.ndarray) -> None:
    pose = np.concatenate([motion[:, 53:56], motion[:, 50:53]], axis=1)
    np.savez(path, exp=motion[:, :50].astype(np.float32), pose=pose.astype(np.float32))


def build(out: Path, dialogues: int, seconds: float, seed: int, calib: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    calib = calib or load_calibration()
    t0 = time.time()
    for i in range(dialogues):
        clip = f"dlg{seed + i:05d}"
        d = write_dialogue(out, clip, seed + i, seconds)
        m1, m2 = teach(d.tracks, d.timeline, seed + i, calib)
        write_motion(out / f"{clip}_speaker1.npz", m1)
        write_motion(out / f"{clip}_speaker2.npz", m2)
        print(f"corpus {i + 1}/{dialogues} {clip} ({time.time() - t0:.0f} s)", flush=True)
    summary = {**corpus_summary(out), "seed": seed, "seconds_to_build": round(time.time() - t0, 1)}
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.corpus.build", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--dialogues", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    s = build(args.out, args.dialogues, args.seconds, args.seed)
    shares = {k: round(v, 3) for k, v in s.items() if isinstance(v, float) and k != "hours"}
    print(f"{s['dialogues']} dialogues, {s['hours']:.2f} h, {len(s['voices'])} voices, {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
