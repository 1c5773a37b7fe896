"""Train TIMAR on DualTalk-format folders.

    python -m model_export.train --data DIR --out RUN --preset timar_cpu_small --epochs 50
    torchrun --nproc_per_node=N -m model_export.train ...   # DDP (gloo on CPU, nccl on CUDA)

The paper's recipe: AdamW (0.9, 0.95), weight decay 0.02 except biases, 1-D parameters and the
diffusion head; lr = blr x batch / 256 with linear warm-up then constant; gradient clipping 3.0;
EMA of the weights; AMP on CUDA. Checkpoints are written periodically and atomically, and a run
resumes exactly (model, EMA, optimizer, scaler, RNG states, position in the epoch).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_file, save_checkpoint
from .config import MOTION_STD_FLOOR, PRESET_NAMES, TimarConfig, preset
from .data import WindowDataset, load_conversation, scan_folder
from .model import Timar
from .speech import build_speech_features, logmel_gain

log = logging.getLogger("model_export.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model_export.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="DualTalk-format folder(s)")
    p.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and logs")
    p.add_argument("--preset", choices=PRESET_NAMES, default="timar_cpu_small")
    p.add_argument("--config", type=Path, help="JSON of TimarConfig fields overriding the preset")
    p.add_argument("--wav2vec2", type=Path, help="local wav2vec2 folder (wav2vec2 speech encoder only)")
    p.add_argument("--init", type=Path, help="start from this checkpoint's weights (official or ours)")
    p.add_argument("--resume", type=str, default="", help="checkpoint to resume, or 'auto' for RUN/checkpoint-last.pth")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--blr", type=float, default=1e-4, help="base lr; lr = blr * global batch / 256")
    p.add_argument("--lr", type=float, default=None, help="absolute lr (overrides --blr)")
    p.add_argument("--warmup-epochs", type=float, default=100)
    p.add_argument(
        "--cosine",
        action="store_true",
        help="after warm-up, decay the lr along a cosine to 10%% at the last step (needs --max-steps or --epochs)",
    )
    p.add_argument("--weight-decay", type=float, default=0.02)
    p.add_argument("--grad-clip", type=float, default=3.0)
    p.add_argument("--ema-rate", type=float, default=0.9999)
    p.add_argument(
        "--no-ema-warmup",
        action="store_true",
        help="use the fixed EMA rate from step 0 (default ramps it as min(rate, (1+s)/(10+s)))",
    )
    p.add_argument("--window-turns", type=int, default=0, help="turns per sample (default: the model's context)")
    p.add_argument("--stride-turns", type=int, default=0, help="window stride in turns (default: window length)")
    p.add_argument(
        "--allow-missing-motion",
        action="store_true",
        help="accept conversations where a speaker has no .npz (skipped as agent; unknown as user)",
    )
    p.add_argument("--save-every", type=int, default=5, help="epochs between checkpoints")
    p.add_argument("--save-every-steps", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=20, help="steps between progress lines")
    p.add_argument("--seed", type=int, default=6666)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto", help="mixed precision on CUDA")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- helpers
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No decay on biases, 1-D parameters and the diffusion head (the paper's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or name.endswith(".bias") or "diffloss" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def lr_at(epoch_float: float, base_lr: float, warmup_epochs: float, decay: float = 0.0) -> float:
    """Linear warm-up, then constant (the paper) or, with ``decay`` = fraction of the run done after
    warm-up in (0, 1], a cosine decay to 10 % of the base rate (for fixed-budget CPU runs)."""
    if epoch_float < warmup_epochs:
        return base_lr * epoch_float / warmup_epochs
    if decay <= 0.0:
        return base_lr
    return base_lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(decay, 1.0))))


def ema_decay(rate: float, step: int, warmup: bool) -> float:
    return min(rate, (1 + step) / (10 + step)) if warmup else rate


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    for e, p in zip(ema, params):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def motion_statistics(convs: list, floor: float = MOTION_STD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (floored) of every agent frame of the training conversations (each
    conversation appears in both directions, so this covers every speaker)."""
    frames = np.concatenate([c.agent_motion for c in convs if c.agent_motion is not None]).astype(np.float64)
    return frames.mean(0), np.maximum(frames.std(0), floor)


def jitter_gain(user: torch.Tensor, agent: torch.Tensor, cfg: TimarConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached log-mel features (B, C, L, n_mels) of both tracks, each track of each sample made
    U(-audio_gain_jitter_db, +audio_gain_jitter_db) dB louder (one gain for the whole window, drawn
    from the global RNG, which a resume restores)."""
    x = cfg.audio_gain_jitter_db
    gains = (torch.rand(2, user.shape[0], 1, 1, 1) * 2 - 1) * x
    return logmel_gain(user, gains[0].to(user.device)), logmel_gain(agent, gains[1].to(agent.device))


def build_config(args: argparse.Namespace) -> TimarConfig:
    overrides = json.loads(args.config.read_text()) if args.config else {}
    return preset(args.preset, **overrides)


@torch.no_grad()
def fixed_loss(model: Timar, dataset: WindowDataset, device: torch.device, windows: int = 32, seed: int = 0) -> float:
    """Loss on the first ``windows`` windows with fixed masks, timesteps and noise (eval mode):
    a steady yardstick, unlike the training loss whose random timesteps make it jump."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        n = min(windows, len(dataset))
        b = torch.utils.data.default_collate([dataset[i] for i in range(n)])
        b = {k: v.to(device) for k, v in b.items()}
        # many draws of t per frame, so the rare small-t terms average out
        loss = float(
            np.mean(
                [
                    model(
                        b["user_speech"],
                        b["agent_speech"],
                        b["user_motion"],
                        b["agent_motion"],
                        b["user_motion_present"],
                    ).item()
                    for _ in range(8)
                ]
            )
        )
    model.train(was_training)
    return loss


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Progress:
    """One progress line per ``every`` steps: loss, lr, throughput, ETA."""

    def __init__(self, every: int, total_steps: int, enabled: bool) -> None:
        self.every, self.total, self.enabled = every, total_steps, enabled
        self.t0, self.window_t, self.window_n, self.losses = time.time(), time.time(), 0, []

    def update(self, step: int, epoch: int, epochs: int, loss: float, lr: float, samples: int) -> None:
        self.losses.append(loss)
        self.window_n += samples
        if not self.enabled or (step % self.every and step != self.total):
            return
        now = time.time()
        rate = self.window_n / max(now - self.window_t, 1e-9)
        eta = (self.total - step) * (now - self.t0) / max(step, 1)
        avg = float(np.mean(self.losses[-self.every :]))
        print(
            f"epoch {epoch + 1}/{epochs} step {step}/{self.total} loss {loss:.4f} (avg {avg:.4f}) "
            f"lr {lr:.2e} {rate:.1f} windows/s eta {time.strftime('%H:%M:%S', time.gmtime(eta))}",
            flush=True,
        )
        self.window_t, self.window_n = now, 0


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device(args.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
    else:
        rank, world = 0, 1
    main_proc = rank == 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)

    # ---- model (fresh, initialised from a checkpoint, or resumed)
    resume_path = (
        args.out / "checkpoint-last.pth" if args.resume == "auto" else Path(args.resume) if args.resume else None
    )
    if resume_path is not None and args.resume == "auto" and not resume_path.exists():
        resume_path = None
    state: dict[str, Any] | None = None
    if resume_path is not None:
        state = read_checkpoint_file(resume_path)
        cfg = TimarConfig.from_dict(state["config"])
    elif args.init is not None:
        cfg = load_checkpoint(args.init).config
        if args.config:  # training-recipe fields (e.g. mask_ratio_min) on top of the initial model's
            cfg = TimarConfig.from_dict({**cfg.to_dict(), **json.loads(args.config.read_text())})
    else:
        cfg = build_config(args)
    speech_features = build_speech_features(cfg, args.wav2vec2)

    # ---- data
    convs = []
    for folder in args.data:
        report = scan_folder(folder, allow_missing_motion=args.allow_missing_motion)
        convs += [
            load_conversation(d, cfg.motion_fps, cfg.speech_rate, cfg.audio_normalization) for d in report.directions
        ]
    if cfg.motion_norm and cfg.motion_mean is None:
        # a fresh normalised model (or one initialised from a raw-unit model): statistics of this data;
        # a resumed or initialised normalised model keeps the ones it was trained with
        mean, std = motion_statistics(convs)
        cfg = cfg.replace(motion_mean=tuple(mean.tolist()), motion_std=tuple(std.tolist()))
        if main_proc:
            print(f"motion normalisation from {sum(len(c.agent_motion) for c in convs)} agent frames: "
                  f"std exp {std[:50].mean():.3f} jaw {std[50:53].mean():.4f} neck {std[53:56].mean():.4f} "
                  f"(floor {MOTION_STD_FLOOR})", flush=True)
    model = Timar(cfg).to(device)
    if args.init is not None and state is None:
        model.load_state_dict(load_checkpoint(args.init, use_ema=True).model.state_dict())
    window = args.window_turns or cfg.max_context_turns
    dataset = WindowDataset(
        convs,
        speech_features,
        samples_per_turn=cfg.samples_per_turn,
        frames_per_turn=cfg.frames_per_turn,
        window_turns=window,
        stride_turns=args.stride_turns or None,
    )
    if len(dataset) == 0:
        longest = max((len(c.agent_audio) / cfg.speech_rate for c in convs), default=0.0)
        print(f"error: no training windows: every clip is shorter than one {window}-s window "
              f"(longest {longest:.1f} s; see --window-turns)", file=sys.stderr)
        return 2
    batch = min(args.batch_size, len(dataset) // world) or 1
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    # the loader gets its own generator so that starting an epoch never draws from the global RNG
    # (which drives masking and noise and is restored on resume)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        drop_last=True,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    steps_per_epoch = len(loader)

    # ---- optimisation
    lr = args.lr if args.lr is not None else args.blr * batch * world / 256
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=lr, betas=(0.9, 0.95))
    amp = args.amp if device.type == "cuda" else "off"
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
        if amp != "off"
        else nullcontext()
    )
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    ema = [p.detach().clone() for p in params]
    epoch0, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        for e, n in zip(ema, names):
            e.copy_(state["model_ema"][n])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        epoch0, step = int(state["epoch"]), int(state["step"])
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        if main_proc:
            print(f"resumed {resume_path} at epoch {epoch0 + 1} step {step}", flush=True)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    total = steps_per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    if main_proc:
        n_params = sum(p.numel() for p in params)
        print(
            f"model {cfg.width}x{cfg.depth} ({n_params / 1e6:.2f} M trainable), {len(dataset)} windows of "
            f"{window} s, batch {batch} x {world} process(es), lr {lr:.2e}, {steps_per_epoch} steps/epoch, "
            f"device {device}, amp {amp}",
            flush=True,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    progress = Progress(args.log_every, total, main_proc)
    start_loss = fixed_loss(model, dataset, device) if main_proc else float("nan")
    if main_proc:
        print(f"fixed-draw loss before training: {start_loss:.4f}", flush=True)

    def save(epoch_done: int, name: str) -> None:
        rngs = [rng_state()]
        if distributed:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not main_proc:
            return
        train_args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        train_args["data"] = [str(d) for d in args.data]
        save_checkpoint(
            args.out / name,
            cfg,
            model.state_dict(),
            dict(zip(names, [e.clone() for e in ema])),
            optimizer=optimizer.state_dict(),
            scaler=scaler.state_dict(),
            epoch=epoch_done,
            step=step,
            rng=rngs,
            train_args=train_args,
        )

    model.train()
    epoch = epoch0
    while step < total:
        epoch = step // steps_per_epoch
        sampler.set_epoch(epoch)
        skip = step - epoch * steps_per_epoch  # resume mid-epoch: same order, skip what was done
        for i, b in enumerate(loader):
            if i < skip:
                continue
            ef = epoch + i / steps_per_epoch
            warm = args.warmup_epochs * steps_per_epoch
            decay = (step - warm) / max(total - warm, 1) if args.cosine and step >= warm else 0.0
            cur_lr = lr_at(ef, lr, args.warmup_epochs, decay)
            for g in optimizer.param_groups:
                g["lr"] = cur_lr
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            if cfg.audio_gain_jitter_db:
                b["user_speech"], b["agent_speech"] = jitter_gain(b["user_speech"], b["agent_speech"], cfg)
            with autocast:
                loss = ddp_model(
                    b["user_speech"], b["agent_speech"], b["user_motion"], b["agent_motion"], b["user_motion_present"]
                )
            value = float(loss.item())
            if not math.isfinite(value):
                print(f"error: loss is {value} at step {step}; stopping", file=sys.stderr)
                return 1
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if args.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            update_ema(ema, params, ema_decay(args.ema_rate, step, not args.no_ema_warmup))
            step += 1
            progress.update(step, epoch, args.epochs, value, cur_lr, batch * world)
            if args.save_every_steps and step % args.save_every_steps == 0:
                save(step // steps_per_epoch, "checkpoint-last.pth")
            if step >= total:
                break
        done_epoch = step // steps_per_epoch
        if step >= total or (done_epoch % args.save_every == 0 and step % steps_per_epoch == 0):
            save(done_epoch, "checkpoint-last.pth")
            if main_proc and step % steps_per_epoch == 0:
                print(f"saved {args.out / 'checkpoint-last.pth'} (epoch {done_epoch})", flush=True)
    if main_proc:
        end_loss = fixed_loss(model, dataset, device)
        print(f"fixed-draw loss after training: {end_loss:.4f} (before: {start_loss:.4f})", flush=True)
        losses = progress.losses
        summary = {
            "steps": step,
            "fixed_loss_before": start_loss,
            "fixed_loss_after": end_loss,
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last10": float(np.mean(losses[-10:])) if losses else None,
        }
        (args.out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckpointError as exc:  # one line naming the file, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
