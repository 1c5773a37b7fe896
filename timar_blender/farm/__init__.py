"""The batch of ``timar_blender.headless`` on a Ray cluster, for pipelines (``timar-blender farm``).

    timar-blender farm dialogues.json --out DIR [--address auto|HOST:PORT] [--workers N]
                       [--threads-per-worker T] [any headless option: --blend, settings, --export-*]

Same batch file, keys, validation and export flags as ``headless --batch``; each dialogue runs as a
Ray task in a worker process that keeps Blender (bpy) and the model loaded between dialogues. Every
output is written under a temporary name and renamed into place by the driver once the dialogue has
finished, and ``DIR/manifest.jsonl`` gets one line per finished dialogue (outputs with SHA-256,
seconds, provider, error). Running the same command again skips the dialogues whose inputs (audio,
options, model, scene) and outputs are unchanged.

Ray is an optional dependency of pipelines only: nothing here is imported by the Blender extension,
and ``scripts/build_extension.py`` leaves this package out of the zips. Only ``run`` (the driver)
and the Ray task import ray; ``plan``, ``manifest`` and ``staging`` do not.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .run import main as run_main

    return run_main(argv)
