"""Motion statistics of real DualTalk clips, distilled into a small committed JSON for the teacher.

Reads the demo conversations in ``../shared/fixtures/dualtalk_demo`` (FLAME npz of one speaker plus
both speakers' 16-kHz WAVs), splits that speaker's frames into talking / listening from the frame
energy of the speaker's own WAV, and measures per clip ("folds") and averaged over clips ("stats"):

* per-channel mean/std of exp (50), jaw (3), neck (3), and per state (talk/listen) for exp;
* jaw opening (jaw x, channel 50) percentiles while talking vs listening;
* the "mouth shape" exp directions: the slope of exp on jaw x while talking (linear regression) and
  the top principal components of the residual exp while talking, with their standard deviations;
* head (neck) motion talking vs listening: std and velocity std per axis, nod amplitude (95th
  percentile of the 0.5-3 Hz band of neck x), and over the whole clip the spectrum-peak frequency and
  the autocorrelation (1/e) time per axis;
* frame-to-frame jitter: mean |second difference| of exp, jaw x and neck;
* ``phones``: the clip aligned the way the teacher sees speech (energy segments of the speaker's own
  WAV -> pocketsphinx allphone -> mouth classes of ``phones.py``): per class the number of frames, the
  mean jaw x and the mean exp offset from the closed mouth (frames outside the segments), with the
  jaw's lead over the audio (the lead in 0..4 frames maximising r(jaw, level)). The clip-averaged
  ``stats`` take the phone section of ``JAW_REFERENCE`` only (the other clip's FLAME jaw does not
  follow its audio); each fold keeps its own clip's, so a fold never sees the held-out clip.

CLI: ``python -m model_export.corpus.calibrate [--out PATH] [--demo DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.ndimage import binary_dilation
from scipy.signal import butter, sosfiltfilt, welch

from model_export.data import load_flame56
from timar_blender.engine import activity
from timar_blender.engine.contract import FPS, SPEECH_RATE

DEMO_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "dualtalk_demo"
DEFAULT_OUT = Path(__file__).resolve().parent / "flame_calibration.json"
N_MOUTH = 3
JAW_REFERENCE = "xkHwlcDSOjc_sub_video_109_000_speaker1"  # the clip whose FLAME jaw follows its audio
TALKING = activity.Gate(over_floor_db=12.0, loud_pct=97, midway=True, majority=5, widen=5)  # talking_mask


def frame_db(x: np.ndarray, n: int, rate: int = SPEECH_RATE, fps: float = FPS) -> np.ndarray:
    """RMS level in dB per motion frame (``n`` frames, zero-padded if the audio is short)."""
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    return activity.frame_db(x, int(rate // fps), n, eps=1e-6)


def talking_mask(db: np.ndarray) -> np.ndarray:
    """Voiced frames (above a level halfway between the track's floor and its loud frames, at least
    12 dB over the floor), median-filtered and dilated by 0.2 s so short closures count as talking."""
    return TALKING.mask(db, FPS)


def _pct(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    p = np.percentile(x, [5, 25, 50, 75, 95])
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        **{f"p{q}": float(v) for q, v in zip((5, 25, 50, 75, 95), p, strict=True)},
    }


def _acf_time(x: np.ndarray, fps: float = FPS) -> float:
    """Seconds until the autocorrelation of ``x`` (mean removed) first drops below 1/e."""
    x = x - x.mean()
    f = np.fft.rfft(x, 2 * len(x))
    ac = np.fft.irfft(f * np.conj(f))[: len(x)]
    ac = ac / (ac[0] + 1e-12)
    below = np.flatnonzero(ac < 1 / np.e)
    return float((below[0] if len(below) else len(x)) / fps)


def _peak_hz(x: np.ndarray, fps: float = FPS) -> float:
    f, p = welch(x - x.mean(), fs=fps, nperseg=min(len(x), 256))
    band = (f >= 0.1) & (f <= 5.0)
    return float(f[band][np.argmax(p[band])])


def _r(v, nd: int = 5):
    """Round floats (recursively) so the JSON stays small."""
    if isinstance(v, dict):
        return {k: _r(x, nd) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_r(x, nd) for x in np.asarray(v).tolist()] if isinstance(v, np.ndarray) else [_r(x, nd) for x in v]
    if isinstance(v, float):
        return round(v, nd)
    return v


def clip_stats(motion: np.ndarray, own_wav: np.ndarray) -> dict:
    """All statistics of one clip: ``motion`` (T, 56) of the speaker whose speech is ``own_wav``."""
    m = np.asarray(motion, np.float64)
    exp, jaw, neck = m[:, :50], m[:, 50:53], m[:, 53:56]
    talk = talking_mask(frame_db(own_wav, len(m)))
    listen = ~talk
    jx = jaw[:, 0]

    # mouth shapes: exp ~ a + slope * jaw_x while talking, then PCA of the residual
    et, jt = exp[talk], jx[talk]
    jc = jt - jt.mean()
    slope = (jc @ (et - et.mean(0))) / (jc @ jc + 1e-12)
    resid = et - et.mean(0) - np.outer(jc, slope)
    _, sv, vt = np.linalg.svd(resid, full_matrices=False)
    pc_std = sv[:N_MOUTH] / np.sqrt(max(len(resid) - 1, 1))
    r2 = 1 - (resid**2).sum() / (((et - et.mean(0)) ** 2).sum() + 1e-12)

    sos = butter(2, [0.5, 3.0], btype="band", fs=FPS, output="sos")
    nod_band = sosfiltfilt(sos, neck[:, 0] - neck[:, 0].mean())
    vel = np.diff(neck, axis=0, prepend=neck[:1])

    def head(mask: np.ndarray) -> dict:
        return {
            "std": neck[mask].std(0),
            "vel_std": vel[mask].std(0),
            "nod_amp": float(np.percentile(np.abs(nod_band[mask]), 95)),
        }

    return {
        "frames": len(m),
        "talk_share": float(talk.mean()),
        "exp_mean": exp.mean(0),
        "exp_std": exp.std(0),
        "exp_std_talk": exp[talk].std(0),
        "exp_std_listen": exp[listen].std(0),
        "jaw_mean": jaw.mean(0),
        "jaw_std": jaw.std(0),
        "neck_mean": neck.mean(0),
        "neck_std": neck.std(0),
        "jaw_x": {"talk": _pct(jx[talk]), "listen": _pct(jx[listen]), "all": _pct(jx)},
        "mouth": {"slope": slope, "r2": float(r2), "basis": vt[:N_MOUTH], "basis_std": pc_std},
        "head": {
            "talk": head(talk),
            "listen": head(listen),
            "peak_hz": [_peak_hz(neck[:, k]) for k in range(3)],
            "acf_s": [_acf_time(neck[:, k]) for k in range(3)],
        },
        "jitter": {
            "exp": float(np.abs(np.diff(exp, 2, axis=0)).mean()),
            "jaw_x": float(np.abs(np.diff(jx, 2)).mean()),
            "neck": np.abs(np.diff(neck, 2, axis=0)).mean(0),
        },
    }


def phone_stats(motion: np.ndarray, own_wav: np.ndarray) -> dict:
    """Per mouth class (``phones.CLASSES``): frames, mean jaw x and mean exp offset from the closed
    mouth, the clip aligned as the teacher aligns speech (energy segments -> pocketsphinx phones)."""
    from . import phones as P
    from .real_clips import energy_segments

    m = np.asarray(motion, np.float64)
    n = len(m)
    segs = energy_segments(np.asarray(own_wav, np.float32), 0)
    ph = P.recognise(own_wav, [(s.start, s.end) for s in segs])
    cls = P.class_track(ph, 4 * n)[np.arange(n) * 4 + 2]  # the 10-ms frame at each motion frame's centre
    inside = np.zeros(n, bool)
    centres = (np.arange(n) + 0.5) / FPS
    for s in segs:
        inside |= (centres >= s.start) & (centres < s.end)
    closed = ~binary_dilation(inside, iterations=3)
    jx, exp = m[:, 50], m[:, :50]
    db = frame_db(own_wav, n)
    rs = [np.corrcoef(jx[: n - lead], db[lead:])[0, 1] for lead in range(5)]
    lead = int(np.argmax(rs))
    jl, el, cl = jx[: n - lead], exp[: n - lead], cls[lead:]  # the mouth moves `lead` frames before the sound
    rest_exp = np.median(exp[closed], axis=0) if closed.sum() > 10 else exp.mean(0)
    per = {}
    for k, name in enumerate(P.CLASSES):
        sel = cl == k
        per[name] = {
            "frames": int(sel.sum()),
            "jaw": float(jl[sel].mean()) if sel.any() else None,
            "exp": (el[sel].mean(0) - rest_exp) if sel.any() else np.zeros(50),
        }
    talk_j = jx[inside] if inside.sum() > 10 else jx
    return {
        "method": "energy_segments of the own WAV -> pocketsphinx allphone -> class at each frame centre; "
        "jaw/exp taken `lead_frames` before the sound (the mouth anticipates it)",
        "lead_frames": lead,
        "r_jaw_level": float(rs[lead]),
        "jaw_rest": float(np.median(jx[closed])) if closed.sum() > 10 else float(np.percentile(jx, 10)),
        "jaw_talk_p95": float(np.percentile(talk_j, 95)),
        "exp_rest": rest_exp,
        "classes": per,
    }


def _average(dicts: list):
    """Average numeric leaves of same-shaped dicts (the clip-averaged "stats")."""
    first = dicts[0]
    if isinstance(first, dict):
        return {k: _average([d[k] for d in dicts]) for k in first if all(k in d for d in dicts)}
    arr = np.mean([np.asarray(d, np.float64) for d in dicts], axis=0)
    if arr.ndim == 0:
        return float(arr)
    return arr


def demo_clips(demo: Path = DEMO_DIR) -> list[tuple[str, Path, Path]]:
    """(clip id, npz, own wav) for every ``<clip>_speakerN.npz`` with its WAV in ``demo``."""
    out = []
    for npz in sorted(Path(demo).glob("*_speaker[12].npz")):
        wav = npz.with_suffix(".wav")
        if wav.is_file():
            out.append((npz.stem, npz, wav))
    return out


def calibrate(demo: Path = DEMO_DIR) -> dict:
    clips = demo_clips(demo)
    if not clips:
        raise FileNotFoundError(f"{demo}: no <clip>_speakerN.npz with its WAV (../shared fixtures absent?)")
    folds = {}
    for name, npz, wav in clips:
        x, sr = sf.read(wav, dtype="float64")
        if sr != SPEECH_RATE:
            raise ValueError(f"{wav}: expected {SPEECH_RATE} Hz, got {sr}")
        motion = load_flame56(npz)
        folds[name] = clip_stats(motion, x)
        folds[name]["phones"] = phone_stats(motion, x)
    stats = _average([{k: v for k, v in f.items() if k != "phones"} for f in folds.values()])
    stats["frames"] = int(sum(f["frames"] for f in folds.values()))
    if JAW_REFERENCE in folds:
        stats["phones"] = {**folds[JAW_REFERENCE]["phones"], "clip": JAW_REFERENCE}
    return _r(
        {
            "version": 2,
            "fps": int(FPS),
            "layout": "exp[0:50] | jaw[50:53] | neck[53:56] (axis-angle, radians); neck x = nod (pitch)",
            "source": [f"dualtalk_demo/{n}.npz" for n in folds],
            "method": "talk = own-WAV frame energy above max(floor+12 dB, (p10+p97)/2), median 5, "
            "dilated 0.2 s; stats = mean over folds (phones: the jaw reference clip's)",
            "stats": stats,
            "folds": folds,
        }
    )


def load_calibration(path: str | Path = DEFAULT_OUT) -> dict:
    with open(path) as fh:
        return json.load(fh)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model_export.corpus.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--demo", type=Path, default=DEMO_DIR)
    args = ap.parse_args(argv)
    try:
        cal = calibrate(args.demo)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(cal, separators=(",", ":")) + "\n")
    s = cal["stats"]
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes) from {len(cal['folds'])} clips: "
        f"jaw x talk {s['jaw_x']['talk']['mean']:.3f} listen {s['jaw_x']['listen']['mean']:.3f}; "
        f"neck std talk {s['head']['talk']['std']} listen {s['head']['listen']['std']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
