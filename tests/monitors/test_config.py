"""The ``[monitors]`` table: every problem reported at once, each naming its TOML path."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trustgrpo.config import field_docs, from_dict
from trustgrpo.errors import ConfigError
from trustgrpo.monitors import (
    DETECTOR_CLASSES,
    DETECTORS,
    MonitorsConfig,
    build_callback,
    check_config,
    load_config,
    reference_markdown,
)
from trustgrpo.trainer import Trainer


def test_public_api() -> None:
    import trustgrpo.monitors as monitors

    assert sorted(monitors.__all__) == sorted(set(monitors.__all__))
    for name in monitors.__all__:
        assert hasattr(monitors, name), name


def test_defaults_are_on_and_valid() -> None:
    cfg = load_config({})
    assert cfg.enabled and cfg == MonitorsConfig()
    assert check_config({}) == []
    assert [c.name for c in DETECTOR_CLASSES] == list(DETECTORS)


def test_every_field_has_a_docstring_and_every_detector_an_action_reason() -> None:
    for cls in [MonitorsConfig, *DETECTORS.values()]:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name not in DETECTORS:
                assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
        if cls is not MonitorsConfig:
            assert {"enabled", "action"} <= set(docs)
    table = reference_markdown()
    for name, cls in DETECTORS.items():
        assert f"[monitors.{name}]" in table
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in table


def test_every_problem_is_reported_with_its_path() -> None:
    problems = check_config(
        {
            "cooldown_steps": 0,
            "max_action": "stop",
            "lenght_bias": {},
            "length_bias": {"threshold": 2, "windw": 5, "action": "panic"},
            "saturation": {"enabled": "yes"},
            "component_dominance": {"accuracy": "numeric"},
            "held_out": {"verifier": "exact"},
            "group_bias": 3,
        }
    )
    assert "monitors.cooldown_steps: expected an integer ≥ 1, got 0" in problems
    assert any(p.startswith("monitors.max_action: expected one of 'warn'") for p in problems)
    assert "monitors.lenght_bias: unknown key (did you mean monitors.length_bias?)" in problems
    assert "monitors.length_bias.threshold: expected a number ≥ 0 and ≤ 1, got 2" in problems
    assert (
        "monitors.length_bias.windw: unknown key (did you mean monitors.length_bias.window?)"
        in (problems)
    )
    assert any(p.startswith("monitors.length_bias.action: expected one of") for p in problems)
    assert "monitors.saturation.enabled: expected true or false, got 'yes'" in problems
    assert (
        "monitors.component_dominance.accuracy: expected a list of strings, got 'numeric'"
        in problems
    )
    assert "monitors.held_out.verifier: expected a table, got 'exact'" in problems
    assert "monitors.group_bias: expected a table, got 3" in problems
    assert len(problems) == 10


def test_held_out_verifier_is_checked_like_a_verifiers_table() -> None:
    problems = check_config({"held_out": {"verifier": {"type": "exakt"}}})
    assert len(problems) == 1
    assert problems[0].startswith("monitors.held_out.verifier.type: unknown verifier type")
    assert "did you mean 'exact'" in problems[0]
    assert check_config({"held_out": {"verifier": {}}}) == []  # empty: the detector is off
    assert check_config({"held_out": {"verifier": {"weight": 1}}}) == [
        'monitors.held_out.verifier.type: missing (the held-out verifier, e.g. "exact")'
    ]


def test_run_file_errors_name_the_monitor_field(tiny: Callable[..., dict[str, Any]]) -> None:
    raw = tiny(monitors={"length_bias": {"threshold": 2}})
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    assert info.value.problems == [
        "monitors.length_bias.threshold: expected a number ≥ 0 and ≤ 1, got 2"
    ]


def test_disabled_monitors_add_no_callback(tiny: Callable[..., dict[str, Any]]) -> None:
    off = Trainer(from_dict(tiny(monitors={"enabled": False})), progress=False)
    assert off.monitors == []
    on = Trainer(from_dict(tiny(name="on")), progress=False)
    assert len(on.monitors) == 1
    assert build_callback(on.config, on) is not None


def test_missing_monitor_files_name_the_field(
    tiny: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    raw = tiny(monitors={"canaries": {"file": "nope.jsonl"}})
    with pytest.raises(ConfigError, match=r"monitors\.canaries\.file: file not found: nope"):
        Trainer(from_dict(raw), progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "0"}\n')
    raw = tiny(name="b", monitors={"probe_drift": {"file": str(bad)}})
    with pytest.raises(ConfigError, match=r"monitors\.probe_drift\.file: .* row 0: .*completion"):
        Trainer(from_dict(raw), progress=False)
    raw = tiny(
        name="c",
        monitors={"component_dominance": {"accuracy": ["acc"]}},
        verifiers=[
            {"type": "numeric", "extract": "full"},
            {"type": "regex", "pattern": "[01]", "name": "fmt"},
        ],
    )
    with pytest.raises(ConfigError, match=r"accuracy: unknown component 'acc'"):
        Trainer(from_dict(raw), progress=False)
