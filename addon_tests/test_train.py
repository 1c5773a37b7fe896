"""Real (small) training runs of ``python -m model_export.train``: the loss falls, the checkpoint
loads, a run resumes bit for bit, DDP with two processes works, progress is printed, and bad
data is reported clearly.

Everything uses the ``timar_cpu_tiny`` preset and a few dozen steps, so the file takes about
1.5 minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, write_dualtalk_folder

from model_export.checkpoint import load_checkpoint, read_checkpoint_file
from model_export.config import preset
from model_export.data import DataError
from model_export.train import main

TINY = ["--preset", "timar_cpu_tiny"]
# one thread per run: on a busy two-core machine, two OpenMP threads per process can stall for
# seconds per step; the losses are the same either way
ONE_THREAD = ["--threads", "1"]
PROGRESS = re.compile(
    r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss ([\d.]+) \(avg ([\d.]+)\) lr (\S+) ([\d.]+) windows/s eta \S+$",
    re.MULTILINE,
)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``--threads`` calls ``torch.set_num_threads``, which outlives an in-process ``main``."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _args(data: Path, out: Path, options: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), *TINY, *ONE_THREAD, *options.split()]


def _summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


def _assert_loss_falls_and_checkpoint_loads(out: Path, steps: int) -> None:
    s = _summary(out)
    assert s["steps"] == steps
    before, after = s["fixed_loss_before"], s["fixed_loss_after"]
    assert math.isfinite(before) and math.isfinite(after)
    assert after < 0.5 * before, f"fixed-draw loss only went from {before:.4f} to {after:.4f}"
    assert s["train_loss_last10"] < s["train_loss_first"]

    ckpt = load_checkpoint(out / "checkpoint-last.pth")
    assert ckpt.kind == "ours"
    assert ckpt.weights == "ema"
    assert ckpt.config == preset("timar_cpu_tiny")
    assert ckpt.raw["step"] == steps
    assert not ckpt.model.training
    # the loaded model carries the stored EMA weights, which lag behind the raw weights
    loaded = ckpt.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ckpt.raw["model_ema"].items())
    assert any(not torch.equal(ckpt.raw["model"][k], v) for k, v in ckpt.raw["model_ema"].items())
    assert set(ckpt.raw) >= {"model", "model_ema", "optimizer", "scaler", "epoch", "step", "rng", "config"}
    assert json.loads((out / "config.json").read_text()) == preset("timar_cpu_tiny").to_dict()


# ------------------------------------------------------------------------------ the loss falls
def test_loss_falls_on_demo_windows(demo_folder: Path, tmp_path: Path):
    out = tmp_path / "run"
    opts = "--allow-missing-motion --stride-turns 4 --batch-size 4 --lr 1e-3 --warmup-epochs 1 --max-steps 60"
    argv = _args(demo_folder, out, opts + " --log-every 20")
    assert main(argv) == 0
    _assert_loss_falls_and_checkpoint_loads(out, 60)


def test_loss_falls_on_synthetic_windows(synthetic_dualtalk: Path, tmp_path: Path):
    out = tmp_path / "run"
    opts = "--stride-turns 1 --batch-size 4 --lr 1e-3 --warmup-epochs 1 --max-steps 60 --log-every 20"
    argv = _args(synthetic_dualtalk, out, opts)
    assert main(argv) == 0
    _assert_loss_falls_and_checkpoint_loads(out, 60)


# ------------------------------------------------------------------------------ exact resume
def _tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a nested state (dicts and lists), keyed by its path."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        found[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.update(_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found.update(_tensors(v, f"{prefix}/{i}"))
    return found


def test_exact_resume(synthetic_dualtalk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # 2 clips x 2 directions x 3 windows (8 s windows, stride 1 s, 10-s clips) = 12 windows;
    # batch 3 -> 4 steps per epoch. Run A goes 7 steps straight; run B stops at step 3 (mid epoch 1),
    # resumes to step 5 (across the epoch boundary, stopping mid epoch 2), then resumes to step 7.
    # Warm-up over one epoch makes the lr change every step, dropout (proj_dropout) and the MAR
    # masks / diffusion noise draw from the global RNG, and the EMA decay ramps with the step.
    opts = "--stride-turns 1 --batch-size 3 --lr 1e-3 --warmup-epochs 1 --log-every 1 --save-every 1"
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_args(synthetic_dualtalk, a, opts + " --max-steps 7")) == 0
    assert "4 steps/epoch" in capsys.readouterr().out
    assert main(_args(synthetic_dualtalk, b, opts + " --max-steps 3")) == 0
    step3 = read_checkpoint_file(b / "checkpoint-last.pth")
    assert (step3["step"], step3["epoch"]) == (3, 0)
    capsys.readouterr()
    assert main(_args(synthetic_dualtalk, b, opts + " --max-steps 5 --resume auto")) == 0
    assert "at epoch 1 step 3" in capsys.readouterr().out
    assert read_checkpoint_file(b / "checkpoint-last.pth")["step"] == 5
    # the explicit-path form of --resume, into a fresh folder
    c = tmp_path / "c"
    argv = [*_args(synthetic_dualtalk, c, opts + " --max-steps 7"), "--resume", str(b / "checkpoint-last.pth")]
    assert main(argv) == 0
    assert "at epoch 2 step 5" in capsys.readouterr().out

    ca = read_checkpoint_file(a / "checkpoint-last.pth")
    cc = read_checkpoint_file(c / "checkpoint-last.pth")
    assert ca["step"] == cc["step"] == 7
    assert ca["epoch"] == cc["epoch"] == 1
    for key in ("model", "model_ema", "optimizer"):
        ta, tc = _tensors(ca[key]), _tensors(cc[key])
        assert ta.keys() == tc.keys(), key
        assert ta, key
        differ = [k for k in ta if not torch.equal(ta[k], tc[k])]
        assert not differ, f"{key}: resumed run differs from the straight run in {differ[:5]}"
    assert ca["optimizer"]["param_groups"] == cc["optimizer"]["param_groups"]
    assert torch.equal(ca["rng"][0]["torch"], cc["rng"][0]["torch"])
    # and the comparison is not vacuous: steps 4-7 changed every kind of state
    for key in ("model", "model_ema", "optimizer"):
        t3, ta = _tensors(step3[key]), _tensors(ca[key])
        assert any(not torch.equal(t3[k], ta[k]) for k in ta), key


# ------------------------------------------------------------------------------ DDP
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_two_processes(synthetic_dualtalk: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        OMP_NUM_THREADS="1",
    )
    env.pop("WORLD_SIZE", None)
    opts = "--stride-turns 1 --batch-size 3 --lr 1e-3 --warmup-epochs 1 --max-steps 4 --log-every 2"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*torchrun, "-m", "model_export.train", *_args(synthetic_dualtalk, out, opts)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr}"
    # 12 windows shared by 2 processes, 3 per batch: 2 steps per epoch; only rank 0 prints
    assert "batch 3 x 2 process(es)" in proc.stdout
    assert "2 steps/epoch" in proc.stdout
    assert proc.stdout.count("model 64x2") == 1
    steps = [int(m.group(3)) for m in PROGRESS.finditer(proc.stdout)]
    assert steps == [2, 4]
    ckpt = read_checkpoint_file(out / "checkpoint-last.pth")
    assert ckpt["step"] == 4
    assert len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # each rank seeds its own stream
    # DDP state dicts are saved from the bare module: no "module." prefix, so the checkpoint loads
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert load_checkpoint(out / "checkpoint-last.pth").kind == "ours"
    s = _summary(out)
    assert s["steps"] == 4
    for k in ("fixed_loss_before", "fixed_loss_after", "train_loss_first", "train_loss_last10"):
        assert math.isfinite(s[k]), (k, s[k])


# ------------------------------------------------------------------------------ progress output
def test_progress_lines(synthetic_dualtalk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    argv = _args(synthetic_dualtalk, out, "--batch-size 2 --lr 1e-3 --warmup-epochs 1 --max-steps 5 --log-every 2")
    assert main(argv) == 0
    text = capsys.readouterr().out
    # 4 windows (one 8-s window per direction), batch 2 -> 2 steps per epoch
    assert "4 windows of 8 s, batch 2 x 1 process(es), lr 1.00e-03, 2 steps/epoch" in text
    assert re.search(r"fixed-draw loss before training: \d+\.\d{4}", text)
    assert re.search(r"fixed-draw loss after training: \d+\.\d{4} \(before: \d+\.\d{4}\)", text)
    lines = list(PROGRESS.finditer(text))
    # every --log-every steps, and always the last step
    assert [int(m.group(3)) for m in lines] == [2, 4, 5]
    assert all(int(m.group(4)) == 5 for m in lines)
    assert [int(m.group(1)) for m in lines] == [1, 2, 3]  # epoch of each step (2 steps per epoch)
    for m in lines:
        assert math.isfinite(float(m.group(5))) and float(m.group(8)) > 0
    # lr warms up linearly over the first epoch, then stays at --lr
    assert [float(m.group(7)) for m in lines] == pytest.approx([5e-4, 1e-3, 1e-3])
    # the summary's training losses agree with the lines: each line gives its step's loss and the mean
    # of the last two, so the five losses can be read back (to the printed 4 decimals)
    (l2, a12), (l4, a34), (l5, a45) = ((float(m.group(5)), float(m.group(6))) for m in lines)
    l1, l3 = 2 * a12 - l2, 2 * a34 - l4
    assert a45 == pytest.approx((l4 + l5) / 2, abs=1e-4)
    s = _summary(out)
    assert s["train_loss_first"] == pytest.approx(l1, abs=2e-4)
    assert s["train_loss_last10"] == pytest.approx((l1 + l2 + l3 + l4 + l5) / 5, abs=2e-4)


# ------------------------------------------------------------------------------ bad input
def test_missing_partner_wav_raises_data_error(tmp_path: Path):
    folder = write_dualtalk_folder(tmp_path / "dt", clips=2, seconds=9.0)
    missing = folder / "clip1_speaker2.wav"
    missing.unlink()
    with pytest.raises(DataError, match=re.escape(str(missing))):
        main(_args(folder, tmp_path / "run", "--max-steps 1"))
    assert not (tmp_path / "run" / "checkpoint-last.pth").exists()


def test_clips_shorter_than_window_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = write_dualtalk_folder(tmp_path / "dt", clips=1, seconds=5.0)  # 5 s < the 8-s window
    out = tmp_path / "run"
    assert main(_args(folder, out, "--max-steps 1")) == 2
    err = capsys.readouterr().err
    assert "error: no training windows" in err
    assert "shorter than one 8-s window (longest 5.0 s" in err
    assert not (out / "checkpoint-last.pth").exists()
    # a window that fits makes the same clips usable
    assert main(_args(folder, out, "--max-steps 1 --window-turns 4")) == 0
    assert (out / "checkpoint-last.pth").exists()


def test_cosine_lr_schedule():
    import itertools

    from model_export.train import lr_at

    assert lr_at(0.5, 1e-3, 1.0) == pytest.approx(5e-4)  # warm-up is unchanged
    assert lr_at(2.0, 1e-3, 1.0) == 1e-3  # constant after warm-up without --cosine (the paper)
    assert lr_at(2.0, 1e-3, 1.0, decay=1e-9) == pytest.approx(1e-3)
    assert lr_at(2.0, 1e-3, 1.0, decay=0.5) == pytest.approx(5.5e-4)
    assert lr_at(2.0, 1e-3, 1.0, decay=1.0) == pytest.approx(1e-4)
    values = [lr_at(2.0, 1e-3, 1.0, decay=k / 20) for k in range(1, 21)]
    assert all(a > b for a, b in itertools.pairwise(values))
