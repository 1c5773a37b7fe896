"""The Ray farm (``timar-blender farm``, ``timar_blender.farm``) on a local Ray cluster of two worker
processes started by the farm itself: a batch of 22 two-second dialogues and two broken entries,
compared with the headless batch of the same file; one worker killed by its pid mid-dialogue; a
second run; one audio file changed; Ctrl-C. Also: the extension holds neither the farm nor Ray.

Each run is a real ``python -m timar_blender.farm`` process (real Ray, real bpy workers, real
files); nothing is mocked. The batch tests run in file order (the resume test works on the first
run's folder).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from conftest import ROOT, synth_speech

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (the farm extra: pip install ray==2.60.0)", allow_module_level=True)
if importlib.util.find_spec("bpy") is None:
    pytest.skip("bpy is not installed (the farm's workers run Blender as a module)", allow_module_level=True)

RATE = 16_000
VALID = 22
LONG = 6  # this dialogue has 8 takes: the one whose worker is killed mid-dialogue
FLAGS = ["--export-flame", "{name}.npz", "--export-csv", "{name}.csv"]


def env_for(tmp: Path) -> dict:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HOME": str(home),
            "BLENDER_USER_RESOURCES": str(home / "blender"), "XDG_CACHE_HOME": str(home / "cache")}


def write_pair(folder: Path, i: int, seed: int | None = None) -> tuple[Path, Path]:
    agent, user = folder / f"line{i:02d}_agent.wav", folder / f"line{i:02d}_user.wav"
    seed = 10 + i if seed is None else seed
    sf.write(agent, synth_speech(2.0, RATE, seed, [(1.0, 1.9)]), RATE)
    sf.write(user, synth_speech(2.0, RATE, 50 + i, [(0.1, 0.9)]), RATE)
    return agent, user


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    """22 dialogues (relative output names, seed = index) and two broken entries: an unknown key
    (refused before it runs) and an agent audio that is not audio (fails in its worker)."""
    from timar_blender.engine import job

    if not job.BUNDLED_MODEL.joinpath("manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    tmp = tmp_path_factory.mktemp("farm")
    audio = tmp / "audio"
    audio.mkdir()
    entries = []
    for i in range(VALID):
        agent, user = write_pair(audio, i)
        e = {"agent_audio": str(agent), "user_audio": str(user), "seed": i, "out": f"line{i:02d}.blend"}
        if i == LONG:
            e["takes"] = 8
        entries.append(e)
    (audio / "broken.wav").write_bytes(b"RIFF this is not a wave file" * 20)
    entries.insert(10, {"agent_audio": str(audio / "broken.wav"), "user_audio": str(audio / "line00_user.wav"),
                        "out": "broken.blend"})
    entries.insert(15, {"agent_audio": str(audio / "line01_agent.wav"), "user_audio": str(audio / "line01_user.wav"),
                        "sead": 3, "out": "typo.blend"})
    path = tmp / "dialogues.json"
    path.write_text(json.dumps(entries, indent=1))
    base = tmp / "base.blend"
    make_base = ("import bpy, timar_blender; bpy.ops.wm.read_factory_settings(use_empty=True); "
                 "timar_blender.register(); bpy.ops.timar.create_test_rig(); "
                 f"bpy.ops.wm.save_as_mainfile(filepath={str(base)!r})")
    subprocess.run([sys.executable, "-c", make_base], check=True, timeout=300, capture_output=True, env=env_for(tmp))
    return {"tmp": tmp, "file": path, "base": base, "audio": audio, "env": env_for(tmp)}


def farm_cmd(b: dict, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "timar_blender.farm", str(b["file"]), "--out", str(out), "--blend", str(b["base"]),
            *FLAGS, "--workers", "2", "--json", str(out.parent / f"{out.name}.json"), *extra]


def run_farm(b: dict, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run(farm_cmd(b, out, *extra), capture_output=True, text=True, timeout=300, env=b["env"])
    summary_path = out.parent / f"{out.name}.json"
    assert summary_path.is_file(), r.stdout + r.stderr
    return r, json.loads(summary_path.read_text())


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_files() -> set[str]:
    return {f"line{i:02d}{ext}" for i in range(VALID) for ext in (".blend", ".csv", ".npz")} | {"manifest.jsonl"}


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if p.name != "manifest.jsonl"}


@pytest.fixture(scope="module")
def first_run(batch) -> dict:
    """The farm over the batch; the worker running the 8-take dialogue is SIGKILLed by its pid (read
    from the claim file the worker writes while it runs a dialogue)."""
    out = batch["tmp"] / "farm_out"
    proc = subprocess.Popen(farm_cmd(batch, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=batch["env"])
    killed, deadline = None, time.monotonic() + 300
    while proc.poll() is None and killed is None and time.monotonic() < deadline:
        for claim in out.glob(".timar-running-*.json") if out.is_dir() else []:
            try:
                info = json.loads(claim.read_text())
            except (OSError, ValueError):
                continue  # being written
            if info.get("dialogue") == f"line{LONG:02d}":
                os.kill(info["pid"], signal.SIGKILL)
                killed = info
                break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    summary = json.loads((out.parent / "farm_out.json").read_text())
    return {"out": out, "rc": proc.returncode, "stdout": stdout, "stderr": stderr, "killed": killed,
            "summary": summary, "lines": manifest_lines(out)}


@pytest.fixture(scope="module")
def headless_ref(batch) -> Path:
    """The same batch file and flags through ``python -m timar_blender.headless --batch`` (relative
    output names land in its working folder)."""
    ref = batch["tmp"] / "headless_out"
    ref.mkdir()
    r = subprocess.run([sys.executable, "-m", "timar_blender.headless", "--blend", str(batch["base"]), "--batch",
                        str(batch["file"]), *FLAGS], cwd=ref, capture_output=True, text=True, timeout=600,
                       env=batch["env"])
    assert r.returncode == 1, r.stdout + r.stderr  # the two broken entries fail there too
    assert "TIMAR done: 22 ok, 2 failed" in r.stdout, r.stdout + r.stderr
    return ref


DUMP_KEYS = r"""
import hashlib, json, sys
import bpy
import numpy as np

def fcurves(action):
    if hasattr(action, "layers") and len(action.layers):
        for layer in action.layers:
            for strip in layer.strips:
                for bag in strip.channelbags:
                    yield from bag.fcurves
    elif hasattr(action, "fcurves"):
        yield from action.fcurves

out = {}
for path in sys.argv[1:]:
    bpy.ops.wm.open_mainfile(filepath=path)
    keys = {}
    for action in bpy.data.actions:
        for fc in fcurves(action):
            co = np.zeros(2 * len(fc.keyframe_points), np.float32)
            fc.keyframe_points.foreach_get("co", co)
            keys[f"{action.name}|{fc.data_path}|{fc.array_index}"] = hashlib.sha256(co.tobytes()).hexdigest()
    out[path.rsplit("/", 1)[-1]] = keys
print("@@KEYS@@" + json.dumps(out))
"""


def blend_keys(paths: list[Path], env: dict) -> dict[str, dict[str, str]]:
    """Every f-curve's keys (hashed) of each saved .blend, read back by Blender in a process of its own."""
    r = subprocess.run([sys.executable, "-c", DUMP_KEYS, *map(str, paths)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.split("@@KEYS@@", 1)[1])


# ----------------------------------------------------------------------------- the first run


@pytest.mark.slow
def test_every_output_written_once_and_the_killed_worker_loses_nothing(first_run) -> None:
    out, summary, lines = first_run["out"], first_run["summary"], first_run["lines"]
    assert first_run["killed"] is not None, "the 8-take dialogue was never seen running"
    assert first_run["rc"] == 1, first_run["stderr"]  # the two broken entries
    assert (summary["ok"], summary["failed"], summary["up_to_date"], summary["total"]) == (VALID, 2, 0, VALID + 2)
    # every file once, nothing staged or half-written left, nothing else
    assert {p.name for p in out.iterdir()} == expected_files()
    ok = [rec for rec in lines if rec["status"] == "ok"]
    assert sorted(rec["dialogue"] for rec in ok) == [f"line{i:02d}" for i in range(VALID)]  # each once
    for rec in ok:
        assert set(rec["outputs"]) == {f"{rec['dialogue']}{ext}" for ext in (".blend", ".csv", ".npz")}
        for name, info in rec["outputs"].items():
            assert sha256(out / name) == info["sha256"], name
        assert rec["provider"] == "CPUExecutionProvider" and rec["seconds"] > 0 and rec["error"] is None
    # the kill: reported, and the dialogue finished in another worker process
    lost = summary["lost_attempts"]
    assert [(a["dialogue"], a["pid"]) for a in lost] == [(f"line{LONG:02d}", first_run["killed"]["pid"])]
    assert f"(pid {first_run['killed']['pid']})" in first_run["stderr"]
    redone = next(rec for rec in ok if rec["dialogue"] == f"line{LONG:02d}")
    assert redone["worker"]["pid"] != first_run["killed"]["pid"]
    # two worker processes at a time, each kept between dialogues (Blender and the model loaded once)
    assert summary["workers"] == 2
    pids = {rec["worker"]["pid"] for rec in ok}
    assert len(pids) <= 3  # two, plus the one Ray started after the kill
    assert max(rec["worker"]["tasks_in_process"] for rec in ok) >= 5


@pytest.mark.slow
def test_a_broken_entry_fails_alone_with_its_error_in_the_manifest(first_run) -> None:
    failed = {rec["label"]: rec for rec in first_run["lines"] if rec["status"] == "failed"}
    assert set(failed) == {"broken.blend", "typo.blend"}
    assert "sead: unknown key (did you mean 'seed'?)" in failed["typo.blend"]["error"]
    assert "[dialogue 16]" in failed["typo.blend"]["error"]
    assert "broken.wav" in failed["broken.blend"]["error"]
    assert failed["broken.blend"]["outputs"] == {} and failed["typo.blend"]["outputs"] == {}
    assert "farm error: broken.blend:" in first_run["stderr"]


@pytest.mark.slow
def test_outputs_identical_to_headless_for_the_same_seeds(first_run, headless_ref, batch) -> None:
    out = first_run["out"]
    for i in range(VALID):
        for ext in (".csv", ".npz"):
            name = f"line{i:02d}{ext}"
            assert (out / name).read_bytes() == (headless_ref / name).read_bytes(), name
    names = [f"line{i:02d}.blend" for i in range(VALID)]
    farm_keys = blend_keys([out / n for n in names], batch["env"])
    ref_keys = blend_keys([headless_ref / n for n in names], batch["env"])
    for n in names:
        assert farm_keys[n] and farm_keys[n] == ref_keys[n], n
    assert len(farm_keys[f"line{LONG:02d}.blend"]) == 8 * len(farm_keys["line00.blend"])  # 8 takes


@pytest.mark.slow
def test_second_run_skips_all_and_a_changed_audio_reruns_only_its_dialogue(first_run, batch) -> None:
    out = first_run["out"]
    before = stamps(out)
    r, s = run_farm(batch, out)
    assert r.returncode == 1, r.stderr  # the broken entries fail again
    assert (s["ok"], s["failed"], s["up_to_date"]) == (0, 2, VALID)
    assert stamps(out) == before  # nothing rewritten
    npz = sha256(out / "line03.npz")
    time.sleep(0.01)
    write_pair(batch["audio"], 3, seed=999)  # new agent speech for dialogue 4
    r, s = run_farm(batch, out)
    assert r.returncode == 1, r.stderr
    assert (s["ok"], s["failed"], s["up_to_date"]) == (1, 2, VALID - 1)
    assert [rec["dialogue"] for rec in s["dialogues"] if rec["status"] == "ok"] == ["line03"]
    after = stamps(out)
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {"line03.blend", "line03.csv", "line03.npz"}
    assert sha256(out / "line03.npz") != npz
    assert {p.name for p in out.iterdir()} == expected_files()


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(batch) -> None:
    entries = json.loads(batch["file"].read_text())
    valid = batch["tmp"] / "valid.json"
    valid.write_text(json.dumps([e for e in entries if "sead" not in e and "broken" not in e["agent_audio"]]))
    b = {**batch, "file": valid}
    out = batch["tmp"] / "interrupted"
    # a terminal's Ctrl-C: SIGINT to the farm's whole process group
    proc = subprocess.Popen(farm_cmd(b, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=b["env"], start_new_session=True)
    manifest, deadline = out / "manifest.jsonl", time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if manifest.is_file() and manifest.read_text().count("\n") >= 2:
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Run the same command to resume" in stderr
    lines = manifest_lines(out)
    done = {rec["dialogue"] for rec in lines if rec["status"] == "ok"}
    assert 2 <= len(done) < VALID and len(lines) == len(done)
    # nothing half-written: every file on disk belongs to a finished dialogue, with its recorded content
    on_disk = {p.name for p in out.iterdir()} - {"manifest.jsonl"}
    assert on_disk == {f"{d}{ext}" for d in done for ext in (".blend", ".csv", ".npz")}
    for rec in lines:
        for name, info in rec["outputs"].items():
            assert sha256(out / name) == info["sha256"]
    r, s = run_farm(b, out)
    assert r.returncode == 0, r.stderr
    assert (s["ok"], s["up_to_date"], s["failed"]) == (VALID - len(done), len(done), 0)
    assert {p.name for p in out.iterdir()} == expected_files()


# ----------------------------------------------------------------------------- no Ray in the extension


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_extension_holds_neither_the_farm_nor_an_import_of_ray(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_extension_farm", ROOT / "scripts" / "build_extension.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    stage = tmp_path / "stage"
    build.stage_package(stage)
    staged = sorted(stage.rglob("*.py"))
    assert any(p.name == "headless.py" for p in staged) and (stage / "blender").is_dir()
    assert not (stage / "farm").exists() and not (stage / "cli.py").exists()
    for path in staged:
        mods = _imported_modules(path)
        assert not [m for m in mods if m == "ray" or m.startswith("ray.")], path
        assert not [m for m in mods if m.lstrip(".").split(".")[0] == "farm" or "farm" in m.split(".")], path


def test_the_blender_layer_and_headless_import_no_ray(tmp_path: Path) -> None:
    code = ("import sys, bpy, timar_blender; timar_blender.register(); "
            "import timar_blender.headless, timar_blender.blender.operators, timar_blender.blender.live; "
            "print('@@', sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'timar_blender.farm'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("@@", 1)[1].strip() == "[]"


# ----------------------------------------------------------------------------- the plan (no Ray)


def test_plan_names_outputs_under_out_and_refuses_bad_entries_alone(tmp_path: Path) -> None:
    from timar_blender.farm.plan import plan_batch
    from timar_blender.headless import parse_args

    agent, user = write_pair(tmp_path, 0)
    good = {"agent_audio": str(agent), "user_audio": str(user)}
    entries = [
        good,
        {**good, "smoothing": 99.0},
        {**good, "agent_audio": str(tmp_path / "missing.wav"), "out": "other.blend"},
        {"user_audio": str(user), "out": "third.blend"},
        {**good, "seed": 1},  # same default name as the first: line00.blend
        {**good, "stereo": True, "user_audio": "", "out": "sub/stereo.blend"},
    ]
    out = tmp_path / "out"
    plan = plan_batch(entries, parse_args(["--export-csv", "csv/{name}_{index}.csv"]), out, tmp_path / "b.json")
    assert plan[0].error is None and plan[0].key
    assert plan[0].outputs == {str(out / "line00_agent.blend"): "blend", str(out / "csv" / "line00_agent_1.csv"): "csv"}
    assert "smoothing: 99 is outside its range" in plan[1].error and "[dialogue 2]" in plan[1].error
    assert f"{tmp_path / 'missing.wav'}: agent audio file not found" in plan[2].error
    assert "agent_audio: the farm needs each dialogue's audio" in plan[3].error
    assert "is also written by dialogue 1" in plan[4].error
    assert plan[5].error is None and str(out / "sub" / "stereo.blend") in plan[5].outputs
    # the key follows the audio's content, not its path
    copy = tmp_path / "copy"
    copy.mkdir()
    a2, u2 = write_pair(copy, 0)
    moved = plan_batch([{"agent_audio": str(a2), "user_audio": str(u2)}], parse_args(["--export-csv",
                       "csv/{name}_{index}.csv"]), out, tmp_path / "b.json")
    assert moved[0].key == plan[0].key
    write_pair(copy, 0, seed=5)
    changed = plan_batch([{"agent_audio": str(a2), "user_audio": str(u2)}], parse_args(["--export-csv",
                         "csv/{name}_{index}.csv"]), out, tmp_path / "b.json")
    assert changed[0].key != plan[0].key
