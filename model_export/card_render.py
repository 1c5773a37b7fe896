"""MODEL_CARD.md rendered from MODEL_CARD.json alone: every figure in the text comes from the JSON
that ``python -m model_export.model_card`` measured (nothing typed in as if measured), so the card
can be re-rendered, reviewed and diffed without re-running the evaluation.

    python -m model_export.card_render MODEL_CARD.json --out MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import metrics

COLUMNS = [(m, g) for m in ("fd", "mse", "sid") for g in ("exp", "jaw", "pose")]
LABEL = {"fd": "FD", "mse": "MSE", "sid": "SID"}
WEAK_JAW_R = 0.2  # a recording whose FLAME jaw follows its speech less than this is named as a weak teacher


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def metric_table(rows: dict[str, dict[str, float]]) -> str:
    heads = [f"{LABEL[m]} {g.upper()} ×{metrics.SCALES[(m, g)]:g}" for m, g in COLUMNS]
    lines = ["| | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for label, raw in rows.items():
        s = metrics.scaled(raw)
        lines.append(f"| {label} | " + " | ".join(fmt(s[f"{m}_{g}"]) for m, g in COLUMNS) + " |")
    return "\n".join(lines)


def beats(rows: dict[str, dict[str, float]], model_row: str) -> list[str]:
    """Which of FD/MSE for JAW/POSE the model wins against each trivial baseline."""
    out = []
    for base in ("Neutral pose", "Training mean"):
        if base not in rows:
            continue
        for m in ("fd", "mse"):
            for g in ("jaw", "pose"):
                k = f"{m}_{g}"
                mv, bv = rows[model_row][k], rows[base][k]
                ok = mv < bv
                out.append(f"{'✓' if ok else '✗'} {LABEL[m]} {g.upper()} vs {base.lower()} ({mv:.3g} vs {bv:.3g})")
    return out


def _what_it_is(c: dict, beh: dict) -> str:
    model, lat = c["model"], beh.get("latency_ms") or {}
    cores = c.get("cpu_count")
    on = f"{cores} CPU cores" if cores else "this machine's CPU"
    n = (c.get("options") or {}).get("context_turns", 7)
    speed = (
        f"{lat['median']:.1f} ms per 1-s turn at n = {n} in the engine (p95 {lat['p95']:.1f} ms over "
        f"{lat['turns']} turns, {on}, measured in this card's behaviour benchmark run). "
        if lat
        else ""
    )
    return (
        f"A small TIMAR (turn-level interleaved masked autoregression, arXiv 2512.15340): width {model['width']}, "
        f"depth {model['depth']}, {model['parameters'] / 1e6:.2f} M parameters, {model.get('speech_encoder', 'its')} "
        f"speech encoder, context up to {model['max_context_turns'] - 1} past turns, bundle {c['bundle_mb']:.1f} MB "
        f"({c['precision']}), {speed}"
        "It is the paper's architecture and code path at CPU size, trained on this project's own corpus. "
        f"It makes the agent's FLAME-56 motion (50 expression coefficients, jaw and neck rotation) at "
        f"{c.get('fps', 25):g} fps from both people's speech.\n"
    )


def _options(c: dict) -> str:
    opts = c.get("options") or {}
    if not opts:
        return ""
    return (
        "**Default options** (the settings' defaults under the bundle's recommended options: what Generate, "
        "headless and live mode use when nothing is changed; every figure below uses them): "
        + ", ".join(f"{k} = {v}" for k, v in opts.items())
        + ".\n"
    )


def _corpus_sources(src: dict) -> str:
    parts = []
    ls = src.get("librispeech")
    if isinstance(ls, dict):
        parts.append(f"{ls.get('speakers', '?')} real LibriSpeech speakers ({ls.get('split', 'train-clean-100')})")
    tts = src.get("tts_voices")
    if isinstance(tts, dict):
        parts.append(f"{tts.get('count', '?')} TTS voices ({tts.get('engines', 'espeak-ng, flite')})")
    if "tts_share" in src:
        parts.append(f"TTS share of the turns {src['tts_share']:g}")
    if src.get("acoustics"):
        parts.append(f"recorded as {src['acoustics']}")
    return "; ".join(parts)


def _training(c: dict) -> list[str]:
    out = []
    data, ship = c.get("training_data") or {}, c["shipped_clip"]
    src = data.get("sources") or {}
    voices = (
        "real LibriSpeech voices and TTS voices (espeak-ng, flite)"
        if isinstance(src.get("librispeech"), dict)
        else "TTS voices (espeak-ng, flite)"
    )
    calibrated = data.get("calibration") or ship
    on = (
        f"one real DualTalk clip (`{ship}`), plus that clip's conversation audio where listed below"
        if calibrated == ship
        else f"`{calibrated}` of the real DualTalk clips"
    )
    out.append(
        "**Provenance.** Trained here from random weights (no third-party weights; "
        "`scripts/train_bundle.sh` gives the stages) on a two-person corpus built by "
        f"`python -m model_export.corpus.build`: dialogues of {voices} with FLAME motion from a rule-based "
        f"teacher calibrated on {on}. No DualTalk motion is used as a training target. "
        f"Checkpoint SHA-256 `{c.get('checkpoint_sha256', '')[:16]}…`.\n"
    )
    if data:
        made = _corpus_sources(src)
        several = f" ({data['corpora']} built with seeds {data.get('seed')})" if data.get("corpora") else ""
        out.append(
            f"Training corpus{several}: "
            f"{data.get('dialogues')} dialogues, {data.get('hours', 0):.2f} h, "
            f"{len(data.get('voices', []))} voices; time shares agent-only {data.get('agent_only', 0):.2f}, "
            f"user-only {data.get('user_only', 0):.2f}, both {data.get('both', 0):.2f}, silence "
            f"{data.get('silence', 0):.2f}; real conversations: {', '.join(data.get('real_dialogues', [])) or 'none'}; "
            f"teacher calibration: `{data.get('calibration')}`."
            + (f" Make-up: {made}." if made else "")
            + "\n"
        )
    ts = c.get("train") or {}
    if ts:
        before = ts.get("fixed_loss_before")
        start = f" ({fmt(before, 3)} at its start)" if before is not None else ""
        out.append(
            f"Last training run: {ts.get('steps')} steps; diffusion loss on a fixed draw of training windows "
            f"{fmt(ts.get('fixed_loss_after'), 3)} at the end{start}.\n"
        )
    return out


def _reading_real_rows(c: dict) -> str:
    parts = []
    spread = c.get("head_orientation_spread_deg")
    if spread is not None and math.isfinite(spread):
        parts.append(
            "Reading the real-clip rows: POSE is the head's absolute orientation, which depends on where each "
            "recorded person sat relative to the camera (the clips' mean head rotation differs by up to "
            f"{spread:.0f}°). A model calibrated on one clip keeps that clip's mean orientation, so on the other "
            "clip the neutral pose (0°) can be closer: losing POSE to the neutral baseline there measures the "
            "camera set-up, not motion."
        )
    for name, r in (c.get("real_jaw_speech_r") or {}).items():
        if r is not None and math.isfinite(r) and r < WEAK_JAW_R:
            parts.append(
                f"The `{name}` recording's FLAME jaw hardly follows its speaker's audio (r = {r:.2f} with the "
                "speech level), which makes a teacher calibrated on it a poor one and its jaw rows weak."
            )
    return " ".join(parts) + "\n" if parts else ""


def demote(markdown: str, levels: int) -> str:
    """``markdown`` with its title line dropped and every other heading ``levels`` deeper."""
    out = []
    for i, line in enumerate(markdown.splitlines()):
        if i == 0 and line.startswith("# "):
            continue
        out.append("#" * levels + line if line.startswith("#") else line)
    return "\n".join(out).strip("\n") + "\n"


def goals_verdict(bench: dict, source: str = "model") -> tuple[list[str], list[str]]:
    """(passed, failed) measure keys of ``source`` over every judged case."""
    summary = bench["sources"][source]["summary"]
    passed = [k for k, v in summary.items() if v.get("pass") is True]
    failed = [k for k, v in summary.items() if v.get("pass") is False]
    return passed, failed


def _not_held_out(card: dict) -> str:
    """A note on the benchmark cases from the conversation the shipped model's teacher was calibrated on."""
    conv = card["card"]["shipped_clip"].rsplit("_speaker", 1)[0]
    names = [n for n, c in card["benchmark"]["cases"].items() if (c.get("info") or {}).get("clip") == conv]
    if not names:
        return ""
    return (
        f" {', '.join(names)} is the conversation the shipped model's teacher was calibrated on (its audio may be "
        "in the training corpus): a reference, not a held-out case."
    )


def _benchmark(card: dict) -> list[str]:
    from .behaviour import markdown

    bench = card["benchmark"]
    passed, failed = goals_verdict(bench)
    out = [
        "Every measure of `../shared/docs/motion-behaviour.md` on held-out real material (never trained on), "
        "by `model_export.behaviour`: the shipped bundle run through the engine exactly as Generate runs it "
        "(**model**), the **energy baseline** (jaw from the speech level, head still: a model has to match it "
        "on the jaw and beat it on the head) and the **real person** rows (the DualTalk clips' tracked motion)"
        + ("; the **teacher** that made the training targets (on clean speech and the true timeline where the case "
           "has them) is the upper bound of what the model can learn" if "teacher" in bench["sources"] else "")
        + f". Seeds {', '.join(map(str, bench['seeds']))}."
        + _not_held_out(card)
        + "\n",
        f"**Verdict:** the model passes {len(passed)} and fails {len(failed)} of the judged goals"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + ".\n",
        demote(markdown(bench), 2),
    ]
    return out


def _long(beh: dict, c: dict) -> list[str]:
    lg = beh.get("long")
    if not lg:
        return []
    cores = c.get("cpu_count")
    out = [
        f"* **Long dialogues stay stable** — a {lg['audio_seconds'] / 60:.0f}-min synthetic dialogue "
        f"(`{lg['sequence']}`) generated in {lg['generation_seconds']:.1f} s"
        + (f" on {cores} CPU cores" if cores else "")
        + f" ({lg['audio_seconds'] / lg['generation_seconds']:.0f}× real time); all frames finite: {lg['finite']}; "
        f"range of the per-minute jaw mean = {lg['jaw_mean_range_over_std']:.2f} × the jaw's std; head std last/first "
        f"minute = {lg['neck_std_last_over_first']:.2f}.\n",
        "| minute | jaw mean | jaw std | head std (°) | mean abs exp | jaw–energy r |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in lg["minutes"]:
        out.append(
            f"| {r['minute']} | {r['jaw_mean']:.4f} | {r['jaw_std']:.4f} | {r['neck_std_deg']:.2f} | "
            f"{r['exp_abs_mean']:.3f} | {fmt(r['jaw_energy_r'])} |"
        )
    out.append("")
    return out


def _licences(c: dict) -> list[str]:
    lic = c.get("licences") or {}
    out = ["**Weights:** " + c["license"] + "\n"]
    src = lic.get("corpus_sources") or {}
    ls = lic.get("librispeech") or {}
    trained_on_ls = isinstance(src.get("librispeech"), dict)
    if ls:
        use = (
            "the training corpus uses real voices from its train-clean-100 subset and the behaviour benchmark "
            "its test-other subset (held out)"
            if trained_on_ls
            else "the behaviour benchmark uses its test-other subset (held out; not trained on)"
        )
        out.append(
            f"* **{ls.get('name', 'LibriSpeech')}** — {ls.get('copyright', '')}; licence {ls.get('license', '')}; "
            f"{ls.get('url', '')}"
            + (f" (redistributed via {ls['redistributed_via']})" if ls.get("redistributed_via") else "")
            + f": {use}."
        )
    tts = src.get("tts_voices") if isinstance(src.get("tts_voices"), dict) else {}
    out.append(
        f"* **TTS voices** — {tts.get('engines', 'espeak-ng (GPL-3.0), flite (BSD-like)')}: synthesised speech of the "
        "training corpus; the engines are build-time tools and are not shipped."
    )
    clips = lic.get("dualtalk_clips") or []
    out.append(
        "* **DualTalk demo clips** (Apache-2.0)"
        + (f" — {', '.join(f'`{x}`' for x in clips)}" if clips else "")
        + ": the teacher's calibration (one clip), the real conversations' audio where the corpus lists them, "
        "and the held-out real evaluation; their motion is never a training target."
    )
    out.append("")
    return out


def render(card: dict) -> str:
    """The Markdown card from the JSON ``model_card`` writes (its ``card`` section holds what the text
    needs besides the tables: bundle facts, training summary, machine, options, figures, licences)."""
    c, beh, folds = card["card"], card.get("behaviour", {}), card["folds"]
    L: list[str] = []
    add = L.append
    add("# Model card — the bundled TIMAR model (`" + c["name"] + "`)\n")
    add(
        "_Generated by `python -m model_export.model_card` (see `scripts/train_bundle.sh`) and rendered from "
        "`MODEL_CARD.json` by `python -m model_export.card_render`; every figure below was measured when the "
        "JSON was written. Do not edit by hand._\n"
    )
    add("## What it is\n")
    add(_what_it_is(c, beh))
    add(_options(c))
    add("**Licence of the weights:** " + c["license"] + " (third-party material: see Licences below)\n")
    L.extend(_training(c))
    add("## Intended use and limits\n")
    add(
        "* Use: a default that works offline out of the box for previews, blocking and games. For film quality, "
        "convert the authors' released TIMAR checkpoint (wav2vec2-large, trained on DualTalk) — see README."
    )
    add(
        "* It has learned the teacher's behaviour, not real people's: talking is jaw/mouth opening driven by the "
        "speech with generic mouth shapes, head motion follows prosody, listening is sway and nods at the "
        "partner's pauses. It will not reproduce a specific person's style, emotion or gaze; blinks are not in "
        "FLAME-56."
    )
    add("* Voices: trained on English speech; other languages are untested.\n")
    add("## Behaviour benchmark (held-out real material)\n")
    if "benchmark" in card:
        L.extend(_benchmark(card))
    L.extend(_long(beh, c))
    n_folds = len(folds)
    add(f"## Evaluation on held-out real clips ({n_folds} fold{'s' if n_folds != 1 else ''})\n")
    single = (
        "Only the shipped fold was trained for this model, so there is one held-out real conversation. "
        if n_folds == 1
        else ""
    )
    calibrated = (c.get("training_data") or {}).get("calibration")
    if calibrated and calibrated != c["shipped_clip"]:
        single += (
            f"**Caveat:** the shipped model's training corpus calibrated its teacher on `{calibrated}`, not on "
            f"`{c['shipped_clip']}` alone, so the held-out clip informed the teacher's amplitudes and rhythms: its "
            "rows are held out from training targets, not from calibration. "
        )
    add(
        "The teacher is calibrated on real DualTalk clips, so each fold calibrates on one real clip (and may train "
        "on that conversation's audio) and is evaluated on the other real conversation, which it never saw. "
        + single
        + "DualTalk protocol metrics with the bundle's default options (lower FD and MSE is better, higher SID is "
        "better; display scales in the header). Baselines: the FLAME neutral pose; the training-set mean frame "
        "repeated; the energy baseline; the teacher on the test audio (voice activity estimated from the audio). "
        "On synthetic data the ground truth *is* the teacher, so its row there uses another random seed: it "
        "shows the spread of equally good takes. A single real conversation per fold is a tiny test set: read the "
        "real-clip rows as a sanity check, not a benchmark.\n"
    )
    for i, (clip, f) in enumerate(folds.items()):
        shipped = " — **the shipped model**" if clip == c["shipped_clip"] else ""
        add(f"### Fold {i + 1}: calibrated on `{clip}`{shipped}\n")
        for set_name, s in f["sets"].items():
            what = "real DualTalk conversation(s), held out" if set_name == "real" else "held-out synthetic dialogues"
            add(
                f"**{what}** ({len(s['sequences'])} sequences: {', '.join(s['sequences'][:3])}"
                f"{', …' if len(s['sequences']) > 3 else ''})\n"
            )
            add(metric_table(s["table"]) + "\n")
            if set_name == "real" and "Model n = 7" in s["table"]:
                add("Model (n = 7) against the trivial baselines, jaw and pose: "
                    + "; ".join(beats(s["table"], "Model n = 7")) + "\n")
    add(_reading_real_rows(c))
    add("## Plots\n")
    add(
        "Jaw opening and head pitch / yaw / roll over time against who speaks (orange: the agent, blue: only the "
        "user): a held-out real-voice dialogue (model with its default options vs the energy baseline) and each "
        "held-out real DualTalk conversation (model n = 7, energy baseline and teacher against the real motion).\n"
    )
    for name, rel in (c.get("figures") or {}).items():
        add(f"![{name}]({rel})\n")
    add("## Licences\n")
    L.extend(_licences(c))
    add("## Reproduce\n")
    add(
        "`bash scripts/train_bundle.sh` (corpus, training, export, this card); needs `../shared/fixtures` "
        "(DualTalk clips, LibriSpeech). Raw figures: `MODEL_CARD.json`.\n"
    )
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.card_render", description=__doc__.split("\n")[0])
    p.add_argument("json", type=Path, help="MODEL_CARD.json written by model_export.model_card")
    p.add_argument("--out", type=Path, default=Path("MODEL_CARD.md"))
    args = p.parse_args(argv)
    try:
        card = json.loads(args.json.read_text())
        if "card" not in card:
            raise ValueError("no 'card' section (written by an older model_card; run it again)")
        text = render(card)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.json}: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
