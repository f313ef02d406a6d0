"""pipeline.options: one table of what a client may ask, the checks and messages built from it."""

from __future__ import annotations

import argparse

import pytest

from pipeline.options import OPTIONS, OptionError, argparse_type, check_options, describe_options


def test_every_option_has_its_bounds_and_a_default_inside_them():
    for option in OPTIONS.values():
        assert option.check(option.default) == option.default, option.name
        assert option.help and option.describe().endswith(f"(default {option.default!r})")
    assert OPTIONS["num_beams"].high <= 8 and OPTIONS["max_new_tokens"].high <= 60  # bounded work per request


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num_beams", 1000, "num_beams must be an integer from 1 to 8, got 1000"),
        ("max_new_tokens", 100000, "max_new_tokens must be an integer from 1 to 60, got 100000"),
        ("threshold", 5, "threshold must be a number from 0 to 1, got 5"),
        ("threshold", "abc", "threshold must be a number from 0 to 1, got 'abc'"),
        ("opacity", "abc", "opacity must be a number from 0 to 1, got 'abc'"),
        ("opacity", float("nan"), "opacity must be a number from 0 to 1, got nan"),
        ("num_beams", True, "num_beams must be an integer from 1 to 8, got True"),
        ("num_beams", 2.5, "num_beams must be an integer from 1 to 8, got 2.5"),
        (
            "subtask",
            "everything",
            "subtask must be one of 'all', 'instance', 'semantic', 'panoptic', got 'everything'",
        ),
        ("prompt", "x" * 201, "prompt must be a text of at most 200 characters, got 'a text of 201 characters'"),
        ("detail", None, "detail must be one of 'short', 'long', got None"),
    ],
)
def test_a_value_outside_the_table_names_the_option_the_value_and_the_range(name, value, message):
    with pytest.raises(OptionError) as caught:
        OPTIONS[name].check(value)
    assert str(caught.value) == message


def test_check_options_fills_defaults_and_refuses_what_is_not_a_mapping_or_unknown():
    assert check_options({"num_beams": 4.0}, ["num_beams", "opacity"]) == {"num_beams": 4, "opacity": 0.5}
    assert check_options(None, ["threshold"]) == {"threshold": 0.5}
    with pytest.raises(OptionError, match=r"options must be a JSON object of \['opacity'\], got list"):
        check_options([1, 2], ["opacity"])
    with pytest.raises(OptionError, match=r"unknown options \['colour'\]; accepted: \['opacity'\]"):
        check_options({"colour": 1}, ["opacity"])
    assert describe_options(["threshold"]) == "threshold: a number from 0 to 1 (default 0.5)"


def test_the_command_line_parses_with_the_same_bounds():
    assert argparse_type("num_beams")("3") == 3 and argparse_type("threshold")("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="must be an integer from 1 to 8, got '9'"):
        argparse_type("num_beams")("9")
