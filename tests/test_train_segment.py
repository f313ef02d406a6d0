"""train/segment.py: COCO reading, a short training run, resuming, and the checkpoint served by the catalog."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import check_model_card
from PIL import Image
from pycocotools.coco import COCO

from pipeline import load_segmenter
from pipeline.builders import build_maskrcnn
from pipeline.evaluation import coco_instance_metrics, evaluate_segmenter
from train import segment, shapes

TINY_KWARGS = {
    "returned_layers": [1],
    "fpn_channels": 16,
    "norm": "batch",
    "anchor_sizes": [16, 32],
    "box_representation": 32,
    "mask_layers": [16],
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 10,
}


# Each in-process training run builds its own Accelerator (see conftest.fresh_accelerate_state).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _train(shapes_data, output_dir, *extra):
    return segment.main(
        [
            "--train_dir", str(shapes_data / "train"), "--val_dir", str(shapes_data / "val"),
            "--output_dir", str(output_dir), "--init", "scratch", "--model", "maskrcnn_fpn",
            "--model_kwargs", json.dumps(TINY_KWARGS), "--per_device_batch_size", "4", "--learning_rate", "2e-3",
            "--warmup_steps", "2", "--logging_steps", "1", "--torch_threads", "1", "--seed", "0", *extra,
        ]
    )  # fmt: skip


def test_dataset_targets_drop_degenerate_boxes_and_keep_empty_images(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (90, 90, 90)).save(tmp_path / "images" / name)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30] = 1
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0,
             "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [3, 3, 0.5, 9], "area": 4, "iscrowd": 0,
             "segmentation": [[3, 3, 3.5, 3, 3.5, 12, 3, 12]]},
        ],
        "categories": [{"id": 7, "name": "box"}, {"id": 3, "name": "disc"}],
    }  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    dataset = segment.CocoInstances(tmp_path / "images", tmp_path / "instances.json", hflip=1.0)
    assert dataset.categories == ["__background__", "disc", "box"]  # labels follow category ids
    image, target = dataset[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert target["labels"].tolist() == [2]  # the 0.5 px wide box is dropped
    assert target["boxes"].tolist() == [[10.0, 5.0, 30.0, 15.0]]  # flipped: 40 - 30, 40 - 10
    assert target["masks"].shape == (1, 30, 40) and int(target["masks"][0, 10, 12]) == 1
    _, empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 30, 40)
    with pytest.raises(ValueError, match="hflip must be a probability between 0 and 1, got 2"):
        segment.CocoInstances(tmp_path / "images", tmp_path / "instances.json", hflip=2)


def test_coco_metrics_of_the_ground_truth_itself_are_perfect(shapes_data):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(shapes_data / "val" / "instances.json"))
    detections = [{**a, "score": 1.0} for a in coco.dataset["annotations"]]
    metrics = coco_instance_metrics(coco, detections)
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0)
    assert coco_instance_metrics(coco, [])["segm_AP50"] == 0.0


def test_default_maskrcnn_fpn_layout_is_torchvisions():
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    ours = build_maskrcnn("maskrcnn_fpn", num_classes=4, backbone="resnet18")
    theirs = MaskRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5), num_classes=4)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    with pytest.raises(ValueError, match="anchor_sizes must give 3 sizes .* got \\[16\\]"):
        build_maskrcnn("maskrcnn_fpn", num_classes=4, returned_layers=[1, 2], anchor_sizes=[16])
    with pytest.raises(ValueError, match="norm must be one of .* got 'group'"):
        build_maskrcnn("maskrcnn_fpn", num_classes=4, norm="group")


def test_short_run_lowers_the_loss_and_the_checkpoint_serves(shapes_data, tmp_path, shapes_image):
    output = tmp_path / "run"
    metrics = _train(shapes_data, output, "--max_train_steps", "24", "--save_float16")
    history = json.loads((output / "history.json").read_text())
    losses = [row["loss"] for row in history["steps"]]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    assert {"bbox_AP", "segm_AP", "segm_AP50"} <= set(metrics)
    config = json.loads((output / "segmenter.json").read_text())
    assert config["categories"] == ["__background__", *shapes.CATEGORIES] and config["model_kwargs"] == TINY_KWARGS

    segmenter = load_segmenter(str(output), device="cpu")
    assert all(p.dtype == torch.float32 for p in segmenter.model.parameters())  # float16 on disk, float32 loaded
    result = segmenter(shapes_image, threshold=0.0)
    assert set(result) == {"instances", "semantic", "panoptic"}
    for instance in result["instances"]:
        assert set(instance) == {"label", "label_id", "score", "box", "mask", "area"}
        assert instance["label"] in shapes.CATEGORIES
        assert instance["mask"].mode == "L" and instance["mask"].size == shapes_image.size
    assert result["semantic"]["map"].shape == (shapes_image.height, shapes_image.width)
    scored = evaluate_segmenter(segmenter, shapes_data / "val")
    assert scored["images"] == 4 and 0.0 <= scored["segm_AP"] <= 1.0
    check_model_card(output, "segmenter", metrics, steps=24, dataset=shapes_data.name)


def test_resume_continues_from_the_saved_step(shapes_data, tmp_path):
    straight = tmp_path / "straight"
    _train(shapes_data, straight, "--max_train_steps", "6", "--checkpointing_steps", "3", "--hflip", "0.5")
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_3", resumed / "checkpoints" / "step_3")
    _train(
        shapes_data,
        resumed,
        "--max_train_steps",
        "6",
        "--hflip",
        "0.5",
        "--resume_from_checkpoint",
        str(resumed / "checkpoints" / "step_3"),
    )
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == list(range(1, 7))
    for one, other in zip(before[3:], after[3:]):
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-3)
    with pytest.raises(ValueError, match="not a state saved by this script"):
        _train(shapes_data, tmp_path / "x", "--max_train_steps", "2", "--resume_from_checkpoint", str(tmp_path))


def test_bad_flags_are_refused(shapes_data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        segment.main(
            ["--train_dir", str(shapes_data / "train"), "--output_dir", str(tmp_path), "--model_kwargs", "[1]"]
        )
    assert "--model_kwargs must be a JSON object, got '[1]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        segment.main(["--train_dir", str(shapes_data / "train"), "--output_dir", str(tmp_path), "--model",
                      "maskrcnn_fpn", "--init", "coco"])  # fmt: skip
    assert "--init coco needs a COCO architecture" in capsys.readouterr().err


# -- --init coco: torchvision's COCO weights through the real loading path ------------------------------------------

#: Small inputs and few sampled regions, so that a full-size COCO architecture takes a training step in seconds.
COCO_INIT_KWARGS = {
    "min_size": 64,
    "max_size": 64,
    "rpn_post_nms_top_n_train": 64,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 10,
}


@pytest.mark.parametrize("architecture", ["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn"])
def test_init_coco_fine_tunes_from_torchvisions_weights_file(shapes_data, tmp_path, monkeypatch, architecture):
    # The released weights cannot be downloaded here: a random state dict saved under torchvision's own checkpoint
    # file name in a temporary TORCH_HOME, so that torchvision's weights enum reads it as it would the real file.
    from pipeline.hub import torchvision_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    checkpoint = torchvision_checkpoint(architecture)
    checkpoint.parent.mkdir(parents=True)
    torch.manual_seed(0)
    coco_model = build_maskrcnn(architecture, num_classes=91)
    torch.save(coco_model.state_dict(), checkpoint)
    output = tmp_path / "run"
    metrics = segment.main(
        ["--train_dir", str(shapes_data / "train"), "--val_dir", str(shapes_data / "val"), "--output_dir",
         str(output), "--model", architecture, "--init", "coco", "--model_kwargs", json.dumps(COCO_INIT_KWARGS),
         "--max_train_steps", "2", "--per_device_batch_size", "2", "--torch_threads", "2"]
    )  # fmt: skip
    assert {"bbox_AP", "segm_AP"} <= set(metrics)
    segmenter = load_segmenter(str(output), device="cpu")
    assert segmenter.categories == ["__background__", *shapes.CATEGORIES]
    # The backbone started from the COCO file (a few steps move it only a little); the predictors are new.
    trained = segmenter.model.state_dict()
    key = "backbone.body.layer4.2.conv3.weight"
    assert torch.allclose(trained[key], coco_model.state_dict()[key], atol=1e-2)
    assert trained["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4
    assert (output / "model.safetensors").stat().st_mode & 0o777 == (output / "metrics.json").stat().st_mode & 0o777
    result = segmenter(shapes_data / "val" / "images" / "000000.png", threshold=0.0)
    assert all(instance["label"] in shapes.CATEGORIES for instance in result["instances"])


def test_init_coco_without_the_weights_says_which_file_within_seconds(shapes_data, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    start = time.monotonic()
    with pytest.raises(SystemExit) as caught:
        segment.main(["--train_dir", str(shapes_data / "train"), "--output_dir", str(tmp_path / "run"),
                      "--model", "maskrcnn_resnet50_fpn_v2", "--init", "coco"])  # fmt: skip
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth" in message and str(tmp_path / "empty-torch-home") in message
    assert "download https://download.pytorch.org/models/" in message


def test_missing_images_are_skipped_and_counted_before_training(shapes_data, tmp_path, capsys):
    data = tmp_path / "partly-extracted"
    shutil.copytree(shapes_data, data)
    (data / "train" / "images" / "000002.png").unlink()
    output = tmp_path / "run"
    _train(data, output, "--max_train_steps", "1")
    assert "1 of 16 images are not in" in capsys.readouterr().out
    assert json.loads((output / "segmenter.json").read_text())["step"] == 1
    for image in (data / "train" / "images").iterdir():
        image.unlink()
    with pytest.raises(SystemExit, match="none of the 16 images is in"):
        _train(data, tmp_path / "none", "--max_train_steps", "1")


def test_a_non_finite_loss_says_what_was_saved(tmp_path):
    from train.common import check_finite

    with pytest.raises(FloatingPointError, match="no state was saved before this step"):
        check_finite(float("nan"), 3, tmp_path)
    state = tmp_path / "checkpoints" / "step_2"
    state.mkdir(parents=True)
    (state / "progress.json").write_text('{"step": 2}')
    with pytest.raises(FloatingPointError, match=r"the newest saved state is .*step_2 \(step 2\)"):
        check_finite(float("inf"), 3, tmp_path)
    check_finite(0.5, 3, tmp_path)  # a finite loss passes
