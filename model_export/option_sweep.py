"""Choose a bundle's recommended sampling options by measurement: run the behaviour benchmark for
every combination of the given option values and rank them by the goals they miss.

    python -m model_export.option_sweep --bundle DIR --grid num_iter=1,4 mask_history_agent=true,false \\
        temperature=0.8,1.0 [--cases librispeech pure calibration] [--seeds 0 1 2] [--json sweep.json]

Ranking: fewest failed (case, goal) verdicts, then the smallest summed shortfall (each failed value's
distance to its goal, divided by the goal's bound), then the widest worst margin (how far the measure
closest to failing sits inside its goal, relative to the bound: the safest of combinations that tie).
The best combination is printed as the
``--recommend`` flags of ``python -m model_export export`` (what it differs in from the defaults).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from . import behaviour
from . import behaviour_measures as bm


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["num_iter=1,4", "mask_history_agent=true,false"]`` -> values checked by the settings table."""
    from timar_blender.engine.settings import OPTIONS

    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or name not in OPTIONS:
            raise SystemExit(f"--grid {item!r}: expected OPTION=V1,V2,... with OPTION one of {sorted(OPTIONS)}")
        opt = OPTIONS[name]
        grid[name] = [opt.check(_literal(v), "--grid", name) for v in values.split(",")]
    return grid


def _literal(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def shortfall(key: str, value: float | None) -> float:
    """How far a failed value is from its goal, relative to the goal's bound (0 when it passes)."""
    g = bm.GOALS[key]
    if value is None or g.passes(value):
        return 0.0
    if g.low is not None and value < g.low:
        return (g.low - value) / max(abs(g.low), 1e-9)
    return (value - g.high) / max(abs(g.high), 1e-9)


def worst_margin(summary: dict) -> float:
    """Over every measure's range across the cases: the smallest distance inside its goal, relative
    to the bound (negative when a case fails)."""
    margins = []
    for key, r in summary.items():
        g = bm.GOALS.get(key)
        if g is None or not isinstance(r, dict) or r.get("min") is None:
            continue
        if g.low is not None:
            margins.append((r["min"] - g.low) / max(abs(g.low), 1e-9))
        if g.high is not None:
            margins.append((g.high - r["max"]) / max(abs(g.high), 1e-9))
    return min(margins, default=0.0)


def score(entry: dict) -> tuple[int, float, list[str]]:
    """(failed verdicts, summed shortfall, "case: key value" of each failure) of one source entry."""
    fails, total, where = 0, 0.0, []
    for case, r in entry["cases"].items():
        for key, ok in r["verdicts"].items():
            if ok is False:
                fails += 1
                v = r["values"][key]
                total += shortfall(key, v)
                where.append(f"{case}: {key} {v:.3g}")
    return fails, total, where


def sweep(bundle: str, grid: dict[str, list[Any]], cases: list, seeds: list[int], threads: int = 0,
          log=print) -> list[dict]:
    from timar_blender.engine import settings

    rows = []
    names = list(grid)
    for combo in itertools.product(*(grid[n] for n in names)):
        values = dict(zip(names, combo))
        src = behaviour.BundleSource(bundle, threads=threads, name=" ".join(f"{k}={v}" for k, v in values.items()))
        src.settings = settings.resolve(values, settings.read_recommended(Path(src.folder)) if src.folder else {})
        report = behaviour.run_benchmark([src], cases, seeds)
        entry = report["sources"][src.name]
        fails, total, where = score(entry)
        margin = worst_margin(entry["summary"])
        row = {"options": values, "fails": fails, "shortfall": round(total, 4), "worst_margin": round(margin, 4),
               "failures": where, "summary": entry["summary"], "turn_latency_ms": entry.get("turn_latency_ms")}
        rows.append(row)
        log(f"{src.name}: {fails} failed, shortfall {total:.3f}, worst margin {margin:.3f}  {'; '.join(where[:6])}")
    rows.sort(key=lambda r: (r["fails"], r["shortfall"], -r["worst_margin"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.option_sweep", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="", help="model bundle folder (default: the bundled model)")
    p.add_argument("--grid", nargs="+", required=True, help="OPTION=V1,V2,... (settings names)")
    p.add_argument("--cases", nargs="+", choices=behaviour.CASE_GROUPS, default=["librispeech", "pure", "calibration"],
                   help="validation cases; 'calibration' is the DualTalk clip teacher v2 is calibrated on "
                        "(real recorded audio that is not held out)")
    p.add_argument("--dialogues", type=int, nargs="+", default=[10, 11, 12, 13],
                   help="validation: held-out LibriSpeech dialogue seeds other than the reported ones (0, 1)")
    p.add_argument("--pure-seed", type=int, default=5, help="seed of the pure talking / listening cases")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    grid = parse_grid(args.grid)
    groups = [g for g in args.cases if g != "pure"]
    cases = behaviour.default_cases(dialogues=args.dialogues, seconds=args.seconds, groups=groups) if groups else []
    if "pure" in args.cases:
        cases += [behaviour.one_sided_case(k, args.pure_seed, args.seconds) for k in ("talking", "listening")]
    rows = sweep(args.bundle, grid, cases, args.seeds, args.threads)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    best = rows[0]
    flags = " ".join(f"--recommend {k}={str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in best["options"].items())
    print(f"best: {best['options']} ({best['fails']} failed verdicts)\n{flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
