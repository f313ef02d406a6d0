"""Building models from scratch: the Mask R-CNN variants the catalog and ``train/`` know, and small BLIPs.

These are the constructors behind fine-tuned checkpoints (which record the architecture they were built with), the
offline ``shapes`` models, the tests' tiny random models and the benchmark's full-size random models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

#: Architectures a segmenter checkpoint may name. The ``resnet50`` ones are torchvision's COCO models; the
#: ``maskrcnn_fpn`` family takes any torchvision ResNet as ``backbone`` (the ``shapes`` model uses resnet18).
ARCHITECTURES = ("maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_fpn")


def build_maskrcnn(
    architecture: str,
    *,
    num_classes: int,
    backbone: str = "resnet18",
    trainable_layers: int = 5,
    **model_kwargs: Any,
) -> torch.nn.Module:
    """Build a randomly initialised Mask R-CNN of a known architecture.

    Args:
        architecture (str): one of :data:`ARCHITECTURES`.
        num_classes (int): classes including the background.
        backbone (str, default "resnet18"): the ResNet of ``maskrcnn_fpn``; ignored by the others.
        trainable_layers (int, default 5): backbone stages left trainable (``maskrcnn_fpn`` only).
        **model_kwargs: ``MaskRCNN`` settings such as ``min_size``, ``max_size``, ``box_detections_per_img``,
            ``rpn_post_nms_top_n_test``.

    Returns:
        torchvision.models.detection.MaskRCNN
    """
    if architecture == "maskrcnn_resnet50_fpn_v2":
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=num_classes, **model_kwargs)
    if architecture == "maskrcnn_resnet50_fpn":
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **model_kwargs)
    if architecture == "maskrcnn_fpn":
        fpn = resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=trainable_layers)
        return MaskRCNN(fpn, num_classes=num_classes, **model_kwargs)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def build_blip(
    words: Sequence[str],
    *,
    image_size: int = 384,
    patch_size: int = 16,
    vision: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Build a randomly initialised BLIP captioner and its processor with a word-level vocabulary.

    Args:
        words (Sequence[str]): the vocabulary (lower case words); special tokens are added in front.
        image_size (int, default 384): the square input size of the vision encoder and the image processor.
        patch_size (int, default 16): ViT patch size.
        vision (dict | None): overrides of ``BlipVisionConfig`` (e.g. ``hidden_size``, ``num_hidden_layers``).
        text (dict | None): overrides of ``BlipTextConfig``.

    Returns:
        tuple of ``(BlipForConditionalGeneration, BlipProcessor)``, ready for ``save_pretrained``.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + [word for word in dict.fromkeys(words) if word not in specials]
    # transformers 5 ignores `vocab_file=` here: the vocabulary must be passed as a mapping.
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    special_ids = {"pad_token_id": 0, "bos_token_id": 2, "sep_token_id": 3, "eos_token_id": 3}
    config = BlipConfig(
        text_config={"vocab_size": len(tokens), **special_ids, **(text or {})},
        # BlipConfig's default vision initializer_range (1e-10) yields denormals that slow the encoder: use 0.02.
        vision_config={"image_size": image_size, "patch_size": patch_size, "initializer_range": 0.02, **(vision or {})},
    )
    model = BlipForConditionalGeneration(config)
    model.generation_config.update(**special_ids)
    return model, processor
