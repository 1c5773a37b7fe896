"""A rule-based motion teacher: FLAME-56 motion for both speakers of a two-person dialogue.

``teach(tracks, timeline, seed, calib)`` -> two (T, 56) arrays at 25 fps (``exp[0:50] | jaw[50:53] |
neck[53:56]``), amplitudes and rhythms from the calibration JSON written by ``calibrate.py``
(``calib`` is that whole dict, whose clip-averaged ``stats`` are used, or one fold's stats dict).

Talking: a per-10-ms mouth openness from the speaker's own track, with a spectral phone-class
heuristic (no recognizer): silence -> closed, vowel-like (voiced, energy in the low bands) -> open
scaled by the level, fricative-like (energy above 3 kHz) -> slightly open, other sounds -> by level
(dips and closures close the mouth). Coarticulation is a Gaussian smoothing (sigma 30 ms, then 40-ms
frame means) of these targets. Jaw x = rest + openness * calibrated talking span; exp = mean +
regression slope on jaw x + calibrated mouth-shape components changing per syllable + slow noise.

Head: while talking, slow drift (autocorrelation time from the calibration) plus pitch-following
nod-axis motion and short nods on emphasis (level onsets); while listening, slow sway with small tilt
changes plus nods timed to the partner's phrase ends and pauses, and a nod on the listener's own
backchannels. Each state is scaled to the calibrated per-axis std and the two are cross-faded by the
speaker's (smoothed) activity. Blinks are not modelled (not in FLAME-56). Deterministic per seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

FPS = 25
RATE = 16000
HOP = RATE // 100  # 10-ms analysis frames
WIN = 400
CALIBRATION = Path(__file__).resolve().parent / "flame_calibration.json"


def load_calibration(path: str | Path = CALIBRATION) -> dict:
    import json

    with open(path) as fh:
        return json.load(fh)


def _stats(calib: dict) -> dict:
    return calib.get("stats", calib)


def _seg(s) -> tuple[int, float, float, str]:
    if isinstance(s, dict):
        return int(s["speaker"]), float(s["start"]), float(s["end"]), str(s.get("kind", "turn"))
    return int(s[0]), float(s[1]), float(s[2]), str(s[3]) if len(s) > 3 else "turn"


# ----------------------------------------------------------------------------- audio analysis


def analyse(x: np.ndarray, n100: int) -> dict[str, np.ndarray]:
    """Per 10-ms frame: level (dB), band shares (low 150-1000 Hz, high > 3 kHz) and F0 (Hz, 0 when
    unvoiced) of one track, ``n100`` frames."""
    x = np.asarray(x, np.float64)
    x = np.pad(x, (WIN // 2, n100 * HOP + WIN))
    idx = np.arange(n100)[:, None] * HOP + np.arange(WIN)[None, :]
    fr = x[idx] * np.hanning(WIN)
    spec = np.abs(np.fft.rfft(fr, 512, axis=1)) ** 2
    f = np.fft.rfftfreq(512, 1 / RATE)
    tot = spec[:, f >= 80].sum(1) + 1e-12
    low = spec[:, (f >= 150) & (f < 1000)].sum(1) / tot
    high = spec[:, f >= 3000].sum(1) / tot
    db = 10 * np.log10(tot / WIN + 1e-12)
    # F0 by autocorrelation (70-400 Hz) on frames with enough low-band energy
    ac = np.fft.irfft(np.abs(np.fft.rfft(fr, 1024, axis=1)) ** 2, axis=1)[:, : RATE // 70 + 1]
    lo_lag = RATE // 400
    lag = lo_lag + np.argmax(ac[:, lo_lag:], axis=1)
    strength = ac[np.arange(n100), lag] / (ac[:, 0] + 1e-12)
    f0 = np.where((strength > 0.45) & (low > 0.4), RATE / lag, 0.0)
    return {"db": db, "low": low, "high": high, "f0": f0}


def openness(feat: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
    """Mouth-openness targets in [0, 1] per 10-ms frame (spectral phone classes), smoothed."""
    db = feat["db"]
    ref = db[active] if active.sum() > 10 else db
    floor = np.percentile(db[~active], 50) if (~active).sum() > 10 else np.percentile(db, 10)
    loud = np.percentile(ref, 95)
    env = np.clip((db - floor - 6.0) / max(loud - floor - 6.0, 6.0), 0, 1)
    vowel = (feat["low"] > 0.5) & (env > 0.35)
    fric = (feat["high"] > 0.35) & (env > 0.15) & ~vowel
    target = 0.6 * env**1.5  # other sounds: by level; dips / closures -> near closed
    target = np.where(vowel, 0.15 + 0.75 * env**1.2, target)
    target = np.where(fric, 0.2, target)
    target = np.where(env < 0.12, 0.0, target)
    return np.clip(gaussian_filter1d(target, 3.0), 0, 1)  # coarticulation: sigma 30 ms


def _to_fps(x100: np.ndarray, n: int) -> np.ndarray:
    """10-ms frames -> 25-fps frames (mean of 4)."""
    x = np.pad(x100, (0, max(0, 4 * n - len(x100))), mode="edge")[: 4 * n]
    return x.reshape(n, 4).mean(1)


# ----------------------------------------------------------------------------- motion primitives


def _ou(rng: np.random.Generator, n: int, tau_s: float) -> np.ndarray:
    """Unit-std Ornstein-Uhlenbeck noise with time constant ``tau_s`` (after a light smoothing)."""
    a = np.exp(-1.0 / (max(tau_s, 0.1) * FPS))
    w = rng.standard_normal(n + 100)
    y = np.empty_like(w)
    y[0] = w[0]
    for i in range(1, len(w)):
        y[i] = a * y[i - 1] + np.sqrt(1 - a * a) * w[i]
    y = gaussian_filter1d(y[100:], 1.5)
    return (y - y.mean()) / (y.std() + 1e-12)


def _nod(n: int, t0: float, amp: float, freq: float, decay: float) -> np.ndarray:
    """A damped nod starting at ``t0`` s: down first, then a smaller rebound."""
    t = np.arange(n) / FPS - t0
    out = np.zeros(n)
    on = t >= 0
    out[on] = amp * np.sin(2 * np.pi * freq * t[on]) * np.exp(-t[on] / decay) * np.minimum(t[on] * 8, 1)
    return out


def _unit(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    ref = x[mask] if mask is not None and mask.sum() > 10 else x
    return (x - ref.mean()) / (ref.std() + 1e-9)


def _pauses(db25: np.ndarray, act: np.ndarray, min_s: float = 0.25) -> list[float]:
    """Start times (s) of low-level runs >= ``min_s`` inside a speaker's active frames."""
    if act.sum() < 10:
        return []
    thr = np.percentile(db25[act], 30)
    low = act & (db25 < thr - 3)
    out, i, n = [], 0, len(low)
    while i < n:
        if low[i]:
            j = i
            while j < n and low[j]:
                j += 1
            if (j - i) / FPS >= min_s:
                out.append(i / FPS)
            i = j
        else:
            i += 1
    return out


# ----------------------------------------------------------------------------- teacher


def _speaker_motion(
    me: int,
    feats: list[dict],
    acts100: np.ndarray,
    act25: np.ndarray,
    segs: list[tuple[int, float, float, str]],
    n: int,
    st: dict,
    rng: np.random.Generator,
) -> np.ndarray:
    other = 1 - me
    own_bc = np.zeros(n, bool)
    for spk, a, b, kind in segs:
        if spk == me and kind == "backchannel":
            own_bc[int(a * FPS) : int(np.ceil(b * FPS))] = True

    # ---------------- jaw + mouth
    jx = st["jaw_x"]
    rest = jx["all"]["p5"]
    span = jx["talk"]["p95"] - jx["talk"]["p5"]
    op100 = openness(feats[me], acts100[:, me])
    op = _to_fps(op100, n)
    op = np.where(own_bc, 0.6 * op, op)
    jaw = np.zeros((n, 3))
    jaw_mean = np.asarray(st["jaw_mean"])
    jaw_std = np.asarray(st["jaw_std"])
    jaw[:, 0] = rest + span * op + 0.02 * span * _ou(rng, n, 0.8)
    for k in (1, 2):  # small lateral/twist jaw motion, partly following the opening
        jaw[:, k] = jaw_mean[k] + 0.3 * jaw_std[k] * (_unit(op) * 0.5 + _ou(rng, n, 0.6))
    jaw[:, 0] = np.clip(jaw[:, 0], rest - 0.1 * span, jx["talk"]["p95"] + 0.1 * span)

    mouth = st["mouth"]
    slope, basis, bstd = np.asarray(mouth["slope"]), np.asarray(mouth["basis"]), np.asarray(mouth["basis_std"])
    talk_w = gaussian_filter1d(act25[:, me].astype(float), 2.0)
    # mouth shape coefficients: new random value per ~syllable (200 ms), smoothed, gated by talking
    hold = np.repeat(rng.standard_normal((n // 5 + 2, len(bstd))), 5, axis=0)[:n]
    coef = gaussian_filter1d(hold, 1.5, axis=0) * 0.6 * bstd * (talk_w * (0.3 + op))[:, None]
    exp_mean, exp_std = np.asarray(st["exp_mean"]), np.asarray(st["exp_std"])
    exp_listen = np.asarray(st["exp_std_listen"])
    slow = np.stack([_ou(rng, n, 1.5) for _ in range(50)], 1) * 0.35 * exp_listen
    exp = exp_mean + np.outer(jaw[:, 0] - (rest + 0.3 * span), slope) + coef @ basis + slow
    exp = np.clip(exp, exp_mean - 3 * exp_std, exp_mean + 3 * exp_std)

    # ---------------- head
    hd = st["head"]
    acf = np.asarray(hd["acf_s"])
    talk = act25[:, me] & ~own_bc
    # talking: drift + pitch-following + emphasis nods
    f0 = _to_fps(feats[me]["f0"], n)
    voiced = f0 > 0
    semis = np.zeros(n)
    if voiced.sum() > 10:
        semis[voiced] = 12 * np.log2(f0[voiced] / np.median(f0[voiced]))
    pitch = gaussian_filter1d(np.clip(semis, -6, 6), 3.0)
    env = gaussian_filter1d(op, 4.0)
    rise = np.diff(env, prepend=env[0])
    talk_head = np.stack([_ou(rng, n, acf[k]) for k in range(3)], 1)
    nods_t = np.zeros(n)
    amp_t = hd["talk"]["nod_amp"]
    last = -1.0
    for i in np.flatnonzero((rise > np.percentile(rise[talk], 90) if talk.sum() > 10 else rise > 1) & talk):
        if i / FPS - last > 0.8 and rng.random() < 0.5:
            nods_t += _nod(n, i / FPS, amp_t * rng.uniform(0.4, 0.9), rng.uniform(1.5, 2.5), 0.3)
            last = i / FPS
    std_t = np.asarray(hd["talk"]["std"])
    talk_head[:, 0] = std_t[0] * (0.75 * talk_head[:, 0] + 0.35 * _unit(pitch, talk)) + nods_t
    talk_head[:, 1:] *= std_t[1:]
    talk_head[:, 2] += 0.2 * std_t[2] * _unit(pitch, talk)

    # listening: sway + tilt steps + nods at the partner's phrase ends / pauses + own backchannels
    std_l = np.asarray(hd["listen"]["std"])
    amp_l = hd["listen"]["nod_amp"]
    listen_head = np.stack([_ou(rng, n, max(acf[k], 1.5)) for k in range(3)], 1) * 0.8
    cues = [(b, 0.7) for spk, a, b, kind in segs if spk == other and kind != "backchannel"]
    cues += [(t, 0.35) for t in _pauses(_to_fps(feats[other]["db"], n), act25[:, other])]
    cues += [(a, 1.0) for spk, a, b, kind in segs if spk == me and kind == "backchannel"]
    nods_l = np.zeros(n)
    tilt = np.zeros((n, 2))
    for t0, p in sorted(cues):
        if rng.random() < p:
            nods_l += _nod(n, t0 + rng.uniform(0.05, 0.35), amp_l * rng.uniform(0.6, 1.2), rng.uniform(1.2, 2.2), 0.45)
            if rng.random() < 0.4:  # occasional small tilt / turn change, held
                i = min(int(t0 * FPS), n - 1)
                tilt[i:] += rng.normal(0, 0.5, 2)
    tilt = gaussian_filter1d(tilt, 8.0, axis=0)
    listen_head[:, 1:] += 0.6 * (tilt - tilt.mean(0)) / (tilt.std(0) + 1e-9) * (np.abs(tilt).max() > 0)
    listen_head *= std_l / (listen_head.std(0) + 1e-9)
    listen_head[:, 0] += nods_l

    w = gaussian_filter1d(talk.astype(float), 6.0)[:, None]  # ~0.25-s cross-fade
    neck_mean, neck_std = np.asarray(st["neck_mean"]), np.asarray(st["neck_std"])
    neck = neck_mean + w * talk_head + (1 - w) * listen_head
    neck = np.clip(neck, neck_mean - 3.5 * neck_std, neck_mean + 3.5 * neck_std)
    return np.concatenate([exp, jaw, neck], axis=1).astype(np.float32)


def teach(
    tracks: Sequence[np.ndarray], timeline: Sequence, seed: int, calib: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """FLAME-56 motion (T, 56) for speaker 1 and speaker 2 of a dialogue: ``tracks`` are the two
    16-kHz mono tracks, ``timeline`` the segments (Segment, tuple or JSON dict). T = frames at 25 fps."""
    st = _stats(calib if calib is not None else load_calibration())
    length = max(len(tracks[0]), len(tracks[1]))
    n = max(round(length / RATE * FPS), 1)
    n100 = 4 * n
    segs = [_seg(s) for s in timeline]
    centres100 = (np.arange(n100) + 0.5) / 100
    centres25 = (np.arange(n) + 0.5) / FPS
    acts100 = np.zeros((n100, 2), bool)
    act25 = np.zeros((n, 2), bool)
    for spk, a, b, _ in segs:
        acts100[:, spk] |= (centres100 >= a) & (centres100 < b)
        act25[:, spk] |= (centres25 >= a) & (centres25 < b)
    feats = [analyse(np.pad(np.asarray(t, np.float64), (0, length - len(t))), n100) for t in tracks]
    rngs = [np.random.default_rng([int(seed), spk, 7]) for spk in (0, 1)]
    out = tuple(_speaker_motion(me, feats, acts100, act25, segs, n, st, rngs[me]) for me in (0, 1))
    return out[0], out[1]
