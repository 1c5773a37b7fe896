"""Outputs written under temporary names beside their final place, then renamed by the driver.

A worker writes each output to a staged name (``.NAME.timar-part-TOKEN.EXT`` in the final folder,
so that a .blend's relative paths stay right; a ``.gltf`` with its ``.bin`` into a
``.timar-part-TOKEN`` folder there) and returns them; only the driver renames them into place, once
per dialogue, so a worker killed mid-dialogue (and retried) leaves only staged files, which the
driver removes. A claim file in the output folder says which worker process runs which dialogue
while it runs: one left behind names an attempt lost with its worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

MARK = ".timar-part-"
CLAIM_PREFIX = ".timar-running-"


def staged_path(final: Path, token: str) -> Path:
    """Where an attempt (``token``) writes the output that becomes ``final``."""
    if final.suffix.lower() == ".gltf":  # the .gltf names its .bin: both keep their final names
        return final.parent / f"{MARK}{token}" / final.name
    return final.parent / f".{final.stem}{MARK}{token}{final.suffix}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def collect(staged: dict[str, tuple[str, Path]]) -> list[dict]:
    """The files an attempt wrote, each flushed to disk and hashed: ``staged`` maps a final path to
    (kind, staged path); a .gltf brings the other files of its folder. RuntimeError if one is missing."""
    files = []
    for final, (kind, path) in staged.items():
        if not path.is_file():
            raise RuntimeError(f"{final}: the {kind} output was not written")
        members = sorted(p for p in path.parent.iterdir() if p.is_file()) if path.parent.name.startswith(MARK) \
            else [path]
        for p in members:
            target = Path(final) if p == path else Path(final).parent / p.name
            _fsync(p)
            files.append({"kind": kind, "staged": str(p), "final": str(target), "sha256": sha256_of(p),
                          "bytes": p.stat().st_size})
    return files


def discard(staged: dict[str, tuple[str, Path]]) -> None:
    """Remove what an attempt staged (it failed or was stopped)."""
    for _, path in staged.values():
        if path.parent.name.startswith(MARK):
            shutil.rmtree(path.parent, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def commit(files: list[dict]) -> dict[str, dict]:
    """Rename staged files to their final names (atomic on one file system); returns final path ->
    kind, sha256, bytes, mtime_ns. OSError if a staged file is gone or a rename fails."""
    for f in files:
        if not os.path.isfile(f["staged"]):
            raise FileNotFoundError(f"{f['final']}: its staged file {f['staged']} is gone")
    out, folders = {}, set()
    for f in files:
        os.replace(f["staged"], f["final"])
        st = os.stat(f["final"])
        out[f["final"]] = {"kind": f["kind"], "sha256": f["sha256"], "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        folders.add(os.path.dirname(f["final"]))
        staged_dir = os.path.dirname(f["staged"])
        if os.path.basename(staged_dir).startswith(MARK):
            folders.add(staged_dir)
    for folder in folders:
        if os.path.basename(folder).startswith(MARK):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                _fsync(Path(folder))  # the renames themselves on disk
    return out


def write_claim(folder: Path, token: str, info: dict) -> Path:
    path = folder / f"{CLAIM_PREFIX}{token}.json"
    path.write_text(json.dumps(info))
    return path


def sweep(folders: set[Path], claims_in: Path) -> tuple[list[dict], int]:
    """Remove what attempts left behind: claim files in ``claims_in`` (returned: the attempts lost
    with their worker) and staged files in ``folders``. Returns (lost attempts, staged files removed)."""
    lost = []
    for claim in sorted(claims_in.glob(f"{CLAIM_PREFIX}*.json")):
        try:
            lost.append(json.loads(claim.read_text()))
        except (OSError, ValueError):
            lost.append({"claim": claim.name})
        claim.unlink(missing_ok=True)
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(MARK) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
            elif p.name.startswith(".") and MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return lost, removed
