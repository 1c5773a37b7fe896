"""What a Ray worker process runs for one dialogue: headless's ``run_one`` with the outputs staged.

The process keeps bpy and the model between dialogues (the engine caches a loaded bundle per
process), and its inference uses ``threads`` cores (``job.set_process_threads``). Errors come back
as a result (status failed, with the message); only the death of the process makes Ray retry.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from contextlib import redirect_stdout
from pathlib import Path

from . import staging

_tasks_here = 0  # dialogues this process has started


def _fresh_scene(base: str | None) -> None:
    """Without an input scene every dialogue starts from Blender's startup scene (as the first one
    of a headless run does), not from the previous dialogue's result."""
    if base is None:
        import bpy

        bpy.ops.wm.read_homefile()


def run_dialogue(job: dict) -> dict:
    """Run one planned dialogue (``plan.Dialogue`` fields as a dict, see ``run.job_of``); returns
    its staged files, hashed, for the driver to rename, or its error."""
    global _tasks_here
    _tasks_here += 1
    from ..engine import job as engine_job
    from ..headless import run_one

    engine_job.set_process_threads(job["threads"])
    t0 = time.monotonic()
    token = uuid.uuid4().hex[:16]
    who = {"pid": os.getpid(), "node": socket.gethostname(), "tasks_in_process": _tasks_here}
    claim = staging.write_claim(Path(job["out_dir"]), token, {**who, "dialogue": job["name"], "index": job["index"]})
    staged = {final: (kind, staging.staged_path(Path(final), token)) for final, kind in job["outputs"].items()}
    entry = dict(job["entry"])
    for key in ("out", "export_gltf", "export_fbx", "export_csv", "export_flame"):
        if entry.get(key):
            entry[key] = str(staged[entry[key]][1])
    result = {"worker": who}
    try:
        with redirect_stdout(sys.stderr):  # headless's progress lines: the worker's log, not a result
            _fresh_scene(job["base"])
            summary = run_one(entry, job["base"], job["where"])
        files = staging.collect(staged)
        result.update(ok=True, files=files, provider=summary.get("provider"), summary=_short(summary))
    except Exception as exc:
        staging.discard(staged)
        result.update(ok=False, error=str(exc) or type(exc).__name__)
    except BaseException:  # cancelled (Ctrl-C): leave nothing behind
        staging.discard(staged)
        raise
    finally:
        claim.unlink(missing_ok=True)
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def _short(summary: dict) -> dict:
    """What the manifest keeps of headless's summary (its staged paths are not the final ones)."""
    keep = ("character", "rig", "takes", "unmatched", "model", "seconds", "scene_fps", "warnings",
            "generation_seconds", "provider_reason")
    return {k: summary[k] for k in keep if k in summary}
