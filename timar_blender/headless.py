"""Headless generation for pipelines, without timers or modal code.

    blender -b scene.blend --python-exit-code 1 --python timar_blender/headless.py -- \\
        --character Head --agent-audio agent.wav --user-audio user.wav --out take.blend --json summary.json
    python -m timar_blender.headless --blend scene.blend --character Head ...   # with the bpy module
    ... --batch dialogues.json                                                    # many dialogues
    ... --add-demo-head --export-gltf take.glb --export-csv take.csv              # ARKit demo head, exports

A batch file is a JSON list of objects with the same keys as the options (``agent_audio``,
``user_audio``, ``out``, ``seed``, ``character``, ``export_gltf``, ...); each entry starts from the
same input scene. An export flag given on the command line for a batch names one file per dialogue:
``{name}`` / ``{index}`` in the path are replaced by the dialogue's name (its ``out`` or agent audio
file stem) and number, otherwise ``_<index>_<name>`` is appended to the file stem. Progress lines go
to stdout; the exit code is non-zero if any dialogue failed; the JSON summary lists what was written.
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

FIELDS = ("character", "agent_audio", "user_audio", "stereo", "agent_channel", "model_path", "context_turns", "cfg",
          "temperature", "seed", "takes", "start_frame", "strength_expression", "strength_jaw", "strength_head",
          "smoothing", "add_sound", "user_motion_object", "rig_type", "retarget_map", "mapping_preset", "blinks")
EXPORTS = ("export_gltf", "export_fbx", "export_csv", "export_flame")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="timar headless", description="Generate TIMAR motion without the UI")
    p.add_argument("--blend", type=Path, help="scene to open first (with `python -m`; Blender takes it as -b FILE)")
    p.add_argument("--character", help="mesh object with FLAME shape keys (default: the scene's TIMAR setting)")
    p.add_argument("--create-test-rig", action="store_true", help="add the test rig and animate it")
    p.add_argument("--add-demo-head", action="store_true", help="add the ARKit demo head and animate it")
    # these four default to the scene's own setting (Auto, bundled map, match by name, blinks on)
    p.add_argument("--rig-type", choices=("AUTO", "FLAME", "ARKIT"))
    p.add_argument("--retarget-map", help="FLAME -> ARKit retarget map JSON (default: the bundled one)")
    p.add_argument("--mapping-preset", help="ARKit mapping preset JSON (default: match by name)")
    p.add_argument("--no-blinks", dest="blinks", action="store_false", default=None, help="ARKit rigs: no blinks")
    p.add_argument("--agent-audio")
    p.add_argument("--user-audio")
    p.add_argument("--stereo", action="store_true", help="--agent-audio is one stereo file with both voices")
    p.add_argument("--agent-channel", choices=("0", "1"), default="0")
    p.add_argument("--user-motion-object", help="the other person's animated FLAME head")
    p.add_argument("--model", dest="model_path", default="", help="model bundle folder (default: the bundled model)")
    p.add_argument("--context-turns", type=int, default=7)
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--takes", type=int, default=1)
    p.add_argument("--start-frame", type=int, default=1)
    p.add_argument("--strength-expression", type=float, default=1.0)
    p.add_argument("--strength-jaw", type=float, default=1.0)
    p.add_argument("--strength-head", type=float, default=1.0)
    p.add_argument("--smoothing", type=float, default=0.0)
    p.add_argument("--no-sound", dest="add_sound", action="store_false")
    p.add_argument("--out", type=Path, help="save the result as this .blend (default: overwrite nothing)")
    p.add_argument("--export-gltf", help="write the animated character as glTF (.glb or .gltf)")
    p.add_argument("--export-fbx", help="write the animated character as FBX")
    p.add_argument("--export-csv", help="write the take as a Live Link Face CSV (ARKit-52 + head)")
    p.add_argument("--export-flame", help="write the take's FLAME-56 motion (.npz or .json)")
    p.add_argument("--batch", type=Path, help="JSON list of dialogues (keys as the options above)")
    p.add_argument("--json", type=Path, help="write a summary of what was written")
    return p.parse_args(argv)


def _ensure_registered() -> None:
    import bpy

    if not hasattr(bpy.types.Scene, "timar"):
        from . import register

        register()


def run_one(entry: dict, base_blend: str | None) -> dict:
    """One dialogue from a fresh copy of the input scene; returns its summary (or raises)."""
    import bpy

    from .blender import generate
    from .blender.demo_head import build_demo_head
    from .blender.export import EXPORTERS
    from .blender.rig import create_test_rig
    from .engine import job

    if base_blend:
        bpy.ops.wm.open_mainfile(filepath=base_blend)
    _ensure_registered()
    scene = bpy.context.scene
    s = scene.timar
    if entry.get("create_test_rig"):
        s.character = create_test_rig(bpy.context)
    if entry.get("add_demo_head"):
        s.character = build_demo_head(bpy.context)
    for key in FIELDS:
        value = entry.get(key)
        if value is None:
            continue
        if key in ("character", "user_motion_object"):
            obj = bpy.data.objects.get(value)
            if obj is None:
                raise ValueError(f"object '{value}' not found in the scene")
            value = obj
        setattr(s, key, str(value) if key == "agent_channel" else value)
    req, info = generate.build_request(scene, s)
    t0 = time.time()

    def progress(frac: float, text: str) -> None:
        print(f"TIMAR {frac * 100:5.1f}% {text}", flush=True)

    result = job.run(req, progress=progress)
    summary = generate.write_result(bpy.context, s, req, info, result)
    summary["generation_seconds"] = round(time.time() - t0, 3)
    summary["exports"] = {}
    for key in EXPORTS:
        if entry.get(key):
            target = Path(entry[key]).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            kind = key.removeprefix("export_")
            summary["exports"][kind] = EXPORTERS[kind](bpy.context, s.character, str(target))
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


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    args = parse_args(argv)
    import bpy

    base = str(args.blend.resolve()) if args.blend else (bpy.data.filepath or None)
    if args.blend and not args.blend.is_file():
        print(f"error: {args.blend}: scene file not found", file=sys.stderr)
        return 2
    defaults = {k: v for k, v in vars(args).items() if k not in ("blend", "batch", "json")}
    defaults["out"] = str(args.out) if args.out else None
    if args.batch:
        try:
            entries = json.loads(args.batch.read_text())
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ValueError("expected a JSON list of objects")
        except (OSError, ValueError) as exc:
            print(f"error: {args.batch}: {exc}", file=sys.stderr)
            return 2
        entries = [{**defaults, **e, **_batch_exports(defaults, e, i)} for i, e in enumerate(entries)]
    else:
        entries = [defaults]
    results, failed = [], 0
    for i, entry in enumerate(entries):
        label = entry.get("out") or entry.get("agent_audio") or f"dialogue {i + 1}"
        print(f"TIMAR [{i + 1}/{len(entries)}] {label}", flush=True)
        try:
            results.append({"ok": True, **run_one(entry, base if (args.batch or args.blend) else None)})
        except Exception as exc:
            failed += 1
            print(f"TIMAR error: {label}: {exc}", file=sys.stderr, flush=True)
            results.append({"ok": False, "entry": {k: str(v) for k, v in entry.items()}, "error": str(exc)})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dialogues": results, "failed": failed}, indent=1, default=str))
    print(f"TIMAR done: {len(entries) - failed} ok, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    if os.environ.get("TIMAR_NO_EXIT") is None:
        # leave without interpreter teardown: the bpy 4.2 module can crash there (exit code -11)
        # after all work is saved, which would turn a success into a failure for a pipeline
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
