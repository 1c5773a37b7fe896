"""Headless generation for pipelines, without timers or modal code.

    blender -b scene.blend --python-exit-code 1 --python timar_blender/headless.py -- \\
        --character Head --agent-audio agent.wav --user-audio user.wav --out take.blend --json summary.json
    python -m timar_blender.headless --blend scene.blend --character Head ...   # with the bpy module
    ... --batch dialogues.json                                                    # many dialogues
    ... --add-demo-head --export-gltf take.glb --export-csv take.csv              # ARKit demo head, exports

Options not given keep the scene's TIMAR settings (and, for the sampling options and smoothing a
model bundle recommends, the model's recommendation unless the scene set a value); every value is
checked against its documented range (``engine/settings.py``) and a bad one is refused, naming it.

A batch file is a JSON list of objects with the same keys as the options (``agent_audio``,
``user_audio``, ``out``, ``seed``, ``character``, ``export_gltf``, ...); an unknown key fails that
dialogue, naming it. Each entry starts from the same input scene. An export flag given on the
command line for a batch names one file per dialogue: ``{name}`` / ``{index}`` in the path are
replaced by the dialogue's name (its ``out`` or agent audio file stem) and number, otherwise
``_<index>_<name>`` is appended to the file stem. Progress lines go to stdout; the exit code is
non-zero if any dialogue failed; the JSON summary lists what was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by Blender's --python: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "timar_blender"

from .engine.settings import OPTIONS, SETTING_NAMES, SettingsError, check_values

EXPORTS = ("export_gltf", "export_fbx", "export_csv", "export_flame")
FLAG_NAMES = {"model_path": "--model"}  # settings whose flag is not --<name-with-dashes>
NOT_PER_DIALOGUE = ("blend", "batch", "json")


def flag(name: str) -> str:
    """The command-line spelling of a setting."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting (``engine.settings.OPTIONS``), None when not given."""
    for name in SETTING_NAMES:
        o = OPTIONS[name]
        default = "the scene's setting" + (", else the model's recommendation" if o.recommendable else "")
        limits = f" {o.range_text()}" if o.kind in (int, float) else ""
        kw = {"dest": name, "default": None, "help": f"{o.doc}{limits} (default: {default})"}
        if o.kind is bool:
            p.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kw)
        elif o.choices:
            p.add_argument(flag(name), choices=o.choices, **kw)
        elif name == "agent_channel":
            p.add_argument(flag(name), type=int, choices=(0, 1), **kw)
        else:
            p.add_argument(flag(name), type=o.kind, **kw)
    p.add_argument("--no-sound", dest="add_sound", action="store_false", default=None, help="= --no-add-sound")


def _timecode(text: str) -> str:
    from .engine.exports import parse_timecode

    try:
        parse_timecode(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="timar headless", description="Generate TIMAR motion without the UI")
    p.add_argument("--blend", type=Path, help="scene to open first (with `python -m`; Blender takes it as -b FILE)")
    p.add_argument("--create-test-rig", action="store_true", help="add the test rig and animate it")
    p.add_argument("--add-demo-head", action="store_true", help="add the ARKit demo head and animate it")
    _add_setting_flags(p)
    p.add_argument("--out", type=Path, help="save the result as this .blend (default: overwrite nothing)")
    p.add_argument("--export-gltf", help="write the animated character as glTF (.glb or .gltf)")
    p.add_argument("--export-fbx", help="write the animated character as FBX")
    p.add_argument("--export-csv", help="write the take as a Live Link Face CSV (ARKit-52 + head)")
    p.add_argument("--csv-timecode", default="00:00:00:00.000", type=_timecode,
                   help="the CSV's first timecode, HH:MM:SS:FF[.fff] at 60 fps (Live Link Face's)")
    p.add_argument("--export-flame", help="write the take's FLAME-56 motion (.npz or .json)")
    p.add_argument("--batch", type=Path, help="JSON list of dialogues (keys as the options above)")
    p.add_argument("--json", type=Path, help="write a summary of what was written")
    return p.parse_args(argv)


def _ensure_registered() -> None:
    import bpy

    if not hasattr(bpy.types.Scene, "timar"):
        from . import register

        register()


def dialogue_entry(raw: dict, settings: dict, per_dialogue: dict, where: str) -> dict:
    """One dialogue: its setting values (checked, over ``settings`` from the command line) under
    ``settings``, and its other keys (out, exports, ...) over ``per_dialogue``. SettingsError for a
    bad value or an unknown key, naming it and ``where``."""
    import difflib

    for key in raw:
        if key not in SETTING_NAMES and key not in per_dialogue:
            close = difflib.get_close_matches(key, [*SETTING_NAMES, *per_dialogue], n=1)
            raise SettingsError(key, "unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""), where)
    own = check_values({k: v for k, v in raw.items() if k in SETTING_NAMES}, where)
    return {**per_dialogue, **{k: v for k, v in raw.items() if k not in SETTING_NAMES}, "settings": {**settings, **own}}


def run_one(entry: dict, base_blend: str | None, where: str = "") -> dict:
    """One dialogue from a fresh copy of the input scene; returns its summary (or raises).

    ``entry["settings"]``: the checked setting values given for it (the rest come from the scene);
    the scene's TIMAR settings are left as they are, except the character a new test rig / demo
    head becomes (as with the panel's buttons)."""
    import bpy

    from .blender import generate
    from .blender.demo_head import build_demo_head
    from .blender.export import EXPORTERS
    from .blender.props import settings_of
    from .blender.rig import create_test_rig
    from .engine import job

    if base_blend:
        bpy.ops.wm.open_mainfile(filepath=base_blend)
    elif entry.get("fresh_scene") and (entry.get("create_test_rig") or entry.get("add_demo_head")):
        # no scene was given: the new character alone (no default cube, camera, light), seen by its own camera
        bpy.ops.wm.read_homefile(use_empty=True)
    _ensure_registered()
    scene = bpy.context.scene
    values = dict(entry.get("settings", {}))
    for key, build in (("create_test_rig", create_test_rig), ("add_demo_head", build_demo_head)):
        if entry.get(key):
            scene.timar.character = build(bpy.context)
            values.setdefault("character", scene.timar.character.name)
    settings = settings_of(scene, values, where)
    if "agent_channel" in values and not settings.stereo:
        name = flag("agent_channel") if where == "command line" else "agent_channel"
        raise SettingsError(name, "applies only to one stereo file holding both voices (stereo is off)", where)
    req, info = generate.build_request(scene, settings)
    character = info["object"]
    t0 = time.time()

    def progress(frac: float, text: str) -> None:
        print(f"TIMAR {frac * 100:5.1f}% {text}", flush=True)

    result = job.run(req, progress=progress)
    summary = generate.write_result(bpy.context, settings, req, info, result)
    generate.show_summary(scene.timar, result, summary)
    summary["generation_seconds"] = round(time.time() - t0, 3)
    summary["exports"] = {}
    for key in EXPORTS:
        if entry.get(key):
            target = Path(entry[key]).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            kind = key.removeprefix("export_")
            options = {"start_timecode": entry.get("csv_timecode") or "00:00:00:00.000"} if kind == "csv" else {}
            summary["exports"][kind] = EXPORTERS[kind](bpy.context, character, str(target), **options)
    out = entry.get("out")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(out).resolve()), copy=False)
        summary["saved"] = str(Path(out).resolve())
    return summary


def _batch_exports(defaults: dict, entry: dict, index: int) -> dict:
    """Per-dialogue file names for export flags given once for a whole batch."""
    name = Path(str(entry.get("out") or entry.get("agent_audio") or "dialogue")).stem
    out = {}
    for key in EXPORTS:
        pattern = defaults.get(key)
        if pattern and not entry.get(key):
            if "{name}" in pattern or "{index}" in pattern:
                out[key] = pattern.format(name=name, index=index + 1)
            else:
                p = Path(pattern)
                out[key] = str(p.with_name(f"{p.stem}_{index + 1:03d}_{name}{p.suffix}"))
    return out


def check_export_patterns(defaults: dict) -> None:
    """Export name patterns hold only ``{name}``/``{index}`` in braces; SettingsError names the flag."""
    for key in EXPORTS:
        pattern = defaults.get(key)
        if pattern and ("{" in pattern or "}" in pattern):
            try:
                pattern.format(name="name", index=1)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise SettingsError(flag(key), f"'{pattern}' may only hold {{name}} and {{index}} in braces "
                                    f"({type(exc).__name__}: {exc})", "command line") from None


def check_batch_files(entries: list[dict], defaults: dict, base: str | None, batch: Path) -> None:
    """Before anything runs: export name patterns use only ``{name}``/``{index}``, and no two
    dialogues write the same file, nor does one overwrite the input scene the next ones start from.
    SettingsError naming the key and the dialogue."""
    check_export_patterns(defaults)
    seen: dict[str, str] = {}
    for i, raw in enumerate(entries):
        where = f"{batch} [dialogue {i + 1}]"
        files = {**defaults, **raw, **_batch_exports(defaults, raw, i)}
        for key in ("out", *EXPORTS):
            value = files.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise SettingsError(key, f"must be a file name, got {value!r}", where)
            path = os.path.realpath(value)
            if key == "out" and base and path == os.path.realpath(base):
                raise SettingsError(key, f"'{value}' is the input scene (--blend): the dialogues after this one "
                                    "would start from its result; save each dialogue to its own file", where)
            if path in seen:
                raise SettingsError(key, f"'{value}' is also written by {seen[path]}; each dialogue needs its own file",
                                    where)
            seen[path] = f"dialogue {i + 1} ({key})"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    args = parse_args(argv)
    import bpy

    base = str(args.blend.resolve()) if args.blend else (bpy.data.filepath or None)
    if args.blend and not args.blend.is_file():
        print(f"error: {args.blend}: scene file not found", file=sys.stderr)
        return 2
    defaults = {k: v for k, v in vars(args).items() if k not in (*SETTING_NAMES, *NOT_PER_DIALOGUE)}
    defaults["out"] = str(args.out) if args.out else None
    defaults["fresh_scene"] = base is None  # started without a .blend: each dialogue from an empty scene
    try:
        given = check_values({k: getattr(args, k) for k in SETTING_NAMES if getattr(args, k) is not None},
                             "command line", spell=flag)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.batch:
        try:
            entries = json.loads(args.batch.read_text())
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ValueError("expected a JSON list of objects")
        except (OSError, ValueError, RecursionError) as exc:
            print(f"error: {args.batch}: {exc}", file=sys.stderr)
            return 2
        try:
            check_batch_files(entries, defaults, base, args.batch)
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        entries = [{}]
    results, failed = [], 0
    for i, raw in enumerate(entries):
        shown = {**defaults, **given, **raw}
        label = shown.get("out") or shown.get("agent_audio") or f"dialogue {i + 1}"
        where = f"{args.batch} [dialogue {i + 1}]" if args.batch else "command line"
        print(f"TIMAR [{i + 1}/{len(entries)}] {label}", flush=True)
        try:
            per_dialogue = {**defaults, **_batch_exports(defaults, raw, i)} if args.batch else defaults
            entry = dialogue_entry(raw, given, per_dialogue, where)
            results.append({"ok": True, **run_one(entry, base if (args.batch or args.blend) else None, where)})
        except Exception as exc:
            failed += 1
            print(f"TIMAR error: {label}: {exc}", file=sys.stderr, flush=True)
            results.append({"ok": False, "entry": {k: str(v) for k, v in shown.items()}, "error": str(exc)})
    summary_failed = False
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"dialogues": results, "failed": failed}, indent=1, default=str))
        except OSError as exc:
            summary_failed = True
            print(f"error: {args.json}: cannot write the summary ({exc.strerror or exc}); what each dialogue "
                  "wrote is listed above", file=sys.stderr, flush=True)
    print(f"TIMAR done: {len(entries) - failed} ok, {failed} failed", flush=True)
    return 1 if failed else 2 if summary_failed else 0


if __name__ == "__main__":
    code = main()
    if os.environ.get("TIMAR_NO_EXIT") is None:
        # leave without interpreter teardown: the bpy 4.2 module can crash there (exit code -11)
        # after all work is saved, which would turn a success into a failure for a pipeline
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
