"""pipeline.serve.menus, intake, files, process: what a public server lets clients choose and send, and hands out."""

from __future__ import annotations

import base64
import gc
import io
import os
import tempfile
import threading
from pathlib import Path

import pytest
from helpers import draw_shapes
from PIL import Image

from pipeline import ModelSpec, list_models, registered_models
from pipeline.serve.files import OutputFiles
from pipeline.serve.intake import RequestError, image_from_payload
from pipeline.serve.menus import ModelMenus, operator_model
from pipeline.serve.process import lower_thread_priority

MENUS = ModelMenus(["shapes", "blip-base"], ["shapes", "maskrcnn-v2"])


def test_only_menu_names_are_accepted_and_the_answer_says_nothing_of_the_disk(tmp_path, tiny_segmenter_dir):
    assert MENUS.check("captioner", "shapes") == "shapes"
    real = Path(tiny_segmenter_dir)
    spellings = ["/etc", "/tmp", "../../../etc", str(real), f"{real}/", f"{real}//x/..", f"{real}/.", "nope",
                 "someone/some-model", str(tmp_path / "missing")]  # fmt: skip
    messages = set()
    for name in spellings:
        with pytest.raises(RequestError) as caught:
            MENUS.check("segmenter", name)
        message = str(caught.value)
        assert "choose one of ['shapes', 'maskrcnn-v2']" in message and caught.value.title == "Unknown segmenter"
        messages.add(message.replace(repr(name), "NAME"))
    assert len(messages) == 1  # a directory that exists is refused in the very words of one that does not
    for odd in (None, 3, ["shapes"], "x" * 500):
        with pytest.raises(RequestError, match="unknown captioner"):
            MENUS.check("captioner", odd)


def test_hub_ids_only_when_the_operator_opts_in_and_never_a_path(tmp_path, monkeypatch):
    with pytest.raises(RequestError, match="unknown captioner 'someone/some-model'"):
        MENUS.check("captioner", "someone/some-model")
    open_menus = ModelMenus(["shapes"], ["shapes"], allow_hub=True)
    assert open_menus.check("captioner", "someone/some-model") == "someone/some-model"
    with pytest.raises(RequestError, match=r"or a Hugging Face hub id"):
        open_menus.check("captioner", "not a hub id")
    with pytest.raises(RequestError, match=r"^unknown segmenter 'someone/some-model': choose one of \['shapes'\]$"):
        open_menus.check("segmenter", "someone/some-model")  # segmenters are never downloaded by name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mine").mkdir(parents=True)  # a relative directory that looks like a hub id
    for name in ("runs/mine", "../etc", "/etc/passwd", "a/b/c", "./x", "owner/..", "-owner/name"):
        with pytest.raises(RequestError):
            open_menus.check("captioner", name)


def test_an_operators_directory_is_offered_under_its_folder_name(tmp_path, tiny_segmenter_dir):
    with registered_models([]):  # the catalog is put back afterwards
        first = operator_model("segmenter", tiny_segmenter_dir)
        assert first == Path(tiny_segmenter_dir).name and "/" not in first
        assert operator_model("segmenter", tiny_segmenter_dir) == first  # the same folder, the same name
        other = tmp_path / Path(tiny_segmenter_dir).name
        other.mkdir()
        assert operator_model("segmenter", str(other)) == f"{first}-2"
        assert operator_model("segmenter", "shapes") == "shapes"
        names = [spec.name for spec in list_models("segmenter")]
        assert {first, f"{first}-2"} <= set(names)
    with pytest.raises(ValueError, match="unknown segmenter 'nowhere'"):
        operator_model("segmenter", "nowhere")


def _png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    draw_shapes(*size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_way_an_image_arrives_is_limited_in_bytes_before_decoding(tmp_path):
    data_url = "data:image/png;base64," + base64.b64encode(_png_bytes()).decode()
    assert image_from_payload({"url": data_url}).size == (40, 30)
    assert image_from_payload(data_url).size == (40, 30)
    path = tmp_path / "photo.png"
    path.write_bytes(_png_bytes())
    assert image_from_payload({"path": str(path)}).size == (40, 30)
    assert image_from_payload(str(path), max_bytes=len(path.read_bytes())).size == (40, 30)
    with pytest.raises(RequestError, match=r"this server takes images of up to 0 MB") as caught:
        image_from_payload({"path": str(path)}, max_bytes=100)
    assert caught.value.title == "Image too large"
    # A 41 MB data: URL is refused from its length alone: nothing is decoded.
    huge = "data:image/png;base64," + "A" * (41 * 2**20 * 4 // 3)
    with pytest.raises(RequestError, match=r"The image is 41.0 MB; this server takes images of up to 25 MB"):
        image_from_payload({"url": huge})
    with pytest.raises(RequestError, match="not valid base64"):
        image_from_payload("data:image/png;base64,@@@@")
    for bad in ({"url": "https://example.org/cat.jpg"}, {"path": "/no/such/file.png"}, {}):
        with pytest.raises(RequestError, match="could not be received"):
            image_from_payload(bad)
    with pytest.raises(RequestError, match="Expected an image, got int"):
        image_from_payload(3)
    with pytest.raises(RequestError, match="No image yet"):
        image_from_payload(None)


def test_pixel_limits_and_bad_files_are_named_for_a_client(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)
    with pytest.raises(RequestError) as caught:
        image_from_payload(str(path), max_pixels=10_000)
    assert str(caught.value).startswith("image too large: 'big.png' is 200x100 = 20,000 pixels, the limit is 10,000")
    assert "PIPELINE_MAX_PIXELS" not in str(caught.value)  # a client cannot set the server's variables
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(RequestError, match=r"(?i)^not an image: 'notes.png'") as caught:
        image_from_payload(str(text))
    assert str(tmp_path) not in str(caught.value)


def test_output_files_are_whole_unique_and_bounded():
    files = OutputFiles(keep=3)
    picture = draw_shapes()
    paths = [files.image(picture, "frame") for _ in range(5)]
    assert len(set(paths)) == 5  # the same picture twice is two files: no two requests share one
    assert [Path(p).exists() for p in paths] == [False, False, True, True, True]
    assert Image.open(paths[-1]).size == picture.size
    assert not list(files.folder.rglob("*.partial"))
    assert Path(files.json({"a": 1}, "result")).read_text() == '{\n "a": 1\n}\n'


def test_memory_folder_takes_shared_memory_only_with_room(monkeypatch, tmp_path):
    from pipeline.serve import files as files_module

    shared = tmp_path / "shm"
    shared.mkdir()
    monkeypatch.setattr(files_module, "SHARED_MEMORY", shared)
    assert files_module.memory_folder("live-", room=1).parent == shared
    assert files_module.memory_folder("live-", room=2**62).parent == Path(tempfile.gettempdir())  # no room
    monkeypatch.setattr(files_module, "SHARED_MEMORY", tmp_path / "absent")
    assert files_module.memory_folder("live-").parent == Path(tempfile.gettempdir())


def test_memory_folder_removes_the_folders_of_processes_that_are_gone(monkeypatch, tmp_path):
    """A server stopped by a signal leaves its memory folder behind; the next one removes those whose process no
    longer runs, and no other."""
    from pipeline.serve import files as files_module

    monkeypatch.setattr(files_module, "SHARED_MEMORY", tmp_path)
    gone = tmp_path / "live-999999999-abc"  # above Linux's largest process id
    (gone / "x").mkdir(parents=True)
    kept = [tmp_path / f"live-{os.getpid()}-abc", tmp_path / "live-1-abc", tmp_path / "other-999999999-abc"]
    kept += [tmp_path / "live-notapid"]
    for folder in kept:
        folder.mkdir()
    made = files_module.memory_folder("live-", room=1)
    assert made.name.startswith(f"live-{os.getpid()}-") and made.parent == tmp_path
    assert not gone.exists() and all(folder.is_dir() for folder in kept)


def test_output_files_remove_their_folder_when_closed_or_collected(tmp_path):
    folder = tmp_path / "ring"
    folder.mkdir()
    files = OutputFiles(keep=2, folder=folder)
    assert Path(files.image(draw_shapes(), "frame")).parent.parent == folder
    files.close()
    assert not folder.exists()
    files.close()  # twice is harmless
    other = OutputFiles()
    made = other.folder
    assert made.is_dir()
    del other
    gc.collect()
    assert not made.exists()


def test_photo_threads_run_at_a_lower_priority():
    seen = []

    def work():
        lower_thread_priority(10)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)


def test_registered_models_for_menus_are_catalog_entries(tiny_segmenter_dir):
    with registered_models([ModelSpec("mine", "segmenter", tiny_segmenter_dir, "test")]):
        assert ModelMenus(["shapes"], ["mine"]).check("segmenter", "mine") == "mine"
