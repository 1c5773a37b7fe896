"""Shared test fixtures: paths to ../shared (skipping when a fresh clone lacks it), a small
synthetic DualTalk-format folder written on the fly, and the add-on registered in bpy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model_export.synthetic import synth_motion, synth_speech, write_dualtalk_folder  # noqa: E402

__all__ = ["synth_motion", "synth_speech", "write_dualtalk_folder"]

SHARED = ROOT.parent / "shared" / "fixtures"
OFFICIAL_TINY = SHARED / "official_timar_tiny"
DEMO = SHARED / "dualtalk_demo"
LARGE_LAYOUT = SHARED / "official_timar_large_layout.json"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared fixtures)")
    return path


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    return need_shared(OFFICIAL_TINY)


@pytest.fixture(scope="session")
def demo_folder() -> Path:
    return need_shared(DEMO)


@pytest.fixture
def synthetic_dualtalk(tmp_path: Path) -> Path:
    return write_dualtalk_folder(tmp_path / "dualtalk")


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads() -> None:
    # two cores: keep torch from oversubscribing when pytest runs alongside other work
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def blender_addon():
    """The add-on registered in bpy for one test module (``pytestmark = pytest.mark.usefixtures(...)``
    after ``blender_helpers.import_bpy()``); skips without the bundled model."""
    import timar_blender
    from timar_blender.engine import job

    if not job.BUNDLED_MODEL.joinpath("manifest.json").exists():
        pytest.skip("no bundled model in timar_blender/model")
    timar_blender.register()
    yield
    timar_blender.unregister()
