#!/usr/bin/env python3
"""Render a frame strip of the demo head animated by the bundled model (for the README).

    .venv/bin/python scripts/render_demo_head.py [--agent a.wav --user u.wav] [--out docs/demo_head_strip.png]

Add Demo Head -> Generate with the bundled model on a real DualTalk demo conversation (from
../shared/fixtures when present, otherwise synthetic speech), then Workbench renders of six frames,
three where the character talks and three where it listens (picked by the two tracks' loudness),
side by side, each labelled with its time and jawOpen value.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECONDS, RATE = 12.0, 16_000
DEMO = ROOT.parent / "shared" / "fixtures" / "dualtalk_demo" / "xkHwlcDSOjc_sub_video_109_000_speaker"


def _speech(folder: Path) -> tuple[str, str]:
    if DEMO.with_name(DEMO.name + "1.wav").is_file():
        return str(DEMO.with_name(DEMO.name + "1.wav")), str(DEMO.with_name(DEMO.name + "2.wav"))
    import soundfile as sf

    from model_export.synthetic import synth_speech

    agent, user = folder / "agent.wav", folder / "user.wav"
    sf.write(agent, synth_speech(SECONDS, RATE, 1, [(0.3, 4.0), (8.0, 11.5)]), RATE)
    sf.write(user, synth_speech(SECONDS, RATE, 2, [(4.4, 7.6)]), RATE)
    return str(agent), str(user)


def _pick_times(agent: str, user: str, seconds: float) -> list[tuple[float, str]]:
    """Three times where only the agent is loud ("talking") and three where only the user is."""
    from timar_blender.engine.audio import load_audio

    hop = 1600  # 0.1 s at 16 kHz
    a, u = load_audio(agent), load_audio(user)
    n = int(min(len(a), len(u), seconds * 16000)) // hop
    rms = [np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)) for x in (a, u)]
    level = [r / (np.percentile(r, 95) + 1e-9) for r in rms]
    picks = []
    for who, me, other in (("talking", level[0], level[1]), ("listening", level[1], level[0])):
        ok = np.nonzero((me > 0.3) & (other < 0.1))[0][5:-5]
        if len(ok) == 0:
            ok = np.arange(5, n - 5)
        picks += [((i + 0.5) * hop / 16000, who) for i in ok[np.linspace(0, len(ok) - 1, 3).astype(int)]]
    return sorted(picks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", help="the character's speech (default: the DualTalk demo, else synthetic)")
    p.add_argument("--user", help="the other person's speech")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoothing", type=float, default=None,
                   help="the panel's Smoothing, in model frames (default: the bundled model's recommendation)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_head_strip.png")
    args = p.parse_args()

    import bpy
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import timar_blender
    from addon_tests.blender_helpers import new_scene, render_still
    from timar_blender.blender import keyframes

    tmp = Path(tempfile.mkdtemp(prefix="timar-strip-"))
    agent, user = (args.agent, args.user) if args.agent and args.user else _speech(tmp)
    timar_blender.register()
    extra = {} if args.smoothing is None else {"smoothing": args.smoothing}
    scene = new_scene("add_demo_head", agent_audio=agent, user_audio=user, seed=args.seed, add_sound=False, **extra)
    s = scene.timar
    assert bpy.ops.timar.generate() == {"FINISHED"}
    print(s.last_report)
    fps = keyframes.scene_fps(scene)
    key = s.character.data.shape_keys
    r = scene.render
    r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage = "BLENDER_WORKBENCH", 300, 340, 100
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "MATERIAL"
    scene.display.shading.show_cavity = True
    scene.view_settings.view_transform = "Standard"
    scene.camera.data.lens = 85.0
    scene.world = scene.world or bpy.data.worlds.new("TIMAR Strip")
    scene.world.color = (0.62, 0.66, 0.72)
    fig, axes = plt.subplots(1, 6, figsize=(12, 2.45), dpi=100)
    for ax, (t, who) in zip(axes, _pick_times(agent, user, (scene.frame_end - s.start_frame) / fps), strict=True):
        frame = s.start_frame + round(t * fps)
        img = render_still(scene, frame, tmp / f"f{frame}.png")
        jaw = key.key_blocks["jawOpen"].value
        ax.imshow(img[10:-10, 20:-20])
        ax.set_title(f"{t:.1f} s {who}\njawOpen {jaw:.2f}", fontsize=9)
        ax.axis("off")
    fig.subplots_adjust(left=0.005, right=0.995, top=0.84, bottom=0.0, wspace=0.03)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, facecolor="white")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
