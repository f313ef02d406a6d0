"""Building models from scratch: the Mask R-CNN variants the catalog and ``train/`` know, and small captioners of each
caption family (BLIP, ViT-GPT2, GIT) with a vocabulary of your words.

These are the constructors behind fine-tuned checkpoints (which record the architecture they were built with), the
offline ``shapes`` models, the tests' tiny random models and the benchmark's full-size random models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

from .word_vocabulary import byte_level_bpe

#: Architectures a segmenter checkpoint may name. The ``resnet50`` ones are torchvision's COCO models; the
#: ``maskrcnn_fpn`` family takes any torchvision ResNet as ``backbone`` (the ``shapes`` model uses resnet18).
ARCHITECTURES = ("maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_fpn")
#: Backbones and normalisations of ``maskrcnn_fpn``.
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
NORMS = ("frozen", "batch")


def build_maskrcnn(
    architecture: str,
    *,
    num_classes: int,
    backbone: str = "resnet18",
    trainable_layers: int = 5,
    returned_layers: Sequence[int] | None = None,
    fpn_channels: int = 256,
    norm: str = "frozen",
    anchor_sizes: Sequence[int] | None = None,
    box_representation: int = 1024,
    mask_layers: Sequence[int] | None = None,
    **model_kwargs: Any,
) -> torch.nn.Module:
    """Build a randomly initialised Mask R-CNN of a known architecture.

    Args:
        architecture (str): one of :data:`ARCHITECTURES`.
        num_classes (int): classes including the background.
        backbone (str, default "resnet18"): the ResNet of ``maskrcnn_fpn``; ignored by the others.
        trainable_layers (int, default 5): backbone stages left trainable (``maskrcnn_fpn`` only).

        The head sizes of ``maskrcnn_fpn`` (plain numbers, so a checkpoint's ``model_kwargs`` can record them; the
        defaults are torchvision's):

        returned_layers (Sequence[int] | None, default None): ResNet stages (1-4) feeding the FPN; None is all four.
            Stages after the last one are not built, so ``[1, 2, 3]`` drops the largest stage.
        fpn_channels (int, default 256): FPN width, also the input width of the RPN and the RoI heads.
        norm (str, default "frozen"): the backbone's normalisation, one of :data:`NORMS`; ``"batch"`` trains from
            scratch, ``"frozen"`` (FrozenBatchNorm2d) suits pretrained weights.
        anchor_sizes (Sequence[int] | None, default None): one anchor size per FPN level (stages + the pooled level);
            None is torchvision's ``(32, 64, 128, 256, 512)`` cut to the number of levels.
        box_representation (int, default 1024): width of the two-layer box head.
        mask_layers (Sequence[int] | None, default None): widths of the mask head's conv layers; None is
            ``[256] * 4``.
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
        return _build_maskrcnn_fpn(
            num_classes=num_classes,
            backbone=backbone,
            trainable_layers=trainable_layers,
            returned_layers=list(returned_layers or [1, 2, 3, 4]),
            fpn_channels=fpn_channels,
            norm=norm,
            anchor_sizes=anchor_sizes,
            box_representation=box_representation,
            mask_layers=list(mask_layers or [256] * 4),
            **model_kwargs,
        )
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def _build_maskrcnn_fpn(
    *,
    num_classes: int,
    backbone: str,
    trainable_layers: int,
    returned_layers: list[int],
    fpn_channels: int,
    norm: str,
    anchor_sizes: Sequence[int] | None,
    box_representation: int,
    mask_layers: list[int],
    **model_kwargs: Any,
) -> torch.nn.Module:
    """A ResNet-FPN Mask R-CNN with every width settable; with the defaults it equals torchvision's layout."""
    from torchvision.models import resnet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.misc import FrozenBatchNorm2d

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if backbone not in RESNETS:
        raise ValueError(f"backbone must be one of {RESNETS}, got {backbone!r}")
    if not returned_layers or min(returned_layers) < 1 or max(returned_layers) > 4:
        raise ValueError(f"returned_layers must be stages between 1 and 4, got {returned_layers!r}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be between 0 and 5, got {trainable_layers!r}")
    levels = len(returned_layers) + 1  # the FPN's pooled level comes on top of the stages
    sizes = list(anchor_sizes or (32, 64, 128, 256, 512)[:levels])
    if len(sizes) != levels:
        raise ValueError(f"anchor_sizes must give {levels} sizes (one per FPN level), got {anchor_sizes!r}")

    body = getattr(resnet, backbone)(weights=None, norm_layer=nn.BatchNorm2d if norm == "batch" else FrozenBatchNorm2d)
    # The same freezing rule as torchvision's resnet_fpn_backbone.
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    trained += ["bn1"] if trainable_layers == 5 else []
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in trained):
            parameter.requires_grad_(False)
    stage2_channels = body.inplanes // 8
    fpn = BackboneWithFPN(
        body,
        return_layers={f"layer{stage}": str(index) for index, stage in enumerate(returned_layers)},
        in_channels_list=[stage2_channels * 2 ** (stage - 1) for stage in returned_layers],
        out_channels=fpn_channels,
    )
    feature_names = [str(index) for index in range(len(returned_layers))]
    heads: dict[str, Any] = {
        "rpn_anchor_generator": AnchorGenerator(tuple((size,) for size in sizes), ((0.5, 1.0, 2.0),) * levels),
        "rpn_head": RPNHead(fpn_channels, 3),
        "box_roi_pool": MultiScaleRoIAlign(featmap_names=feature_names, output_size=7, sampling_ratio=2),
        "box_head": TwoMLPHead(fpn_channels * 7 * 7, box_representation),
        "box_predictor": FastRCNNPredictor(box_representation, num_classes),
        "mask_roi_pool": MultiScaleRoIAlign(featmap_names=feature_names, output_size=14, sampling_ratio=2),
        "mask_head": MaskRCNNHeads(fpn_channels, mask_layers, 1),
        "mask_predictor": MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], num_classes),
    }
    return MaskRCNN(fpn, num_classes=None, **{**heads, **model_kwargs})


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
        vision_config={
            "image_size": image_size,
            "patch_size": patch_size,
            "initializer_range": 0.02,
            **(vision or {}),
        },
    )
    model = BlipForConditionalGeneration(config)
    model.generation_config.update(**special_ids)
    return model, processor


def build_blip_vqa(words: Sequence[str], **settings: Any) -> tuple[Any, Any]:
    """Build a randomly initialised BLIP question answerer (``BlipForQuestionAnswering``, the architecture of
    ``Salesforce/blip-vqa-base``) and its processor, with :func:`build_blip`'s vocabulary and settings.

    Args:
        words (Sequence[str]): the vocabulary of questions and answers (lower case words).
        **settings: :func:`build_blip`'s ``image_size``, ``patch_size``, ``vision`` and ``text``.

    Returns:
        tuple of ``(BlipForQuestionAnswering, BlipProcessor)``, ready for ``save_pretrained``.

    >>> model, processor = build_blip_vqa(["red", "circle"], image_size=32, patch_size=8,
    ...     vision={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37},
    ...     text={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37})
    >>> type(model).__name__
    'BlipForQuestionAnswering'
    """
    from transformers import BlipForQuestionAnswering

    captioner, processor = build_blip(words, **settings)
    model = BlipForQuestionAnswering(captioner.config)
    # The answer decoder starts from [CLS] (bos) and stops at [SEP], as build_blip's captioner does.
    model.generation_config.update(**captioner.generation_config.to_diff_dict())
    return model, processor


def build_vit_gpt2(
    words: Sequence[str],
    *,
    image_size: int = 224,
    patch_size: int = 16,
    encoder: dict[str, Any] | None = None,
    decoder: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Build a randomly initialised ViT-GPT2 captioner (``nlpconnect/vit-gpt2-image-captioning``'s layout).

    A ``VisionEncoderDecoderModel`` of a ViT encoder and a GPT-2 decoder with cross-attention, its
    ``ViTImageProcessor`` (mean and std 0.5, as nlpconnect's) and a GPT-2 tokenizer of ``words``
    (:func:`byte_level_bpe`); ``<|endoftext|>`` is the decoder start, end and padding token, as in nlpconnect's config.

    Args:
        words (Sequence[str]): the vocabulary.
        image_size (int, default 224): the square input size of the encoder and the image processor.
        patch_size (int, default 16): ViT patch size.
        encoder (dict | None): overrides of ``ViTConfig`` (``hidden_size``, ``num_hidden_layers``, ...).
        decoder (dict | None): overrides of ``GPT2Config`` (``n_embd``, ``n_layer``, ``n_head``, ``n_positions``).

    Returns:
        tuple of ``(VisionEncoderDecoderModel, ImageTextProcessor)``, ready for ``save_pretrained``.
    """
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    from .captioning import ImageTextProcessor

    tokenizer = byte_level_bpe(words)
    special = tokenizer.eos_token_id
    encoder_config = ViTConfig(image_size=image_size, patch_size=patch_size, **(encoder or {}))
    decoder_config = GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=special,
        eos_token_id=special,
        add_cross_attention=True,
        is_decoder=True,
        **(decoder or {}),
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder_config, decoder_config)
    special_ids = {"decoder_start_token_id": special, "pad_token_id": special, "eos_token_id": special}
    for key, value in special_ids.items():
        setattr(config, key, value)
    model = VisionEncoderDecoderModel(config)
    model.generation_config.update(**special_ids, bos_token_id=special)
    image_processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return model, ImageTextProcessor(image_processor, tokenizer)


def build_git(
    words: Sequence[str],
    *,
    image_size: int = 224,
    patch_size: int = 16,
    vision: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Build a randomly initialised GIT captioner (``microsoft/git-base-coco``'s layout) with a word-level vocabulary.

    A ``GitForCausalLM``, its ``GitProcessor`` of a ``CLIPImageProcessor`` (resize and centre crop to
    ``image_size``) and a ``BertTokenizer`` of ``words`` behind BERT's special tokens; ``[CLS]`` starts a caption and
    ``[SEP]`` ends it, as ``bos_token_id`` 101 and ``eos_token_id`` 102 do in GIT's BERT vocabulary.

    Args:
        words (Sequence[str]): the vocabulary (lower case words); special tokens are added in front.
        image_size (int, default 224): the square input size of the image encoder and the image processor.
        patch_size (int, default 16): ViT patch size of the image encoder.
        vision (dict | None): overrides of ``GitVisionConfig`` (``hidden_size``, ``num_hidden_layers``, ...).
        text (dict | None): overrides of ``GitConfig`` (``hidden_size``, ``num_hidden_layers``,
            ``max_position_embeddings``, ...).

    Returns:
        tuple of ``(GitForCausalLM, GitProcessor)``, ready for ``save_pretrained``.
    """
    from transformers import BertTokenizer, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + [word for word in dict.fromkeys(words) if word not in specials]
    # transformers 5 ignores `vocab_file=` here: the vocabulary must be passed as a mapping.
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    special_ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    config = GitConfig(
        vision_config={"image_size": image_size, "patch_size": patch_size, **(vision or {})},
        vocab_size=len(tokens),
        **special_ids,
        **(text or {}),
    )
    model = GitForCausalLM(config)
    model.generation_config.update(**special_ids)
    return model, GitProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_segformer(
    labels: Sequence[str],
    *,
    stuff_labels: Sequence[str] | None = None,
    image_size: int = 512,
    **widths: Any,
) -> tuple[torch.nn.Module, Any]:
    """A randomly initialised SegFormer for semantic segmentation and its image processor.

    Args:
        labels (Sequence[str]): the class names, index by index.
        stuff_labels (Sequence[str] | None, default None): the names that are stuff, saved in the config (see
            :func:`pipeline.stuff.stuff_labels`); None leaves the choice to the label names.
        image_size (int, default 512): the processor's square input size.
        **widths: ``SegformerConfig`` settings (``hidden_sizes``, ``depths``, ``decoder_hidden_size``, ...); none
            gives SegFormer-b0's architecture.

    Returns:
        tuple ``(SegformerForSemanticSegmentation, SegformerImageProcessor)``.

    >>> model, processor = build_segformer(["sky", "grass"], hidden_sizes=[8, 16, 24, 32], decoder_hidden_size=16)
    >>> model.config.id2label[1], processor.size.height
    ('grass', 512)
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(
        id2label=dict(enumerate(labels)), label2id={name: index for index, name in enumerate(labels)}, **widths
    )
    if stuff_labels is not None:
        config.stuff_labels = list(stuff_labels)
    processor = SegformerImageProcessor(size={"height": image_size, "width": image_size})
    return SegformerForSemanticSegmentation(config), processor
