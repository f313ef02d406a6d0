"""What an assistant reads about each script endpoint when the app serves them as MCP tools (and what
``Client.view_api()`` prints): what it does and returns, and one line per parameter with its bounds.

Gradio's MCP server names a tool after its handler (``caption``, ``describe``, ...), takes the tool's description
from the event's ``api_description`` (:func:`endpoint_description`) and each parameter's from the ``Args:`` lines of
the handler's docstring (:func:`tool_docstring`). Gradio-free; the menus are the server's own, so the text names the
models a client may choose. An image parameter is a URL or an upload, as gradio's MCP server takes files: an
``http(s)`` URL that the server fetches, or a ``data:`` URL (the MCP client's upload).

>>> print(endpoint_description("caption"))
Say in one sentence what a picture shows. Returns: the caption, one sentence ending with a full stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..answering import QUESTION
from ..images import max_pixels_from_env
from .endpoints import ANALYZE_OPTIONS, ASK_OPTIONS, COMPARE_OPTIONS, DESCRIBE_OPTIONS, MAX_COMPARED
from .menus import NO_ANSWERER
from .options import MAX_IMAGE_BYTES, OPTIONS, describe_options

#: Per endpoint: (what it does and returns, its bounded options: in its ``options`` object, or ``segment``'s own
#: parameters).
TOOLS: dict[str, tuple[str, Sequence[str]]] = {
    "caption": (
        "Say in one sentence what a picture shows. Returns: the caption, one sentence ending with a full stop.",
        (),
    ),
    "describe": (
        "Describe a picture for someone who cannot see it: alt text, and what is where. Returns: JSON with alt_text "
        "(one sentence for an image's alt attribute), description (the caption, then each kind of object found with "
        "its count, position and size, in reading order), caption, grounding (the caption's words tied to the "
        "objects found) and objects (label, position, size and box of each); with a stuff model, the description "
        "also says where the sky, grass, water, ... are.",
        DESCRIBE_OPTIONS,
    ),
    "segment": (
        "Outline every object in a picture (Mask R-CNN). Returns: JSON with instances (label, score, box, area, mask "
        "as COCO RLE), the semantic and panoptic maps (16-bit PNG, base64; with a stuff model, its regions too as "
        "segments with isthing false) and the models used.",
        ("threshold", "subtask"),
    ),
    "analyze": (
        "Caption a picture and outline every object in it. Returns: the full result as JSON (caption, description, "
        "instances with COCO RLE masks, semantic and panoptic maps, timings) and the annotated picture (an image, "
        "its longer side at most 1280 px).",
        ANALYZE_OPTIONS,
    ),
    "ask": (
        "Answer a question about a picture, for someone who cannot see it. How many, is there and where questions "
        "about objects the segmenter knows are answered from the objects it finds; other questions (a colour, an "
        "activity, what someone holds) by the question-answering model. Returns: JSON with question, answer (short: "
        "a number in digits, yes or no, a word or two), sentence (a full sentence to read aloud), source ('objects', "
        "the answerer's name, or null when no answerer was chosen and the objects cannot answer), instances (the "
        "indices of the objects the answer refers to) and objects (label, score, box and position of each object "
        "found, in the order the indices count).",
        ASK_OPTIONS,
    ),
    "compare": (
        f"Caption one picture with 2 to {MAX_COMPARED} captioners side by side. Returns: a JSON list of "
        "{name, caption, milliseconds, error}, one per captioner.",
        COMPARE_OPTIONS,
    ),
}


def image_parameter() -> str:
    """What an image parameter takes, with this server's limits (``PIPELINE_MAX_PIXELS`` may lower the pixels')."""
    return (
        "the picture: an http(s) URL of a JPEG, PNG or WebP image, or an uploaded file (a data: URL); at most "
        f"{MAX_IMAGE_BYTES // 2**20} MB and {max_pixels_from_env() / 1e6:g} megapixels"
    )


def endpoint_description(name: str) -> str:
    """The tool's description: what it does and returns, then its options with their bounds.

    Args:
        name: an endpoint of :data:`TOOLS`.
    """
    if name not in TOOLS:
        raise ValueError(f"no endpoint {name!r}; the tools are {sorted(TOOLS)}")
    text, options = TOOLS[name]
    if name == "segment":
        return f"{text} Bounds: {describe_options(options)}."
    if options:
        return (
            f"{text} options (a JSON object, any subset; the rest take their defaults): {describe_options(options)}."
        )
    return text


def tool_docstring(
    name: str, parameters: Sequence[str], menus: Mapping[str, Sequence[str]], defaults: Mapping[str, str | None]
) -> str:
    """A docstring whose ``Args:`` lines gradio's MCP server reads as the parameters' descriptions.

    Args:
        name: an endpoint of :data:`TOOLS`.
        parameters: its parameters, in order.
        menus: ``{"captioner": [...], "segmenter": [...], "answerer": [...]}``: the names a client may choose.
        defaults: ``{"captioner": name, "segmenter": name, "answerer": name}``: the server's defaults.

    >>> print(tool_docstring("caption", ["image", "captioner"], {"captioner": ["shapes", "blip-base"]},
    ...                      {"captioner": "shapes"}))
    Say in one sentence what a picture shows. Returns: the caption, one sentence ending with a full stop.
    <BLANKLINE>
    Args:
        image: the picture: an http(s) URL of a JPEG, PNG or WebP image, or an uploaded file (a data: URL); at most \
25 MB and 40 megapixels
        captioner: one of this server's captioners ['shapes', 'blip-base'] (default 'shapes')
    """
    lines = [endpoint_description(name), "", "Args:"]
    lines += [f"    {parameter}: {_parameter(parameter, name, menus, defaults)}" for parameter in parameters]
    return "\n".join(lines)


def _parameter(
    parameter: str, name: str, menus: Mapping[str, Sequence[str]], defaults: Mapping[str, str | None]
) -> str:
    if parameter == "image":
        return image_parameter()
    if parameter in ("captioner", "segmenter"):
        return f"one of this server's {parameter}s {list(menus[parameter])} (default {defaults.get(parameter)!r})"
    if parameter == "stuff":
        return (
            f"this server's stuff model for sky, grass, water, ... around the objects, one of "
            f"{list(menus.get('stuff', ['none']))} (default {defaults.get('stuff', 'none')!r}; 'none': objects only)"
        )
    if parameter == "answerer":
        return (
            f"one of this server's question answerers {[*menus['answerer'], NO_ANSWERER]} (default "
            f"{defaults.get(parameter)!r}); {NO_ANSWERER!r}: answers from the objects only"
        )
    if parameter == "question":
        return f"the question, {QUESTION.accepted(bounded=True)}, not empty (e.g. 'How many people are there?')"
    if parameter == "captioners":
        return f"a list of 2 to {MAX_COMPARED} different names of {list(menus['captioner'])}"
    if parameter == "options":
        return f"a JSON object with any of {list(TOOLS[name][1])} (their bounds are in the description)"
    if parameter in OPTIONS:
        return OPTIONS[parameter].describe(bounded=True)
    raise ValueError(f"no description for the parameter {parameter!r} of {name!r}")
