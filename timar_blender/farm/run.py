"""The farm's driver: plan the batch, start or join a Ray cluster, keep every worker busy, move each
finished dialogue's outputs into place and append its manifest line, and stop cleanly on Ctrl-C.

Only this process renames outputs and writes the manifest, once per dialogue, after its Ray task
has returned: a worker killed mid-dialogue is retried by Ray (``--retries``), and what the killed
attempt staged is removed, so every output is written once. Exit code: 0 all ok, 1 some dialogue
failed, 2 bad command line or batch file, 130 interrupted (run the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..engine.settings import SettingsError
from ..headless import parse_args as headless_args
from . import staging
from .manifest import Manifest
from .plan import Dialogue, FileHashes, plan_batch, read_batch
from .progress import Progress, clock

MANIFEST_NAME = "manifest.jsonl"
RAY_MISSING = ("the farm needs Ray (pip install 'ray==2.60.0', or this project's 'farm' extra); "
               "the headless batch (python -m timar_blender.headless --batch) runs without it")


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="timar-blender farm",
        description="Run a headless batch file on a Ray cluster: one task per dialogue, resumable.",
        epilog="Every option of the headless command is accepted too and means the same (settings, --blend, "
               "--create-test-rig, --add-demo-head, --export-* with {name}/{index}, --csv-timecode): see "
               "`python -m timar_blender.headless --help`. Relative output names are under --out.",
    )
    p.add_argument("batch", type=Path, help="JSON list of dialogues (the headless --batch file)")
    p.add_argument("--out", type=Path, required=True, help=f"folder for the outputs and {MANIFEST_NAME}")
    p.add_argument("--address", help="Ray cluster to join: 'auto' (the one `ray start --head` runs here) or "
                   "HOST:PORT (default: start a local one for this run)")
    p.add_argument("--workers", type=int, help="dialogues run at once (default: the cluster's CPUs divided by "
                   "--threads-per-worker)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="inference threads (and Ray CPUs) per worker "
                   "(default: 1)")
    p.add_argument("--retries", type=int, default=3, help="times a dialogue is run again when its worker process "
                   "dies (default: 3)")
    p.add_argument("--no-blend", action="store_true", help="write only the exports, not a .blend per dialogue")
    p.add_argument("--json", type=Path, help="write this run's summary")
    p.add_argument("--verbose", action="store_true", help="show the workers' own output (Blender, progress lines)")
    fargs, rest = p.parse_known_args(argv)
    hargs = headless_args(rest)
    if hargs.batch:
        p.error("give the batch file as the first argument, not --batch")
    for name in ("workers", "threads_per_worker"):
        value = getattr(fargs, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if fargs.retries < 0:
        p.error(f"--retries must be 0 or more, got {fargs.retries}")
    return fargs, hargs


class ClusterError(RuntimeError):
    """No Ray, or no cluster: nothing ran."""


class Farm:
    """One run: the plan, the manifest, the counts."""

    def __init__(self, fargs: argparse.Namespace, hargs: argparse.Namespace, plan: list[Dialogue],
                 manifest: Manifest) -> None:
        self.fargs, self.hargs, self.plan, self.manifest = fargs, hargs, plan, manifest
        self.out_dir = manifest.root
        self.base = os.path.abspath(hargs.blend) if hargs.blend else None
        self.threads = fargs.threads_per_worker
        self.workers = self.depth = 0
        self.records: list[dict] = []
        self.lost: list[dict] = []
        self.interrupted = False
        self.stopped = 0
        invalid = [d for d in plan if d.error]
        self.todo = [d for d in plan if not d.error and not manifest.done(d.key, [Path(p) for p in d.outputs])]
        self.progress = Progress(len(plan), skipped=len(plan) - len(invalid) - len(self.todo))
        for d in invalid:
            self.record(d, {"ok": False, "error": d.error})

    # ------------------------------------------------------------------ results

    def record(self, d: Dialogue, res: dict, outputs: dict | None = None) -> None:
        ok = bool(res.get("ok"))
        rec = {
            "dialogue": d.name,
            "index": d.index + 1,
            "label": d.label,
            "key": d.key,
            "status": "ok" if ok else "failed",
            "outputs": {self.manifest.rel(p): info for p, info in (outputs or {}).items()},
            "inputs": d.inputs,
            "seconds": res.get("seconds"),
            "provider": res.get("provider"),
            "error": None if ok else res.get("error"),
            "worker": res.get("worker"),
            "finished": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "summary": res.get("summary"),
        }
        self.manifest.append(rec)
        self.records.append(rec)
        if ok:
            self.progress.ok += 1
        else:
            self.progress.failed += 1
            self.progress.note(f"farm error: {d.label}: {rec['error']}")

    def finish(self, d: Dialogue, res: dict) -> None:
        """A returned task: its outputs renamed into place, then its manifest line."""
        outputs = None
        if res.get("ok"):
            try:
                outputs = staging.commit(res["files"])
            except OSError as exc:
                for f in res["files"]:
                    Path(f["staged"]).unlink(missing_ok=True)
                res = {**res, "ok": False, "error": f"cannot move the outputs into place: {exc}"}
        self.record(d, res, outputs)

    # ------------------------------------------------------------------ Ray

    def job_of(self, d: Dialogue) -> dict:
        return {"index": d.index + 1, "name": d.name, "where": d.where, "entry": d.entry, "base": self.base,
                "outputs": d.outputs, "out_dir": str(self.out_dir), "threads": self.threads}

    def run(self) -> None:
        """Run the dialogues to do; ClusterError if Ray is missing or the cluster cannot be joined."""
        try:
            import ray
        except ImportError:
            raise ClusterError(RAY_MISSING) from None
        from .worker import run_dialogue

        try:
            if self.fargs.address:
                ray.init(address=self.fargs.address, log_to_driver=self.fargs.verbose, logging_level=logging.WARNING)
            else:
                workers = self.fargs.workers or max(1, (os.cpu_count() or 1) // self.threads)
                ray.init(num_cpus=workers * self.threads, include_dashboard=False, log_to_driver=self.fargs.verbose,
                         logging_level=logging.WARNING)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
            where = f"the Ray cluster at {self.fargs.address}" if self.fargs.address else "a local Ray cluster"
            raise ClusterError(f"cannot start or join {where}: {exc}") from None
        try:
            cpus = ray.cluster_resources().get("CPU", 1.0)
            self.workers = self.fargs.workers or max(1, int(cpus // self.threads))
            # one task queued behind each running one keeps Ray's worker leases busy between dialogues;
            # only a --workers limit on a shared cluster must not be exceeded by queued tasks
            self.depth = self.workers if self.fargs.address and self.fargs.workers else 2 * self.workers
            task = ray.remote(run_dialogue).options(name="timar_dialogue", num_cpus=self.threads,
                                                    max_retries=self.fargs.retries, retry_exceptions=False)
            self._loop(ray, task)
        finally:
            ray.shutdown()

    def _loop(self, ray, task) -> None:
        queue, inflight = deque(self.todo), {}
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a pipeline's stop: as Ctrl-C
        self.progress.t0 = time.monotonic()
        try:
            while queue or inflight:
                while queue and len(inflight) < self.depth:
                    d = queue.popleft()
                    inflight[task.remote(self.job_of(d))] = d
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    d = inflight.pop(ref)
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        res = {"ok": False, "error": self._ray_error(ray, exc)}
                    with _interrupts_deferred():  # a dialogue's renames and its line: all or none
                        self.finish(d, res)
                self.progress.show()
        except KeyboardInterrupt:
            self.interrupted, self.stopped = True, len(inflight)
            for ref in inflight:
                ray.cancel(ref, force=True)
            if inflight:  # until they are gone, so that nothing writes into DIR any more
                ray.wait(list(inflight), num_returns=len(inflight), timeout=15.0)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _ray_error(self, ray, exc: Exception) -> str:
        if isinstance(exc, ray.exceptions.WorkerCrashedError):
            return f"its worker process died {self.fargs.retries + 1} times"
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return f"{type(cause).__name__}: {cause}"
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        return lines[-1] if lines else type(exc).__name__

    # ------------------------------------------------------------------ summary

    def summary(self, seconds: float) -> dict:
        p = self.progress
        return {
            "ok": p.ok,
            "failed": p.failed,
            "up_to_date": p.skipped,
            "total": p.total,
            "seconds": round(seconds, 3),
            "dialogues_per_minute": round(p.rate(), 2),
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "lost_attempts": self.lost,
            "interrupted": self.interrupted,
            "stopped": self.stopped,
            "manifest": str(self.manifest.path),
            "dialogues": self.records,
        }


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextmanager
def _interrupts_deferred():
    """Ctrl-C / SIGTERM inside the block takes effect when it ends."""
    hit = []
    previous = {sig: signal.signal(sig, lambda signum, frame: hit.append(signum)) for sig in (signal.SIGINT,
                                                                                            signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if hit:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    fargs, hargs = parse(sys.argv[1:] if argv is None else argv)
    if hargs.blend and not hargs.blend.is_file():
        print(f"error: {hargs.blend}: scene file not found", file=sys.stderr)
        return 2
    try:
        entries = read_batch(fargs.batch)
    except (OSError, ValueError, RecursionError) as exc:
        print(f"error: {fargs.batch}: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(os.path.abspath(fargs.out))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(out_dir / MANIFEST_NAME)
        plan = plan_batch(entries, hargs, out_dir, fargs.batch, save_blend=not fargs.no_blend,
                          hashes=FileHashes(manifest.known_inputs), reserved=(manifest.path,))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    folders = {out_dir} | {Path(p).parent for d in plan for p in d.outputs}
    earlier, _ = staging.sweep(folders, out_dir)  # what an interrupted earlier run left
    farm = Farm(fargs, hargs, plan, manifest)
    if earlier:
        farm.progress.note(f"farm: {len(earlier)} dialogue(s) of an earlier run had not finished; they run again")
    if farm.todo:
        try:
            farm.run()
        except ClusterError as exc:
            farm.progress.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
    lost, _ = staging.sweep(folders, out_dir)
    if not farm.interrupted:
        farm.lost = lost
    farm.progress.close()
    seconds = time.monotonic() - t0
    summary = farm.summary(seconds)
    for a in farm.lost:
        print(f"farm: an attempt at {a.get('dialogue', '?')} was lost with its worker (pid {a.get('pid', '?')}) "
              "and run again", file=sys.stderr)
    p = farm.progress
    ran = f" ({p.rate():.1f} dialogues/min, {farm.workers} worker(s) x {farm.threads} thread(s))" \
        if farm.workers else ""
    print(f"farm {'interrupted' if farm.interrupted else 'done'}: {p.ok} ok, {p.failed} failed, {p.skipped} up to "
          f"date, of {p.total} in {clock(seconds)}{ran}; manifest: {manifest.path}", flush=True)
    if farm.interrupted:
        print(f"farm: stopped {farm.stopped} running dialogue(s); nothing of them was kept. Run the same command "
              "to resume.", file=sys.stderr)
    if fargs.json:
        fargs.json.parent.mkdir(parents=True, exist_ok=True)
        fargs.json.write_text(json.dumps(summary, indent=1, default=str))
    if farm.interrupted:
        return 130
    return 1 if p.failed else 0
