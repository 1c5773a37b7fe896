"""The corpus builder writes a DualTalk-format folder the project's own reader and trainer accept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_export.corpus.build import build
from model_export.data import load_conversation, load_flame56, scan_folder

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng sox flite)"
)


def test_corpus_is_dualtalk_format_with_motion_for_both_speakers(tmp_path: Path) -> None:
    summary = build(tmp_path, dialogues=2, seconds=12.0, seed=5)
    assert summary["dialogues"] == 2 and abs(summary["hours"] - 24 / 3600) < 1e-9
    assert json.loads((tmp_path / "corpus.json").read_text())["seed"] == 5
    report = scan_folder(tmp_path)  # strict: every speaker has audio and motion
    assert len(report.directions) == 4
    conv = load_conversation(report.directions[0])
    assert conv.agent_motion.shape == (300, 56) and conv.user_motion.shape == (300, 56)
    with np.load(tmp_path / "dlg00005_speaker1.npz") as z:  # DualTalk stores pose as [neck | jaw]
        m = load_flame56(tmp_path / "dlg00005_speaker1.npz")
        assert np.array_equal(m[:, 50:53], z["pose"][:, 3:6]) and np.array_equal(m[:, 53:56], z["pose"][:, 0:3])
    again = tmp_path / "again"
    build(again, dialogues=1, seconds=12.0, seed=5)
    assert np.array_equal(
        load_flame56(again / "dlg00005_speaker2.npz"), load_flame56(tmp_path / "dlg00005_speaker2.npz")
    )
