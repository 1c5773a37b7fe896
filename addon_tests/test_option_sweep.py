"""Recommended options chosen by measurement: the sweep ranks option sets by the behaviour goals missed."""

from __future__ import annotations

import pytest

from model_export import behaviour
from model_export.option_sweep import parse_grid, shortfall, sweep


def test_grid_values_are_checked_by_the_settings_table() -> None:
    assert parse_grid(["num_iter=1,4", "mask_history_agent=true,false"]) == {
        "num_iter": [1, 4],
        "mask_history_agent": [True, False],
    }
    with pytest.raises(SystemExit, match="OPTION=V1"):
        parse_grid(["nonsense=1"])
    with pytest.raises(ValueError, match="temperature"):
        parse_grid(["temperature=-3"])


def test_shortfall_is_zero_for_a_pass_and_relative_for_a_miss() -> None:
    assert shortfall("jitter_jaw", 5.0) == 0.0
    assert shortfall("jitter_jaw", 15.0) == pytest.approx(0.5)
    assert shortfall("r_jaw_db", 0.25) == pytest.approx(0.5)
    assert shortfall("r_jaw_db", None) == 0.0


def test_sweep_prefers_the_smoothing_that_removes_jitter() -> None:
    if not (behaviour.SHARED / "librispeech" / "test-other").is_dir():
        pytest.skip(f"{behaviour.SHARED}: fixtures absent (not in a fresh clone)")
    case = behaviour.one_sided_case("talking", 0, 20.0)
    rows = sweep("", {"smoothing": [0.0, 3.0]}, [case], [0, 1], threads=1, log=lambda s: None)
    raw = next(r for r in rows if r["options"]["smoothing"] == 0.0)
    smooth = next(r for r in rows if r["options"]["smoothing"] == 3.0)
    assert rows[0]["fails"] <= rows[1]["fails"]
    assert smooth["summary"]["jitter_jaw"]["max"] < raw["summary"]["jitter_jaw"]["max"]
