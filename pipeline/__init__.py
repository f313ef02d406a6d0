"""Caption an image and outline every object in it: BLIP and Mask R-CNN behind one pipeline.

>>> from pipeline import load_pipeline
>>> pipe = load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")
>>> pipe("space/examples/shapes.png")["caption"]
'A yellow triangle to the left of a blue circle and a red triangle.'
"""

from __future__ import annotations

from .answering import AnswerPipeline, answer_question
from .base import Pipeline, resolve_device
from .captioning import CaptionPipeline
from .catalog import (
    ModelSpec,
    availability,
    best_available,
    get_spec,
    list_models,
    load_answerer,
    load_captioner,
    load_segmenter,
    load_stuff,
    register_model,
    registered_models,
)
from .checkpoints import save_segmenter
from .combined import ImageAnalysisPipeline, load_pipeline
from .compare import compare_captioners
from .describe import describe_scene, ground_caption, locate_objects
from .hub import ModelUnavailableError
from .images import DEFAULT_MAX_PIXELS, load_image
from .jsonform import decode_mask, encode_mask, from_json, to_json
from .panoptic import add_stuff, fuse_panoptic, semantic_from_instances, with_threshold
from .render import draw_instances, draw_panoptic, draw_semantic
from .segmentation import SUBTASKS, SegmentationPipeline
from .serve.cache import ModelCache
from .stream import LiveStream
from .stuff import StuffPipeline

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUBTASKS",
    "AnswerPipeline",
    "CaptionPipeline",
    "ImageAnalysisPipeline",
    "LiveStream",
    "ModelCache",
    "ModelSpec",
    "ModelUnavailableError",
    "Pipeline",
    "SegmentationPipeline",
    "StuffPipeline",
    "add_stuff",
    "answer_question",
    "availability",
    "best_available",
    "compare_captioners",
    "decode_mask",
    "describe_scene",
    "draw_instances",
    "draw_panoptic",
    "draw_semantic",
    "encode_mask",
    "from_json",
    "fuse_panoptic",
    "get_spec",
    "ground_caption",
    "list_models",
    "load_answerer",
    "load_captioner",
    "load_image",
    "load_pipeline",
    "load_segmenter",
    "load_stuff",
    "locate_objects",
    "register_model",
    "registered_models",
    "resolve_device",
    "save_segmenter",
    "semantic_from_instances",
    "to_json",
    "with_threshold",
]
