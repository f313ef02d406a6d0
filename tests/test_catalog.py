"""The catalog: names, local checkpoints, torchvision's weights path, and failing fast without a network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_CATEGORIES, draw_shapes
from huggingface_hub import constants, is_offline_mode

from pipeline import (
    ModelSpec,
    ModelUnavailableError,
    availability,
    get_spec,
    list_models,
    load_captioner,
    load_segmenter,
    registered_models,
)
from pipeline.builders import build_maskrcnn
from pipeline.catalog import best_available


def test_catalog_names():
    assert [spec.name for spec in list_models("captioner")][:5] == [
        "blip-base",
        "blip-large",
        "git-base",
        "vit-gpt2",
        "shapes",
    ]
    assert [spec.name for spec in list_models("segmenter")][:3] == ["maskrcnn-v2", "maskrcnn-v1", "shapes"]
    assert get_spec("blip-base", "captioner").source == "Salesforce/blip-image-captioning-base"
    assert all(spec.description for kind in ("captioner", "segmenter") for spec in list_models(kind))
    with pytest.raises(ValueError, match=r"unknown segmenter 'yolo': choose one of \['maskrcnn-v2'"):
        get_spec("yolo", "segmenter")
    with pytest.raises(ValueError, match="kind must be one of"):
        list_models("detector")


def test_blip_base_offline_fails_fast_with_advice():
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as caught:
        load_captioner("blip-base", device="cpu")
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "captioner 'blip-base' (Salesforce/blip-image-captioning-base)" in message
    assert "HF_HUB_OFFLINE" in message and "hf download Salesforce/blip-image-captioning-base" in message
    assert availability("blip-base", "captioner") == (
        False,
        "Salesforce/blip-image-captioning-base is not in the Hugging Face cache",
    )


@pytest.mark.parametrize(
    "name, source", [("git-base", "microsoft/git-base-coco"), ("vit-gpt2", "nlpconnect/vit-gpt2-image-captioning")]
)
def test_other_hub_captioners_offline_fail_fast(name, source):
    with pytest.raises(ModelUnavailableError, match=f"captioner '{name}' \\({source}\\)"):
        load_captioner(name, device="cpu")
    assert availability(name, "captioner") == (False, f"{source} is not in the Hugging Face cache")


def test_unreachable_hub_fails_fast(monkeypatch):
    # Not offline, but the endpoint refuses connections: the reachability check answers in seconds.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setitem(is_offline_mode.__globals__, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="127.0.0.1 cannot be reached"):
        load_captioner("blip-large", device="cpu")
    assert time.monotonic() - start < 10


def test_torchvision_weights_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"segmenter 'maskrcnn-v2': its weights are not on"):
        load_segmenter("maskrcnn-v2", device="cpu")
    available, reason = availability("maskrcnn-v2", "segmenter")
    assert not available and reason == "its weights are not downloaded on this machine"


def test_torchvision_weights_load_from_the_torch_cache(tmp_path, monkeypatch):
    # A random state dict under torchvision's own checkpoint file name: the real loading path runs.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    checkpoint.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_maskrcnn("maskrcnn_resnet50_fpn", num_classes=91)
    torch.save(model.state_dict(), checkpoint)
    assert availability("maskrcnn-v1", "segmenter") == (True, "")
    segmenter = load_segmenter(
        "maskrcnn-v1", device="cpu", model_kwargs={"min_size": 128, "max_size": 160, "box_detections_per_img": 5}
    )
    assert segmenter.name == "maskrcnn-v1"
    assert segmenter.categories[:3] == ["__background__", "person", "bicycle"] and len(segmenter.categories) == 91
    assert segmenter.model.transform.min_size == (128,)
    for key, value in segmenter.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    result = segmenter(draw_shapes(), threshold=0.0)
    assert all(obj["label"] == segmenter.categories[obj["label_id"]] for obj in result["instances"])


def test_local_checkpoints_round_trip(tiny_blip_dir, tiny_segmenter_dir):
    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu")
    assert segmenter.categories == TINY_CATEGORIES
    assert segmenter.model.transform.min_size == (128,)  # the settings saved with the checkpoint
    override = load_segmenter(tiny_segmenter_dir, device="cpu", model_kwargs={"min_size": 96})
    assert override.model.transform.min_size == (96,)
    captioner = load_captioner(tiny_blip_dir, device="cpu")
    assert isinstance(captioner(draw_shapes(), max_new_tokens=5)["caption"], str)


def test_registered_and_missing_models(tmp_path, tiny_segmenter_dir):
    (tmp_path / "empty").mkdir()
    specs = [
        ModelSpec("my-shapes", "segmenter", tiny_segmenter_dir, "test model"),
        ModelSpec("empty", "segmenter", str(tmp_path / "empty"), ""),
        ModelSpec("gone", "captioner", str(tmp_path / "gone"), ""),
    ]
    with registered_models(specs):
        assert load_segmenter("my-shapes", device="cpu").name == "my-shapes"
        with pytest.raises(ModelUnavailableError, match="segmenter.json is missing") as caught:
            load_segmenter("empty", device="cpu")
        # What a served app's client would see names the model, not a path of this machine.
        assert str(tmp_path) not in caught.value.public and "'empty'" in caught.value.public
        with pytest.raises(ModelUnavailableError, match="does not exist") as caught:
            load_captioner("gone", device="cpu")
        assert str(tmp_path) not in caught.value.public and "'gone'" in caught.value.public
        assert availability("gone", "captioner") == (False, "its model directory is missing")
    assert "my-shapes" not in [spec.name for spec in list_models("segmenter")]  # the catalog is as before


def test_best_available_prefers_what_loads_here(tiny_segmenter_dir):
    with registered_models([ModelSpec("mine", "segmenter", tiny_segmenter_dir, "test model")]):
        names = ["maskrcnn-v2", "mine"]
        assert best_available("segmenter", names) == "mine"  # maskrcnn-v2's weights are not here
        assert best_available("segmenter", names, "mine") == "mine"
        assert best_available("segmenter", ["maskrcnn-v2"], "maskrcnn-v2") == "maskrcnn-v2"  # nothing loads: say why


def test_device_checks():
    from pipeline import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            resolve_device("cuda")


def test_models_loaded_from_several_threads_at_once_are_whole(tiny_blip_dir, tiny_segmenter_dir):
    # transformers builds models on the meta device through process-wide patches: two builds at once used to fail
    # with "Tensor.item() cannot be called on meta tensors" or leave weights random. The loaders take turns.
    import threading

    alone = load_captioner(tiny_blip_dir, device="cpu", profile="fast")
    image = draw_shapes()
    results, errors = [], []

    def load(kind):
        try:
            if kind == "captioner":
                results.append(load_captioner(tiny_blip_dir, device="cpu", profile="fast")(image)["caption"])
            else:
                load_segmenter(tiny_segmenter_dir, device="cpu", profile="fast")
        except Exception as error:  # collected, so that the assertion shows every thread's failure
            errors.append(repr(error))

    threads = [threading.Thread(target=load, args=(kind,)) for kind in ("captioner", "captioner", "segmenter") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [alone(image)["caption"]] * 4
