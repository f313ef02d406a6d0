"""pipeline.serve.options: the served app's option table, derived from the pipelines' declarations."""

from __future__ import annotations

import pytest

from pipeline.captioning import CAPTION_OPTIONS
from pipeline.describe import DESCRIBE_OPTIONS
from pipeline.options import OptionError
from pipeline.render import DRAW_OPTIONS
from pipeline.segmentation import SEGMENT_OPTIONS
from pipeline.serve.options import OPTIONS, check_options, client_defaults, describe_options


def test_the_table_is_the_public_declarations_and_nothing_else():
    declared = {o.name: o for o in (*CAPTION_OPTIONS, *SEGMENT_OPTIONS, *DESCRIBE_OPTIONS, *DRAW_OPTIONS)}
    assert OPTIONS == {name: option for name, option in declared.items() if option.public}
    assert {"generate_kwargs", "mask_format", "sentence"}.isdisjoint(OPTIONS)  # not a client's to set
    assert OPTIONS["num_beams"].bounds(bounded=True) == (1, 8)  # bounded work per request
    assert OPTIONS["max_new_tokens"].bounds(bounded=True) == (1, 60)


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
        ("num_beams", 10**400, "num_beams must be an integer from 1 to 8, got 'an integer of 401 digits'"),
        ("threshold", -(10**400), "threshold must be a number from 0 to 1, got 'an integer of 401 digits'"),
    ],
)
def test_a_value_outside_the_table_names_the_option_the_value_and_the_range(name, value, message):
    with pytest.raises(OptionError) as caught:
        check_options({name: value}, [name])
    assert str(caught.value) == message


def test_check_options_fills_defaults_and_refuses_what_is_not_a_mapping_or_unknown():
    assert check_options({"num_beams": 4.0}, ["num_beams", "opacity"]) == {"num_beams": 4, "opacity": 0.5}
    assert check_options(None, ["threshold", "subtask"]) == {"threshold": 0.5, "subtask": None}
    assert check_options({"subtask": "all"}, ["subtask"]) == {"subtask": None}
    with pytest.raises(OptionError, match=r"options must be a JSON object of \['opacity'\], got list"):
        check_options([1, 2], ["opacity"])
    with pytest.raises(OptionError, match=r"unknown options \['colour'\]; accepted: \['opacity'\]"):
        check_options({"colour": 1}, ["opacity"])
    assert describe_options(["threshold"]) == "threshold: a number from 0 to 1 (default 0.5)"
    assert client_defaults(["subtask", "max_objects"]) == {"subtask": "all", "max_objects": 10}
