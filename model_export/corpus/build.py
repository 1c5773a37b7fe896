"""Build a training corpus in DualTalk layout: two-person dialogues with FLAME-56 motion for both
speakers from the calibrated teacher (``teacher.py``).

    python -m model_export.corpus.build OUT --dialogues 300 --seconds 40 --seed 0 --jobs 2 \
        [--voices real|tts] [--tts-share 0.2] [--fold CLIP] [--real] [--audio-from OTHER_CORPUS]

``--voices real`` (corpus v2, the default): LibriSpeech speakers mixed with TTS voices
(``voices.py``), recorded as two microphones record them (room tone, bleed, room, phone line;
``acoustics.py``); the clean tracks go to ``clean/<clip>_speaker{1,2}.flac`` and the teacher works on
them and on the true timeline, while the model hears the recorded mix. ``--voices tts``: corpus v1's
TTS-only dialogues (``dialogue.py``).

Writes ``<clip>_speaker{1,2}.wav``, ``<clip>_speaker{1,2}.npz`` (``exp`` (T, 50), ``pose`` (T, 6) =
[neck | jaw], as DualTalk stores them), ``<clip>_timeline.json``, and ``corpus.json`` with its size,
make-up (hours, voices, share of speech / listening / overlap) and the sources' licences.
Reproducible from the seed.

``--fold CLIP`` calibrates the teacher on that one real clip (see ``flame_calibration.json`` folds)
so the other real clip stays unseen for evaluation; ``--real`` then adds only the real conversation
the fold was calibrated on (its audio, teacher motion), never the held-out one. ``--audio-from``
re-teaches an existing corpus's audio with another calibration (WAVs and timelines are linked, not
copied), so two folds share the same synthetic speech.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from timar_blender.engine.contract import SPEECH_RATE

from .dialogue import corpus_summary, write_dialogue, write_wav
from .real_clips import DEMO_DIR, add_real_dialogues
from .teacher import load_calibration, teach
from .voices import ATTRIBUTION

CLEAN = "clean"  # sub-folder of the clean speech the teacher hears (the data loader ignores it)


def write_motion(path: Path, motion: np.ndarray) -> None:
    pose = np.concatenate([motion[:, 53:56], motion[:, 50:53]], axis=1)
    np.savez(path, exp=motion[:, :50].astype(np.float32), pose=pose.astype(np.float32))


def fold_stats(calib: dict, fold: str | None) -> dict:
    """The teacher's statistics: clip-averaged (``fold`` None) or one real clip's."""
    if fold is None:
        return calib["stats"]
    if fold not in calib["folds"]:
        raise ValueError(f"unknown calibration fold {fold!r}; the calibration has {sorted(calib['folds'])}")
    return calib["folds"][fold]


def _read_tracks(folder: Path, clip: str) -> tuple[list[np.ndarray], dict]:
    """The tracks the teacher hears: the clean speech when the corpus kept it, else the recording."""
    meta = json.loads((folder / f"{clip}_timeline.json").read_text())
    clean = [folder / CLEAN / f"{clip}_speaker{k}.flac" for k in (1, 2)]
    paths = clean if all(p.exists() for p in clean) else [folder / f"{clip}_speaker{k}.wav" for k in (1, 2)]
    tracks = [sf.read(p, dtype="float32")[0] for p in paths]
    return tracks, meta


def write_real_voice_dialogue(folder: Path, clip: str, seed: int, seconds: float, tts_share: float) -> None:
    from .voices import real_voice_dialogue

    d = real_voice_dialogue("train-clean-100", seed, seconds, tts_share=tts_share)
    (folder / CLEAN).mkdir(parents=True, exist_ok=True)
    for k in range(2):
        write_wav(folder / f"{clip}_speaker{k + 1}.wav", d.tracks[k])
        clean = np.clip(d.clean[k], -1, 1)
        sf.write(folder / CLEAN / f"{clip}_speaker{k + 1}.flac", clean, SPEECH_RATE, subtype="PCM_16")
    (folder / f"{clip}_timeline.json").write_text(json.dumps(d.meta(), indent=1))


def _teach_clip(folder: Path, clip: str, seed: int, stats: dict) -> None:
    tracks, meta = _read_tracks(folder, clip)
    m1, m2 = teach(tracks, meta["segments"], seed, stats)
    write_motion(folder / f"{clip}_speaker1.npz", m1)
    write_motion(folder / f"{clip}_speaker2.npz", m2)


def _one(
    out: Path, seed: int, seconds: float, stats: dict, audio_from: Path | None, voices: str, tts_share: float
) -> str:
    clip = f"dlg{seed:05d}"
    if audio_from is None:
        if voices == "real":
            write_real_voice_dialogue(out, clip, seed, seconds, tts_share)
        else:
            write_dialogue(out, clip, seed, seconds)
    else:
        names = [f"{clip}_speaker1.wav", f"{clip}_speaker2.wav", f"{clip}_timeline.json"]
        if (audio_from / CLEAN / f"{clip}_speaker1.flac").exists():
            (out / CLEAN).mkdir(exist_ok=True)
            names += [f"{CLEAN}/{clip}_speaker1.flac", f"{CLEAN}/{clip}_speaker2.flac"]
        for name in names:
            src = (audio_from / name).resolve()
            if not src.exists():
                raise FileNotFoundError(f"{src}: missing in the corpus given to --audio-from")
            (out / name).unlink(missing_ok=True)
            os.symlink(src, out / name)
    _teach_clip(out, clip, seed, stats)
    return clip


def build(
    out: Path,
    dialogues: int,
    seconds: float,
    seed: int,
    calib: dict | None = None,
    *,
    fold: str | None = None,
    real: bool = False,
    jobs: int = 1,
    audio_from: Path | None = None,
    demo: Path = DEMO_DIR,
    voices: str = "real",
    tts_share: float = 0.2,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    calib = calib or load_calibration()
    stats = fold_stats(calib, fold)
    t0 = time.time()
    seeds = [seed + i for i in range(dialogues)]
    done = 0
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = [pool.submit(_one, out, s, seconds, stats, audio_from, voices, tts_share) for s in seeds]
        for f in futures:
            clip = f.result()
            done += 1
            print(f"corpus {done}/{dialogues} {clip} ({time.time() - t0:.0f} s)", flush=True)
    real_clips: list[str] = []
    if real:
        # only the conversation the teacher was calibrated on; the other real clip stays held out
        keep = None if fold is None else fold.rsplit("_speaker", 1)[0]
        for name in add_real_dialogues(out, demo):
            if keep is not None and name != f"real_{keep}":
                for suffix in ("_speaker1.wav", "_speaker2.wav", "_timeline.json"):
                    (out / f"{name}{suffix}").unlink()
                continue
            _teach_clip(out, name, seed, stats)
            real_clips.append(name)
    summary = {
        **corpus_summary(out),
        "seed": seed,
        "synthetic_dialogues": dialogues,
        "real_dialogues": real_clips,
        "calibration": fold or "mean of all folds",
        "sources": _sources(out, voices, tts_share, audio_from),
        "seconds_to_build": round(time.time() - t0, 1),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    return summary


def merge_summaries(summaries: list[dict]) -> dict:
    """One ``corpus.json``-style description of several corpora a model was trained on together:
    sizes summed, voices united, shares weighted by hours, seeds listed; the make-up and licences of
    the first (corpora built by this builder share them), counts of speakers the largest."""
    if len(summaries) == 1:
        return summaries[0]
    first, hours = summaries[0], [float(s.get("hours", 0.0)) for s in summaries]
    out = dict(first)
    out["corpora"] = len(summaries)
    for key in ("dialogues", "synthetic_dialogues", "seconds_to_build"):
        if all(key in s for s in summaries):
            out[key] = round(sum(s[key] for s in summaries), 1) if key == "seconds_to_build" else sum(
                s[key] for s in summaries)
    out["hours"] = sum(hours)
    out["voices"] = sorted({v for s in summaries for v in s.get("voices", [])})
    for key in ("user_only", "agent_only", "both", "silence"):
        if all(key in s for s in summaries) and sum(hours) > 0:
            out[key] = sum(s[key] * h for s, h in zip(summaries, hours)) / sum(hours)
    out["seed"] = [s.get("seed") for s in summaries]
    out["real_dialogues"] = sorted({r for s in summaries for r in s.get("real_dialogues", [])})
    calibrations = {s.get("calibration") for s in summaries}
    out["calibration"] = first.get("calibration") if len(calibrations) == 1 else "mixed: " + ", ".join(
        sorted(map(str, calibrations)))
    lib = [s.get("sources", {}).get("librispeech") for s in summaries]
    if all(isinstance(x, dict) and "speakers" in x for x in lib):
        out["sources"] = {**first["sources"], "librispeech": {**lib[0], "speakers": max(x["speakers"] for x in lib)}}
    return out


def _sources(out: Path, voices: str, tts_share: float, audio_from: Path | None) -> dict:
    """What the corpus is made of, with licences: LibriSpeech speakers, TTS voices, acoustics."""
    metas = [json.loads(p.read_text()) for p in sorted(out.glob("dlg*_timeline.json"))]
    names = [v["name"] for m in metas for v in m.get("voices", [])]
    real = sorted({n for n in names if n.startswith("librispeech:")})
    src: dict = {
        "voices": voices if audio_from is None else f"audio from {audio_from}",
        "tts_voices": {"engines": "espeak-ng (GPL-3.0), flite (BSD-like)", "count": len(set(names) - set(real))},
    }
    if real:
        src["librispeech"] = {**ATTRIBUTION, "speakers": len(real), "split": "train-clean-100"}
        src["tts_share"] = tts_share
        src["acoustics"] = ("acoustics.degrade_pair profile 'train': room tone from real silences' spectra, "
                            "partner bleed, reverberation, telephone band, gain, clipping")
    return src


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.corpus.build", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--dialogues", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--fold", default=None, help="calibrate the teacher on this real clip only")
    p.add_argument("--real", action="store_true", help="add the real demo conversation(s) allowed by --fold")
    p.add_argument("--audio-from", type=Path, default=None, help="reuse this corpus's audio (linked)")
    p.add_argument("--voices", choices=("real", "tts"), default="real",
                   help="real: LibriSpeech + TTS voices recorded with room tone and bleed (v2); tts: v1")
    p.add_argument("--tts-share", type=float, default=0.2, help="share of --voices real speakers given a TTS voice")
    args = p.parse_args(argv)
    s = build(
        args.out,
        args.dialogues,
        args.seconds,
        args.seed,
        fold=args.fold,
        real=args.real,
        jobs=args.jobs,
        audio_from=args.audio_from,
        voices=args.voices,
        tts_share=args.tts_share,
    )
    shares = {k: round(v, 3) for k, v in s.items() if isinstance(v, float) and k != "hours"}
    print(f"{s['dialogues']} dialogues, {s['hours']:.2f} h, {len(s['voices'])} voices, {shares}, "
          f"calibration: {s['calibration']}, real: {s['real_dialogues']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
