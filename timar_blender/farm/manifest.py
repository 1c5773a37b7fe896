"""The results manifest: one JSON line per finished dialogue, appended (and flushed to disk) as
dialogues finish, and read back to resume.

A line: ``dialogue`` (its name), ``index`` (1-based, in the batch), ``label``, ``key`` (hash of its
inputs), ``status`` ("ok" or "failed"), ``outputs`` (path -> kind, sha256, bytes, mtime_ns; paths
relative to the manifest's folder when inside it), ``inputs`` (the files hashed into the key, each
with sha256, bytes and mtime_ns), ``seconds`` (the dialogue's time in its worker), ``provider``
(onnxruntime's), ``error`` (None when ok), ``worker`` (pid, node, tasks run by that process) and
``finished`` (UTC time). A later line for the same key supersedes an earlier one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .staging import sha256_of


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent
        self.latest: dict[str, dict] = {}  # key -> its last line
        self.known_inputs: dict[str, dict] = {}  # path -> sha256, bytes, mtime_ns, from earlier runs
        self.unreadable = 0
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        self.unreadable += 1  # e.g. the machine died mid-line: that dialogue runs again
                        continue
                    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                        self.unreadable += 1
                        continue
                    if rec["key"]:  # "" for an entry refused before it ran
                        self.latest[rec["key"]] = rec
                    for p, info in (rec.get("inputs") or {}).items():
                        if isinstance(info, dict):
                            self.known_inputs[p] = info

    def rel(self, path: str | Path) -> str:
        p = os.path.abspath(path)
        r = os.path.relpath(p, self.root)
        return p if r.startswith("..") else r

    def absolute(self, stored: str) -> Path:
        return Path(stored) if os.path.isabs(stored) else self.root / stored

    def done(self, key: str, outputs: list[Path]) -> bool:
        """True if the last line for ``key`` is ok and lists exactly ``outputs`` (among its files),
        each still on disk with its recorded content (size and time, else SHA-256)."""
        rec = self.latest.get(key)
        if rec is None or rec.get("status") != "ok" or not isinstance(rec.get("outputs"), dict):
            return False
        listed = {str(self.absolute(p)): info for p, info in rec["outputs"].items()}
        if not {str(p) for p in outputs} <= set(listed):
            return False
        return all(unchanged(Path(p), info) for p, info in listed.items())

    def append(self, rec: dict) -> None:
        """One line, written in one call and flushed to disk before returning."""
        line = (json.dumps(rec, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if rec["key"]:
            self.latest[rec["key"]] = rec


def unchanged(path: Path, info: dict) -> bool:
    """A file still holds what ``info`` (sha256, bytes, mtime_ns) recorded: same size and time are
    trusted (as make and rsync do), otherwise its SHA-256 decides."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != info.get("bytes"):
        return False
    if st.st_mtime_ns == info.get("mtime_ns"):
        return True
    return sha256_of(path) == info.get("sha256")
