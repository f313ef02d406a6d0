"""pipeline.options: each call option declared once, the one check, the hooks' split and the command line's flags."""

from __future__ import annotations

import argparse

import pytest

from pipeline import CaptionPipeline, ImageAnalysisPipeline, SegmentationPipeline
from pipeline.captioning import CAPTION_OPTIONS
from pipeline.describe import DESCRIBE_OPTIONS
from pipeline.options import Option, OptionError, add_option_flags, argparse_type, by_name, split_by_hook
from pipeline.render import DRAW_OPTIONS
from pipeline.segmentation import SEGMENT_OPTIONS

DECLARED = (*CAPTION_OPTIONS, *SEGMENT_OPTIONS, *DESCRIBE_OPTIONS, *DRAW_OPTIONS)


def test_every_declaration_has_help_and_a_default_its_own_check_accepts():
    for option in DECLARED:
        assert option.help, option.name
        assert option.check(option.default) == option.default, option.name
        if option.public:
            assert option.check(option.client_default, bounded=True) == option.default, option.name


def test_each_pipeline_takes_exactly_its_declarations():
    assert set(CaptionPipeline.call_options) == {option.name for option in CAPTION_OPTIONS}
    assert set(SegmentationPipeline.call_options) == {option.name for option in SEGMENT_OPTIONS}
    combined = {option.name for option in (*CAPTION_OPTIONS, *SEGMENT_OPTIONS, *DESCRIBE_OPTIONS)}
    assert set(ImageAnalysisPipeline.call_options) == combined


def test_the_library_is_permissive_and_the_bounded_form_is_not():
    beams = by_name(CAPTION_OPTIONS)["num_beams"]
    assert beams.check(20) == 20  # the library trusts its caller
    with pytest.raises(OptionError, match="num_beams must be an integer from 1 to 8, got 20"):
        beams.check(20, bounded=True)
    with pytest.raises(OptionError, match="num_beams must be an integer of at least 1, got 0"):
        beams.check(0)
    prompt = by_name(CAPTION_OPTIONS)["prompt"]
    assert prompt.check("x" * 500) == "x" * 500 and prompt.check(None) is None
    with pytest.raises(OptionError, match="prompt must be a text of at most 200 characters, got 'a text of 201"):
        prompt.check("x" * 201, bounded=True)
    objects = by_name(DESCRIBE_OPTIONS)["max_objects"]
    assert objects.check(None) is None  # "no limit" in the library, not for a client
    with pytest.raises(OptionError, match="max_objects must be an integer from 0 to 50, got None"):
        objects.check(None, bounded=True)
    with pytest.raises(OptionError, match="generate_kwargs cannot be set here"):
        by_name(CAPTION_OPTIONS)["generate_kwargs"].check({}, bounded=True)


def test_a_word_for_none_is_accepted_and_named_to_clients():
    subtask = by_name(SEGMENT_OPTIONS)["subtask"]
    assert subtask.check("all") is None and subtask.check(None) is None and subtask.check("panoptic") == "panoptic"
    assert subtask.client_default == "all"
    assert subtask.describe(bounded=True) == "one of 'all', 'instance', 'semantic', 'panoptic' (default 'all')"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "an integer of at least 1, got True"),
        (2.5, "an integer of at least 1, got 2.5"),
        ("3", "an integer of at least 1, got '3'"),
        (float("nan"), "an integer of at least 1, got nan"),
    ],
)
def test_a_wrong_value_names_the_option_the_value_and_what_is_accepted(value, message):
    with pytest.raises(OptionError, match=f"num_beams must be {message}"):
        by_name(CAPTION_OPTIONS)["num_beams"].check(value)


def test_split_by_hook_forwards_only_what_was_given_each_to_its_hook():
    options = by_name(CAPTION_OPTIONS)
    assert split_by_hook(options, {"prompt": "a", "num_beams": 2.0}, "Captioner") == (
        {"prompt": "a"},
        {"num_beams": 2},
        {},
    )
    with pytest.raises(TypeError, match=r"Captioner got unknown call options \['beams'\]; it takes \["):
        split_by_hook(options, {"beams": 2}, "Captioner")


def test_flags_come_from_the_declarations_with_the_bounded_checks():
    parser = argparse.ArgumentParser()
    add_option_flags(parser, [Option("num_beams", "int", 1, "beams", low=1, limit=8)])
    assert parser.parse_args(["--num-beams", "3"]).num_beams == 3 and parser.parse_args([]).num_beams == 1
    threshold = by_name(SEGMENT_OPTIONS)["threshold"]
    assert argparse_type(threshold)("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="must be a number from 0 to 1, got '2'"):
        argparse_type(threshold)("2")


def test_a_name_declared_twice_is_refused():
    with pytest.raises(ValueError, match="option 'a' is declared twice"):
        by_name([Option("a", "int", 1, "x"), Option("a", "int", 2, "y")])
