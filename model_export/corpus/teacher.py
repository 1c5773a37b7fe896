"""The corpus teacher (v2): FLAME-56 motion for both speakers of a two-person dialogue, the motion the
bundled model learns to imitate.

``teach(tracks, timeline, seed, calib)`` -> two (T, 56) arrays at 25 fps (``exp[0:50] | jaw[50:53] |
neck[53:56]``); ``tracks`` are the clean speech tracks (16 kHz), ``timeline`` the true segments
(speaker, start, end, kind[, text]); ``calib`` is the calibration JSON written by ``calibrate.py``
(whose clip-averaged ``stats`` are used) or one fold's stats dict. Deterministic per seed.

Talking, from phonemes: pocketsphinx phones (``phones.py``) of the speaker's clean speech inside
their own segments -> mouth classes -> a jaw-opening target and a mouth-shape (exp offset) per class,
calibrated on the real jaw reference clip aligned the same way (``calib["phones"]``, shrunk towards
phonetic priors where the clip has few frames of a class). Coarticulation is a dominance-weighted
Gaussian blend of the targets (closures and silences dominate their neighbours, as lips must meet),
and the opening is scaled by the segment's loudness so the jaw follows the level. Outside the
speaker's segments and on silence the mouth is closed at the calibrated rest: silence is decided by
the true timeline, never by an energy threshold (so room tone and bleed never open it).

Head, in a style drawn per speaker and seed across the real range (listening 1.2-3.7 deg, talking
1.9-5.6 deg std): while talking, slow drift plus pitch following the voice's F0 contour, small nods
on accented vowels and a settling nod at phrase ends; while not talking, slow sway plus nods
(14-24 per minute) timed at the partner's phrase ends, pauses and accents, and on the listener's own
backchannels. The two are cross-faded by the speaker's own activity. Blinks are not in FLAME-56.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter1d

from timar_blender.engine.contract import FPS, SPEECH_RATE

from . import phones as P

HOP = SPEECH_RATE // P.PHONE_FPS  # 10-ms analysis frames (the phone frames)
WIN = 400
CALIBRATION = Path(__file__).resolve().parent / "flame_calibration.json"
DEG = np.pi / 180

# mouth classes: jaw opening as a share of the calibrated talking span (priors, before calibration),
# and dominance in coarticulation (closures and silence win over their neighbours)
JAW_PRIOR = {"open": 0.75, "mid": 0.5, "round": 0.3, "bilabial": 0.0, "labiodental": 0.1,
             "sibilant": 0.1, "other": 0.15, "SIL": 0.0}
DOMINANCE = {"open": 1.0, "mid": 1.0, "round": 1.2, "bilabial": 3.0, "labiodental": 2.0,
             "sibilant": 2.0, "other": 1.5, "SIL": 2.0}
CLOSED = ("bilabial", "SIL")  # always fully closed, whatever the calibration says
SHRINK_FRAMES = 30.0  # a vowel class with this many calibration frames is half prior, half measured
VOWELS = ("open", "mid", "round")  # consonants are too short to measure: their frames show the vowels around
MIN_REFERENCE_R = 0.3  # a calibration clip whose jaw follows its audio less than this: priors only
TARGET_GAIN = 1.8  # targets overshoot so the blended jaw reaches the calibrated class means
COARTIC_SIGMA = 2.0  # 10-ms frames
LOUD_FLOOR, LOUD_EXP = 0.8, 1.0  # opening scale at the segment's quiet and loud frames
JAW_SIGMA = 0.8  # 25-fps frames: the jaw's inertia
OPEN_CAP = 1.1  # share of the talking span where the opening saturates
# extra lead of the mouth over the sound: the symmetric blend already starts each opening ahead of its
# vowel; the reference clip leads by 80-120 ms, but each 40-ms frame of lead costs ~0.08 of r(jaw, level)
LEAD_FRAMES = 0
EXP_DRIFT = 0.9  # slow expression drift, share of the real listening exp std
EXP_MOUTH = 0.5  # talking mouth-shape variation, share of the real residual components' std
LISTEN_DEG = (1.2, 3.7)
TALK_DEG = (1.9, 5.4)  # real 1.9-5.6; kept under the 6-degree ceiling with the take's variation
NODS_PER_MIN = (14.0, 24.0)


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
    """Per 10-ms frame of one track: level (dB) and F0 (Hz, 0 when unvoiced)."""
    x = np.asarray(x, np.float64)
    x = np.pad(x, (WIN // 2, n100 * HOP + WIN))
    idx = np.arange(n100)[:, None] * HOP + np.arange(WIN)[None, :]
    fr = x[idx] * np.hanning(WIN)
    spec = np.fft.rfft(fr, 1024, axis=1)
    pw = np.abs(spec) ** 2
    f = np.fft.rfftfreq(1024, 1 / SPEECH_RATE)
    tot = pw[:, f >= 80].sum(1) + 1e-12
    low = pw[:, (f >= 150) & (f < 1000)].sum(1) / tot
    db = 10 * np.log10(tot / (WIN * 2.56) + 1e-12)
    ac = np.fft.irfft(pw, axis=1)[:, : SPEECH_RATE // 70 + 1]
    lo_lag = SPEECH_RATE // 400
    lag = lo_lag + np.argmax(ac[:, lo_lag:], axis=1)
    strength = ac[np.arange(n100), lag] / (ac[:, 0] + 1e-12)
    f0 = np.where((strength > 0.45) & (low > 0.4), SPEECH_RATE / lag, 0.0)
    return {"db": db, "f0": f0}


def _to_fps(x100: np.ndarray, n: int) -> np.ndarray:
    """10-ms frames -> 25-fps frames (mean of 4)."""
    x = np.pad(x100, [(0, max(0, 4 * n - len(x100)))] + [(0, 0)] * (x100.ndim - 1), mode="edge")[: 4 * n]
    return x.reshape(n, 4, *x.shape[1:]).mean(1)


def _smooth_noise(rng: np.random.Generator, n: int, sigma_frames: float, dims: int = 1) -> np.ndarray:
    """Unit-std Gaussian-smoothed white noise (n, dims)."""
    pad = int(4 * sigma_frames) + 1
    y = gaussian_filter1d(rng.standard_normal((n + 2 * pad, dims)), sigma_frames, axis=0)[pad : pad + n]
    return (y - y.mean(0)) / (y.std(0) + 1e-12)


def _unit(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    ref = x[mask] if mask is not None and mask.sum() > 10 else x
    return (x - ref.mean(0)) / (ref.std(0) + 1e-9)


def _dip(n: int, t0: float, amp: float, dur: float) -> np.ndarray:
    """A smooth nod at ``t0`` s: pitch goes ``amp`` down and back within ``dur`` s (sin^2 shape)."""
    t = np.arange(n) / FPS - t0
    on = (t >= 0) & (t <= dur)
    out = np.zeros(n)
    out[on] = amp * np.sin(np.pi * t[on] / dur) ** 2
    return out


# ----------------------------------------------------------------------------- mouth


def mouth_tables(st: dict) -> dict:
    """Per-class jaw fraction of the span, exp offset, dominance; the rest jaw and exp; the span."""
    ph = st.get("phones")
    jx = st["jaw_x"]
    slope = np.asarray(st["mouth"]["slope"], np.float64)
    if ph is not None:
        rest, span = float(ph["jaw_rest"]), float(ph["jaw_talk_p95"]) - float(ph["jaw_rest"])
        rest_exp = np.asarray(ph["exp_rest"], np.float64)
        trusted = float(ph.get("r_jaw_level", 0.0)) >= MIN_REFERENCE_R
    else:
        rest, span = float(jx["all"]["p5"]), float(jx["talk"]["p95"] - jx["talk"]["p5"])
        rest_exp, trusted = np.asarray(st["exp_mean"], np.float64) - slope * (jx["talk"]["mean"] - rest), False
    span = max(span, 0.03)
    frac, exp_off = np.zeros(len(P.CLASSES)), np.zeros((len(P.CLASSES), 50))
    for k, name in enumerate(P.CLASSES):
        prior = JAW_PRIOR[name]
        prior_exp = slope * prior * span
        c = ph["classes"][name] if ph is not None else None
        n_k = float(c["frames"]) if (c is not None and trusted and c["jaw"] is not None) else 0.0
        n_k = n_k if name in VOWELS else 0.0
        w = n_k / (n_k + SHRINK_FRAMES)
        measured = (c["jaw"] - rest) / span if n_k else prior
        frac[k] = 0.0 if name in CLOSED else float(np.clip((1 - w) * prior + w * measured, 0.0, 1.0))
        measured_exp = np.asarray(c["exp"], np.float64) if n_k else prior_exp
        exp_off[k] = 0.0 if name == "SIL" else (1 - w) * prior_exp + w * measured_exp
    dom = np.array([DOMINANCE[c] for c in P.CLASSES])
    return {"frac": frac, "exp": exp_off, "dom": dom, "rest": rest, "span": span, "rest_exp": rest_exp}


def _segments_mask(segs, who: int, n: int, fps: float, kinds: tuple[str, ...] | None = None) -> np.ndarray:
    centres = (np.arange(n) + 0.5) / fps
    out = np.zeros(n, bool)
    for spk, a, b, kind in segs:
        if spk == who and (kinds is None or kind in kinds):
            out |= (centres >= a) & (centres < b)
    return out


def mouth(cls100: np.ndarray, db100: np.ndarray, inside100: np.ndarray, tab: dict, n: int):
    """Jaw opening (n,) in rad and the exp offset (n, 50) from the phone classes, the loudness and the
    speaker's own segments, at 25 fps."""
    ref = np.percentile(db100[inside100], 95) if inside100.sum() > 20 else np.percentile(db100, 99)
    loud = np.clip((gaussian_filter1d(db100, 2.0) - (ref - 30.0)) / 30.0, 0.0, 1.0)
    gain = TARGET_GAIN * (LOUD_FLOOR + (1 - LOUD_FLOOR) * loud**LOUD_EXP)
    dom = tab["dom"][cls100]
    tj = tab["frac"][cls100] * gain
    te = tab["exp"][cls100] * gain[:, None]

    def blend(x: np.ndarray) -> np.ndarray:
        return gaussian_filter1d(x * (dom if x.ndim == 1 else dom[:, None]), COARTIC_SIGMA, axis=0)

    den = gaussian_filter1d(dom, COARTIC_SIGMA) + 1e-9
    open100 = blend(tj) / den
    exp100 = blend(te) / den[:, None]
    gate = gaussian_filter1d(binary_dilation(inside100, iterations=3).astype(float), 3.0)
    open100 *= gate
    exp100 *= gate[:, None]
    op = gaussian_filter1d(_to_fps(open100, n), JAW_SIGMA)
    op = np.roll(OPEN_CAP * np.tanh(op / OPEN_CAP), -LEAD_FRAMES)  # wide openings saturate
    ex = np.roll(_to_fps(exp100, n), -LEAD_FRAMES, axis=0)
    op[n - LEAD_FRAMES :], ex[n - LEAD_FRAMES :] = 0.0, 0.0
    return tab["rest"] + tab["span"] * op, ex


# ----------------------------------------------------------------------------- head


def _pause_times(phones: list, segs, who: int, min_s: float = 0.2) -> tuple[list[float], list[float]]:
    """The partner's phrase ends (ends of segments followed by >= ``min_s`` without them) and pauses
    (silences >= ``min_s`` inside their phone stream)."""
    mine = sorted((a, b) for spk, a, b, kind in segs if spk == who and kind != "backchannel")
    if not mine:
        return [], []
    ends = [b for (a, b), nxt in zip(mine, [*mine[1:], (1e9, 1e9)], strict=True) if nxt[0] - b >= min_s]
    pauses = [s for s, e, ph in phones if P.phone_class(ph) == P.SIL and e - s >= min_s]
    return ends, pauses


def _accents(phones: list, db100: np.ndarray, top: float = 0.35) -> list[float]:
    """Onsets of the loudest vowels (the accents) of a speaker's phone stream."""
    vowels = [(s, e) for s, e, ph in phones if P.CLASSES[P.phone_class(ph)] in ("open", "mid", "round")]
    if not vowels:
        return []
    f = P.PHONE_FPS
    lv = np.array([db100[int(s * f) : max(int(e * f), int(s * f) + 1)].max(initial=-200) for s, e in vowels])
    thr = np.quantile(lv, 1 - top)
    return [s for (s, _e), v in zip(vowels, lv, strict=True) if v >= thr]


def _pick(times: list[float], prob: float, rng: np.random.Generator) -> list[float]:
    return [t for t in times if rng.random() < prob]


def _spaced(cands: list[float], taken: list[float], gap: float) -> list[float]:
    out = sorted(taken)
    for t in cands:
        if all(abs(t - u) >= gap for u in out):
            out.append(t)
            out.sort()
    return out


def head(
    me: int, segs, phones: list[list], feats: list[dict], talk: np.ndarray, n: int, st: dict,
    rng: np.random.Generator,
) -> np.ndarray:
    """Neck rotation (n, 3) in rad: talking and listening motion cross-faded by ``talk`` (own speech)."""
    other = 1 - me
    seconds = n / FPS
    hd = st["head"]
    axis_w = np.asarray(hd["listen"]["std"], np.float64) * rng.uniform(0.7, 1.3, 3)
    axis_w /= axis_w.mean()
    u = rng.random()
    listen_deg = LISTEN_DEG[0] + (LISTEN_DEG[1] - LISTEN_DEG[0]) * np.clip(u + rng.normal(0, 0.15), 0, 1)
    talk_deg = TALK_DEG[0] + (TALK_DEG[1] - TALK_DEG[0]) * np.clip(u + rng.normal(0, 0.15), 0, 1)
    not_talk = ~talk

    # ---- talking: drift + F0 contour on pitch + accent nods + a settling nod at phrase ends
    t_head = _smooth_noise(rng, n, rng.uniform(12, 25), 3)
    f0 = _to_fps(feats[me]["f0"], n)
    voiced = f0 > 0
    if voiced.sum() > 10:
        semis = np.zeros(n)
        semis[voiced] = 12 * np.log2(f0[voiced] / np.median(f0[voiced]))
        contour = gaussian_filter1d(np.clip(semis, -6, 6) * talk, 4.0)
        t_head[:, 0] += rng.uniform(0.3, 0.7) * _unit(contour, talk)
    acc = _spaced(_pick(_accents(phones[me], feats[me]["db"]), rng.uniform(0.3, 0.6), rng), [], 0.8)
    ends, _ = _pause_times(phones[me], segs, me, 0.3)
    nods_t = np.zeros(n)
    for t0 in acc:
        nods_t += _dip(n, t0 - 0.05, rng.uniform(0.6, 1.2), rng.uniform(0.35, 0.55))
    for t0 in _pick(ends, 0.5, rng):
        nods_t += _dip(n, t0 - 0.3, rng.uniform(0.8, 1.5), rng.uniform(0.5, 0.8))
    t_head[:, 0] += nods_t
    t_head = _unit(t_head, talk) * (talk_deg * axis_w)

    # ---- listening / not talking: sway + nods at the partner's phrase ends, pauses, accents, own backchannels
    sway = _smooth_noise(rng, n, rng.uniform(25, 45), 3)
    p_ends, p_pauses = _pause_times(phones[other], segs, other)
    own_bc = [a for spk, a, b, kind in segs if spk == me and kind == "backchannel"]
    rate = rng.uniform(*NODS_PER_MIN)
    want = round(float(rate * not_talk.sum() / FPS / 60))
    gap = rng.uniform(1.1, 1.5)

    def free(t: float) -> bool:
        i = int(t * FPS)
        return 0 <= i < n and not_talk[i] and not_talk[min(i + 10, n - 1)]

    cues = _spaced(own_bc, [], 0.6)
    cues = _spaced([t + rng.uniform(0.1, 0.35) for t in _pick(p_ends, 0.85, rng)], cues, gap)
    cues = _spaced([t + rng.uniform(0.05, 0.3) for t in _pick(p_pauses, 0.6, rng)], cues, gap)
    cues = [t for t in cues if free(t) or t in own_bc]
    if len(cues) < want:
        extra = [t + rng.uniform(0.0, 0.2) for t in _accents(phones[other], feats[other]["db"], 0.5)]
        extra = [t for t in rng.permutation(extra).tolist() if free(t)]
        cues = _spaced(extra[: max(0, 2 * (want - len(cues)))], cues, gap)[: max(want, len(cues))]
    if len(cues) < want:  # nobody speaks: nods of one's own thoughts, at random free moments
        spare = [t for t in np.sort(rng.uniform(0, seconds, 4 * want)).tolist() if free(t)]
        cues = _spaced(spare, cues, gap + 0.5)
    amp_deg = listen_deg * rng.uniform(0.9, 1.4)
    nods_l = np.zeros(n)
    for t0 in cues:
        a = max(1.6, amp_deg * rng.uniform(0.7, 1.2))
        d = rng.uniform(0.45, 0.8)
        nods_l += _dip(n, t0, a, d)
        if rng.random() < 0.3:  # a double nod
            nods_l += _dip(n, t0 + d, 0.7 * a, d * 0.9)
    target = listen_deg * axis_w
    ref = not_talk if not_talk.sum() > 10 else np.ones(n, bool)
    nod_sd = nods_l[ref].std()
    sway_sd = np.sqrt(np.maximum(target**2 - np.array([nod_sd**2, 0.0, 0.0]), (0.35 * target) ** 2))
    l_head = _unit(sway, ref) * sway_sd
    l_head[:, 0] += nods_l - nods_l[ref].mean()

    w = gaussian_filter1d(talk.astype(float), 5.0)[:, None]
    return gaussian_filter1d(w * t_head + (1 - w) * l_head, 1.0, axis=0) * DEG


# ----------------------------------------------------------------------------- teacher


def _speaker_motion(
    me: int, segs, phones, feats, n: int, st: dict, tab: dict, rng: np.random.Generator
) -> np.ndarray:
    n100 = 4 * n
    inside100 = _segments_mask(segs, me, n100, P.PHONE_FPS)
    cls = P.class_track(phones[me], n100)
    cls[~inside100] = P.SIL
    jaw_x, exp_off = mouth(cls, feats[me]["db"], inside100, tab, n)

    jaw = np.zeros((n, 3))
    jaw_mean, jaw_std = np.asarray(st["jaw_mean"]), np.asarray(st["jaw_std"])
    jaw[:, 0] = jaw_x
    op = (jaw_x - tab["rest"]) / tab["span"]
    for k in (1, 2):  # small lateral / twist motion, partly following the opening
        jaw[:, k] = jaw_mean[k] + 0.2 * jaw_std[k] * (0.5 * _unit(op) + _smooth_noise(rng, n, 8.0)[:, 0])

    exp_mean, exp_std = np.asarray(st["exp_mean"]), np.asarray(st["exp_std"])
    # the face is never still: slow expression drift (brows, cheeks, smile) at the real listening spread,
    # and while talking mouth-shape variation along the real clip's principal residual shapes
    slow = _smooth_noise(rng, n, rng.uniform(10, 25), 50) * EXP_DRIFT * np.asarray(st["exp_std_listen"])
    mouth_pc = st["mouth"]
    basis, bstd = np.asarray(mouth_pc["basis"]), np.asarray(mouth_pc["basis_std"])
    talk_w = gaussian_filter1d(_segments_mask(segs, me, n, FPS).astype(float), 2.0)
    shapes = _smooth_noise(rng, n, 2.5, len(bstd)) * (EXP_MOUTH * bstd * talk_w[:, None])
    exp = tab["rest_exp"] + exp_off + slow + shapes @ basis
    exp = np.clip(exp, exp_mean - 3 * exp_std, exp_mean + 3 * exp_std)

    talk = _segments_mask(segs, me, n, FPS, ("turn", "quick", "overlap"))
    neck = np.asarray(st["neck_mean"]) + head(me, segs, phones, feats, talk, n, st, rng)
    return np.concatenate([exp, jaw, neck], axis=1).astype(np.float32)


_PHONE_CACHE: dict[bytes, list] = {}


def _phones(x: np.ndarray, spans: list[tuple[float, float]]) -> list:
    """``phones.recognise`` remembered for the last few tracks: takes of several seeds decode once."""
    key = hashlib.blake2b(x.tobytes() + np.asarray(spans, np.float64).tobytes(), digest_size=16).digest()
    if key not in _PHONE_CACHE:
        if len(_PHONE_CACHE) >= 8:
            _PHONE_CACHE.pop(next(iter(_PHONE_CACHE)))
        _PHONE_CACHE[key] = P.recognise(x, spans)
    return list(_PHONE_CACHE[key])


def teach(
    tracks: Sequence[np.ndarray], timeline: Sequence, seed: int, calib: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """FLAME-56 motion (T, 56) for speaker 1 and speaker 2 of a dialogue: ``tracks`` are the two
    16-kHz mono clean tracks, ``timeline`` the segments (Segment, tuple or JSON dict). T = frames at
    25 fps."""
    st = _stats(calib if calib is not None else load_calibration())
    tab = mouth_tables(st)
    length = max(len(tracks[0]), len(tracks[1]))
    n = max(round(length / SPEECH_RATE * FPS), 1)
    segs = [_seg(s) for s in timeline]
    padded = [np.pad(np.asarray(t, np.float32), (0, length - len(t))) for t in tracks]
    feats = [analyse(x, 4 * n) for x in padded]
    phones = [_phones(x, [(a, b) for spk, a, b, _ in segs if spk == k]) for k, x in enumerate(padded)]
    rngs = [np.random.default_rng([int(seed), spk, 11]) for spk in (0, 1)]
    out = [_speaker_motion(me, segs, phones, feats, n, st, tab, rngs[me]) for me in (0, 1)]
    return out[0], out[1]
