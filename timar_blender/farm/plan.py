"""From the batch file and the command line to one checked job per dialogue (no Ray, no bpy).

The keys, checks and export flags are headless's (``dialogue_entry``, ``_batch_exports``); what the
farm adds: relative output names are under ``--out DIR``; each dialogue saves ``NAME.blend`` unless
``--no-blend`` (NAME: its ``out`` or agent audio file stem, as headless names exports); input paths
are made absolute (``//`` against the --blend scene's folder) because workers have their own working
folder; each dialogue names its audio (in the batch or on the command line), so the resume key can
hash it; no two dialogues may write one file. The resume key hashes the audio and map files'
content, every option, the model folder, the input scene and the output names.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.settings import SETTING_NAMES, SettingsError, check_values
from ..headless import EXPORTS, NOT_PER_DIALOGUE, _batch_exports, check_export_patterns, dialogue_entry, flag
from .staging import sha256_of

KEY_FORMAT = 1
INPUT_FILES = ("agent_audio", "user_audio", "retarget_map", "mapping_preset")


@dataclass
class Dialogue:
    index: int  # 0-based position in the batch
    label: str  # for messages: its out, agent audio or number
    name: str  # file-name stem, as headless names a dialogue's exports
    where: str  # "<batch> [dialogue N]", for error messages
    entry: dict | None = None  # what headless.run_one takes (absolute paths, final output names)
    outputs: dict[str, str] = field(default_factory=dict)  # final path -> kind (blend, gltf, fbx, csv, flame)
    inputs: dict[str, dict] = field(default_factory=dict)  # hashed input file -> sha256, bytes, mtime_ns
    key: str = ""  # resume key; "" when the entry is invalid
    error: str | None = None  # why it cannot run (bad entry)


class FileHashes:
    """SHA-256 of input files, once per run; a file with the size and modification time an earlier
    run recorded keeps that run's hash (``known``: from the manifest) instead of being read again."""

    def __init__(self, known: dict[str, dict] | None = None) -> None:
        self.known = known or {}
        self.cache: dict[str, dict] = {}

    def __call__(self, path: str) -> dict:
        hit = self.cache.get(path)
        if hit is None:
            st = os.stat(path)
            old = self.known.get(path)
            if old and old.get("bytes") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256"):
                hit = {"sha256": old["sha256"], "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
            else:
                hit = {"sha256": sha256_of(Path(path)), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
            self.cache[path] = hit
        return hit

    def folder(self, path: str) -> str:
        """One hash for every file under a folder (names and contents)."""
        h = hashlib.sha256()
        root = Path(path)
        for p in sorted(q for q in root.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
            h.update(f"{p.relative_to(root).as_posix()}\0{self(str(p))['sha256']}\n".encode())
        return h.hexdigest()


def command_line(hargs) -> tuple[dict, dict]:
    """(checked setting values given on the command line, per-dialogue defaults), as headless.main
    builds them. SettingsError names the flag."""
    given = check_values({k: getattr(hargs, k) for k in SETTING_NAMES if getattr(hargs, k) is not None},
                         "command line", spell=flag)
    defaults = {k: v for k, v in vars(hargs).items() if k not in (*SETTING_NAMES, *NOT_PER_DIALOGUE)}
    defaults["out"] = None
    defaults["fresh_scene"] = not getattr(hargs, "blend", None)  # as headless: a new character in an empty scene
    check_export_patterns(defaults)
    return given, defaults


def read_batch(path: Path) -> list[dict]:
    """The batch file's dialogues; ValueError/OSError as headless reports them."""
    entries = json.loads(path.read_text())
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("expected a JSON list of objects")
    return entries


def _under(root: Path, value: object, key: str, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SettingsError(key, f"must be a file name, got {value!r}", where)
    p = Path(value).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else root / p))


def _input_path(value: str, base: str | None) -> str:
    if value.startswith("//"):  # Blender's relative-to-the-.blend
        return os.path.abspath(os.path.join(os.path.dirname(base) if base else os.getcwd(), value[2:]))
    return os.path.abspath(os.path.expanduser(value))


def plan_batch(
    entries: list[dict],
    hargs,
    out_dir: Path,
    batch: Path,
    *,
    save_blend: bool = True,
    hashes: FileHashes | None = None,
    reserved: tuple[Path, ...] = (),
) -> list[Dialogue]:
    """One ``Dialogue`` per entry; a bad entry gets ``error`` (the others are unaffected).
    SettingsError for a bad command line (then nothing runs)."""
    from ..engine.job import BUNDLED_MODEL

    hashes = hashes or FileHashes()
    given, defaults = command_line(hargs)
    base = os.path.abspath(hargs.blend) if getattr(hargs, "blend", None) else None
    scene_hash = hashes(base)["sha256"] if base and os.path.isfile(base) else None
    model_hashes: dict[str, str] = {}
    claimed: dict[str, str] = {str(p): "the farm" for p in reserved}
    if base:
        claimed[base] = "the input scene (--blend)"
    plan = []
    for i, raw in enumerate(entries):
        shown = {**defaults, **given, **raw}
        label = str(shown.get("out") or shown.get("agent_audio") or f"dialogue {i + 1}")
        name = Path(str(raw.get("out") or raw.get("agent_audio") or "dialogue")).stem
        where = f"{batch} [dialogue {i + 1}]"
        d = Dialogue(i, label, name, where)
        plan.append(d)
        try:
            per_dialogue = {**defaults, **_batch_exports(defaults, raw, i)}
            entry = dialogue_entry(raw, given, per_dialogue, where)
            settings = entry["settings"]
            # outputs, under DIR
            outputs: dict[str, str] = {}
            if entry.get("out"):
                entry["out"] = str(_under(out_dir, entry["out"], "out", where))
                outputs[entry["out"]] = "blend"
            elif save_blend:
                entry["out"] = str(out_dir / f"{name}.blend")
                outputs[entry["out"]] = "blend"
            for key in EXPORTS:
                if entry.get(key):
                    entry[key] = str(_under(out_dir, entry[key], key, where))
                    outputs[entry[key]] = key.removeprefix("export_")
            for path, kind in outputs.items():
                key = "out" if kind == "blend" else f"export_{kind}"
                if path in claimed:
                    raise SettingsError(key, f"'{path}' is also written by {claimed[path]}; each dialogue needs "
                                        "its own file", where)
            # inputs: absolute, present, hashed
            if not settings.get("agent_audio"):
                raise SettingsError("agent_audio", "the farm needs each dialogue's audio, in the batch or as "
                                    "--agent-audio (the scene's setting cannot be hashed for resuming)", where)
            if not settings.get("user_audio") and settings.get("stereo") is not True:
                raise SettingsError("user_audio", "the farm needs the user's audio (or stereo: true), in the batch "
                                    "or on the command line", where)
            inputs = {}
            for key in INPUT_FILES:
                if settings.get(key):
                    path = settings[key] = _input_path(settings[key], base)
                    if not os.path.isfile(path):
                        what = key.replace("_", " ").replace("audio", "audio file")
                        raise SettingsError(key, f"{path}: {what} not found", where)
                    inputs[path] = hashes(path)
            if settings.get("model_path"):
                settings["model_path"] = _input_path(settings["model_path"], base)
            model = settings.get("model_path") or str(BUNDLED_MODEL)
            if not os.path.isdir(model):
                raise SettingsError("model_path", f"{model}: model folder not found", where)
            if model not in model_hashes:
                model_hashes[model] = hashes.folder(model)
        except (SettingsError, ValueError, OSError) as exc:
            d.error = str(exc)
            continue
        for path in outputs:
            claimed[path] = f"dialogue {i + 1}"
        d.entry, d.outputs, d.inputs = entry, outputs, inputs
        d.key = resume_key(entry, inputs, model_hashes[model], scene_hash, outputs, out_dir)
    return plan


def resume_key(entry: dict, inputs: dict[str, dict], model_hash: str, scene_hash: str | None,
               outputs: dict[str, str], out_dir: Path) -> str:
    """Hash of what a dialogue's outputs depend on: options, input file contents (not their paths),
    model folder, input scene, and the output names (relative to DIR)."""
    settings = {k: (inputs[v]["sha256"] if k in INPUT_FILES and v in inputs else v)
                for k, v in entry["settings"].items() if k != "model_path"}
    flags = {k: v for k, v in entry.items() if k not in ("settings", "out", *EXPORTS) and v is not None}

    def rel(p: str) -> str:
        r = os.path.relpath(p, out_dir)
        return p if r.startswith("..") else r

    keyed = {
        "format": KEY_FORMAT,
        "settings": settings,
        "flags": flags,
        "model": model_hash,
        "scene": scene_hash,
        "outputs": sorted((kind, rel(p)) for p, kind in outputs.items()),
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
