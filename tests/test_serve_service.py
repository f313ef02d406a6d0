"""pipeline.serve.service.Service: every endpoint's work without a server, on tiny test models (tests/helpers.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import EXAMPLES, TEST_ANSWERER, TEST_CAPTIONER, draw_shapes
from PIL import Image

from pipeline import from_json, load_answerer, load_captioner, load_segmenter
from pipeline.answering import NO_ANSWERER
from pipeline.panoptic import with_threshold
from pipeline.serve.cache import ModelCache
from pipeline.serve.endpoints import DISPLAY_SIDE
from pipeline.serve.intake import RequestError
from pipeline.serve.menus import ModelMenus
from pipeline.serve.page_html import EMPTY_CAPTION, EMPTY_OBJECTS, grounded_caption_html
from pipeline.serve.service import Service
from pipeline.stream import scale_to_fit

CIRCLES, SQUARES = "test-circles", "test-squares"


@pytest.fixture(scope="module")
def models(app_models):
    return app_models


@pytest.fixture(scope="module")
def service(models):
    menus = ModelMenus([TEST_CAPTIONER, "blip-base"], [CIRCLES, SQUARES], answerers=[TEST_ANSWERER, "blip-vqa-base"])
    service = Service(ModelCache(device="cpu"), menus)
    yield service
    service.close()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    draw_shapes(160, 120, seed=3).save(path)
    return {"path": str(path)}


def test_the_same_photo_reuses_what_did_not_change(service, photo):
    options = {"max_new_tokens": 8, "num_beams": 1}
    first = service.photos.photo(photo, TEST_CAPTIONER, CIRCLES, caption_options=options, threshold=0.5)
    assert first.reused == () and first.floor == 0.3 and first.caption
    other_segmenter = service.photos.photo(
        photo, TEST_CAPTIONER, SQUARES, caption_options=options, threshold=0.5, last=first
    )
    assert other_segmenter.reused == ("caption",) and other_segmenter.caption == first.caption
    higher = service.photos.photo(
        photo, TEST_CAPTIONER, SQUARES, caption_options=options, threshold=0.8, last=other_segmenter
    )
    assert higher.reused == ("caption", "segmentation")
    longer = service.photos.photo(photo, TEST_CAPTIONER, SQUARES, caption_options={**options, "max_new_tokens": 9},
                           threshold=0.8, last=higher)  # fmt: skip
    assert longer.reused == ("segmentation",)
    lower = service.photos.photo(photo, TEST_CAPTIONER, SQUARES, caption_options=options, threshold=0.1, last=longer)
    assert "segmentation" not in lower.reused and lower.floor == 0.1  # fainter objects need a new run


def test_a_kept_analysis_holds_a_display_picture_and_compact_masks(service, tmp_path):
    path = tmp_path / "large.png"
    draw_shapes(2400, 1800, seed=1).save(path)
    analysis = service.photos.photo({"path": str(path)}, TEST_CAPTIONER, CIRCLES, caption_options={}, threshold=0.5)
    assert max(analysis.picture.size) == DISPLAY_SIDE and analysis.size == (2400, 1800)
    assert all(isinstance(obj["mask"], dict) for obj in analysis.segments["instances"])  # COCO RLE, not images
    shown = analysis.result(0.5)
    expected = with_threshold(analysis.segments, 0.5)
    assert [obj["score"] for obj in shown["instances"]] == [obj["score"] for obj in expected["instances"]]
    assert shown["semantic"]["map"].shape == (1800, 2400)
    assert shown["description"].startswith(shown["caption"])
    page = service.photos.page(analysis, threshold=0.5, opacity=0.5, views=["objects", "panoptic"])
    assert set(page["pictures"]) == {"objects", "panoptic"}
    # The words the page shows: the description, the caption with its object words marked, one item per object.
    assert page["description"] == shown["description"]
    assert page["grounded"] == grounded_caption_html(shown["caption"], shown["grounding"], shown["instances"],
                                                     analysis.size)  # fmt: skip
    assert page["objects_list"].count("<li ") == len(shown["instances"])
    with pytest.raises(RequestError, match="opacity must be a number from 0 to 1, got 1000000000.0"):
        service.photos.page(analysis, threshold=0.5, opacity=1e9, views=["objects"])  # a redraw is bounded too
    with pytest.raises(RequestError, match="threshold must be a number from 0 to 1, got None"):
        service.photos.page(None, threshold=None, opacity=0.5, views=["objects"])
    empty = service.photos.page(None, threshold=0.5, opacity=0.5, views=["objects"])
    assert empty["grounded"] == EMPTY_CAPTION and empty["objects_list"] == EMPTY_OBJECTS and not empty["description"]
    assert max(Image.open(page["pictures"]["objects"]).size) == DISPLAY_SIDE


def test_endpoints_give_what_the_models_give(service, models, tmp_path):
    image = Image.open(EXAMPLES / "cat.jpg").convert("RGB")
    payload = {"path": str(EXAMPLES / "cat.jpg")}
    caption = load_captioner(models["captioner"], device="cpu")(image)["caption"]
    assert service.endpoints.caption(payload, TEST_CAPTIONER) == caption
    direct = load_segmenter(models[SQUARES], device="cpu")(image, threshold=0.3)
    segments = service.endpoints.segment(payload, SQUARES, 0.3, "all")
    assert [obj["score"] for obj in segments["instances"]] == pytest.approx([o["score"] for o in direct["instances"]])
    assert segments["models"] == {"segmenter": SQUARES, "stuff": "none"} and "semantic" in segments
    result, annotated = service.endpoints.analyze(
        payload, TEST_CAPTIONER, CIRCLES, {"threshold": 0.3, "max_new_tokens": 8, "repetition_penalty": 1.3}
    )
    assert result["caption"] and result["description"].startswith(result["caption"])
    assert {"grounding", "timings_ms", "instances", "panoptic"} <= set(result)
    assert Image.open(annotated).size == image.size
    described = service.endpoints.describe(payload, TEST_CAPTIONER, CIRCLES, {"detail": "short", "threshold": 0.3})
    assert set(described) == {"alt_text", "description", "caption", "grounding", "objects", "models"}
    assert described["objects"] and all("circle" in obj["text"] for obj in described["objects"])
    rows = service.endpoints.compare(payload, [TEST_CAPTIONER, "blip-base"], {"max_new_tokens": 5})
    assert rows[0]["caption"] and rows[0]["error"] is None
    assert rows[1]["caption"] is None and "blip-base" in rows[1]["error"] and "/" not in rows[1]["error"]


def test_ask_answers_from_the_objects_or_the_answerer_and_names_its_objects(service, models, photo):
    image = Image.open(photo["path"]).convert("RGB")
    circles = load_segmenter(models[CIRCLES], device="cpu")(image, threshold=0.1)["instances"]
    assert circles, "the test segmenter must find its circles"
    counted = service.endpoints.ask(photo, " How many circles? ", CIRCLES, "none", {"threshold": 0.1})
    assert counted["question"] == "How many circles?" and counted["source"] == "objects"
    assert counted["answer"] == str(len(circles)) and counted["instances"] == list(range(len(circles)))
    assert [obj["box"] for obj in counted["objects"]] == [pytest.approx(obj["box"], abs=0.05) for obj in circles]
    assert all(obj["label"] == "circle" and "circle" in obj["text"] for obj in counted["objects"])
    assert service.endpoints.ask(photo, "Is there a square?", CIRCLES, TEST_ANSWERER, {})["answer"] == "no"
    colour = service.endpoints.ask(photo, "What colour is the circle?", CIRCLES, TEST_ANSWERER, {"threshold": 0.1})
    direct = load_answerer(models["answerer"], device="cpu")(image, question="What colour is the circle?")
    assert colour["source"] == TEST_ANSWERER and colour["answer"] == direct["answer"] != ""
    assert colour["instances"] == counted["instances"]  # the circles the question names
    # A square the segmenter knows and did not find: the objects say so; the answerer is not asked to make one up.
    missing = service.endpoints.ask(photo, "What colour is the square?", CIRCLES, TEST_ANSWERER, {"threshold": 0.1})
    assert {key: missing[key] for key in ("answer", "sentence", "source", "instances")} == {
        "answer": "not found", "sentence": "I see no square.", "source": "objects", "instances": [],
    }  # fmt: skip
    assert [obj["label"] for obj in missing["objects"]] == ["circle"] * len(circles)  # what it found instead
    alone = service.endpoints.ask(photo, "What colour is the circle?", CIRCLES, "none", {})
    assert alone["source"] is None and alone["answer"] == "" and alone["sentence"] == NO_ANSWERER
    with pytest.raises(RequestError, match="answerer 'blip-vqa-base' is not in the Hugging Face cache|blip-vqa-base"):
        service.endpoints.ask(photo, "What colour is the circle?", CIRCLES, "blip-vqa-base", {})
    # An unavailable answerer is no matter for a question the objects answer: it is never loaded.
    assert service.endpoints.ask(photo, "How many circles?", CIRCLES, "none", {})["source"] == "objects"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, p: s.endpoints.ask(p, "", CIRCLES, "none", {}), "question must not be empty"),
        (lambda s, p: s.endpoints.ask(p, "?" * 201, CIRCLES, "none", {}), "at most 200 characters"),
        (lambda s, p: s.endpoints.ask(p, None, CIRCLES, "none", {}), "question must be a text"),
        (
            lambda s, p: s.endpoints.ask(p, "Is there a dog?", CIRCLES, "/etc", {}),
            r"unknown answerer '/etc': choose one of \['test-vqa', 'blip-vqa-base', 'none'\]",
        ),
        (
            lambda s, p: s.endpoints.ask(p, "Why?", CIRCLES, "none", {"num_beams": 2}),
            r"unknown options \['num_beams'\]",
        ),
        (
            lambda s, p: s.endpoints.caption(p, "/etc"),
            r"unknown captioner '/etc': choose one of \['test-tiny', 'blip-base'\]",
        ),
        (
            lambda s, p: s.endpoints.segment(p, CIRCLES, "abc", "all"),
            "threshold must be a number from 0 to 1, got 'abc'",
        ),
        (lambda s, p: s.endpoints.segment(p, CIRCLES, 5, "all"), "threshold must be a number from 0 to 1, got 5"),
        (lambda s, p: s.endpoints.segment(p, CIRCLES, 0.5, "stuff"), "subtask must be one of 'all', 'instance'"),
        (
            lambda s, p: s.endpoints.analyze(p, TEST_CAPTIONER, CIRCLES, {"opacity": "abc"}),
            "opacity must be a number from 0",
        ),
        (lambda s, p: s.endpoints.analyze(p, TEST_CAPTIONER, CIRCLES, [1, 2]), "options must be a JSON object"),
        (
            lambda s, p: s.endpoints.analyze(p, TEST_CAPTIONER, CIRCLES, {"num_beams": 1000}),
            "num_beams must be an integer",
        ),
        (
            lambda s, p: s.endpoints.analyze(p, TEST_CAPTIONER, CIRCLES, {"max_new_tokens": 100000}),
            "max_new_tokens must be",
        ),
        (
            lambda s, p: s.endpoints.analyze(p, TEST_CAPTIONER, CIRCLES, {"repetition_penalty": 3}),
            "repetition_penalty must be a number from 1 to 2, got 3",
        ),
        (lambda s, p: s.live.frame("k", p, TEST_CAPTIONER, CIRCLES, "abc"), "threshold must be a number"),
        (
            lambda s, p: s.endpoints.compare(p, [TEST_CAPTIONER], {}),
            "captioners must list 2 to 5 different captioners",
        ),
        (lambda s, p: s.endpoints.compare(p, "test-tiny", {}), "captioners must list 2 to 5"),
        (lambda s, p: s.endpoints.compare(p, [TEST_CAPTIONER, "../etc"], {}), "unknown captioner '../etc'"),
    ],
)
def test_client_mistakes_are_request_errors_that_name_them(service, photo, call, message):
    with pytest.raises(RequestError, match=message):
        call(service, photo)


def test_an_unavailable_model_says_what_and_what_to_do_without_the_servers_paths(
    service, photo, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    menus = ModelMenus([TEST_CAPTIONER], ["maskrcnn-v2"])
    lonely = Service(ModelCache(device="cpu"), menus)
    with pytest.raises(RequestError) as caught:
        lonely.endpoints.segment(photo, "maskrcnn-v2", 0.5, "all")
    assert "maskrcnn-v2" in str(caught.value) and "choose another model" in str(caught.value)
    assert str(tmp_path) not in str(caught.value) and "/root" not in str(caught.value)
    assert str(tmp_path) in str(caught.value.__cause__)  # the server's log keeps the operator's message
    assert "not installed on this server" in lonely.photos.model_note("segmenter", "maskrcnn-v2")
    lonely.close()


@pytest.mark.parametrize("size", [(12, 2000), (2000, 12), (1, 1)])
def test_thin_and_tiny_photos_get_an_answer(service, tmp_path, size):
    path = tmp_path / "thin.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    result, annotated = service.endpoints.analyze({"path": str(path)}, TEST_CAPTIONER, CIRCLES, {"threshold": 0.0})
    assert result["caption"] and from_json(result)["semantic"]["map"].shape == (size[1], size[0])
    # Drawn at display size: the photo scaled to fit DISPLAY_SIDE.
    assert Image.open(annotated).size == scale_to_fit(Image.new("RGB", size), DISPLAY_SIDE).size


def test_the_first_live_frame_brings_its_caption(service, photo):
    picture, caption, stats = service.live.frame("session-1", photo, TEST_CAPTIONER, CIRCLES, 0.3)
    assert caption and stats["frames_processed"] == 1 and stats["fps"] > 0
    assert Image.open(picture).size[0] <= 480 and stats["key_frames"] == 1


def test_live_frame_paces_a_tight_loop(service, photo):
    """A script calling /live_frame in a loop gets its next frame processed LIVE_FRAME_EVERY_S after the last at the
    earliest (it took the caption's CPU otherwise), and every call is answered with its own frame."""
    from pipeline.serve.live import LIVE_FRAME_EVERY_S

    service.live.frame("paced", photo, TEST_CAPTIONER, CIRCLES, 0.3)
    times = []
    for _ in range(3):
        service.live.frame("paced", photo, TEST_CAPTIONER, CIRCLES, 0.3)
        times.append(time.monotonic())
    gaps = np.diff(times)
    assert all(gap >= LIVE_FRAME_EVERY_S - 0.005 for gap in gaps), gaps
    assert service.live.registry.find("paced").frames_processed == 4


def test_live_frames_carry_their_instances_and_a_new_threshold_keeps_the_stream(service, tmp_path):
    path = tmp_path / "large.png"
    draw_shapes(960, 720, seed=3).save(path)  # the live view segments it at 480 x 360
    _, caption, stats = service.live.frame("session-2", {"path": str(path)}, TEST_CAPTIONER, CIRCLES, 0.0)
    assert stats["frames_processed"] == 1 and stats["instances"]
    decoded = from_json({"instances": stats["instances"]})["instances"]
    for found, back in zip(stats["instances"], decoded, strict=True):
        assert back["mask"].size == (960, 720)  # the size the client sent, as /segment gives it
        assert found["area"] == int(np.count_nonzero(np.asarray(back["mask"])))
        x0, y0, x1, y1 = found["box"]
        assert 0 <= x0 <= x1 <= 960 and 0 <= y0 <= y1 <= 720
    cut = min(found["score"] for found in stats["instances"]) + 1e-6  # leaves the least sure one out
    _, _, later = service.live.frame("session-2", {"path": str(path)}, TEST_CAPTIONER, CIRCLES, cut)
    assert later["frames_processed"] == 2  # the same stream: the caption and frames/s go on
    assert all(found["score"] >= cut for found in later["instances"])
    assert len(later["instances"]) < len(stats["instances"])
    # The live tab draws outlines over the camera's own preview: SVG at the size segmented, no picture, no RLE.
    svg, _, shown = service.live.overlay("session-2", {"path": str(path)}, TEST_CAPTIONER, CIRCLES, cut)
    assert "instances" not in shown and shown["frames_processed"] == 3 and shown["objects"]
    assert 'viewBox="0 0 480 360"' in svg and svg.count("<g ") == len(later["instances"])
    # The page gets only what changed: the next frame at once brings its outlines, not the same caption or figures.
    again, caption, figures = service.live.overlay("session-2", {"path": str(path)}, TEST_CAPTIONER, CIRCLES, cut)
    assert 'data-frame="4"' in again and caption is None and figures is None
    # Other models go on in the same stream: the count goes on and the next key frame uses them.
    _, _, other = service.live.frame("session-2", {"path": str(path)}, TEST_CAPTIONER, "test-squares", 0.0)
    assert other["frames_processed"] == 5  # answered at once, the outlines carried until the new key frame is done
    for _ in range(100):
        _, _, other = service.live.frame("session-2", {"path": str(path)}, TEST_CAPTIONER, "test-squares", 0.0)
        if other["key_frames"] >= 2:
            break
        time.sleep(0.05)
    assert other["key_frames"] >= 2
    assert other["instances"] and {found["label"] for found in other["instances"]} <= {"square"}


def test_live_key_frames_run_the_cpus_live_profile(service, monkeypatch):
    from pipeline.speed import segmenter_settings

    monkeypatch.setenv("PIPELINE_BFLOAT16", "0")  # a CPU without native bfloat16: fewer proposals per key frame
    segmenter, _ = service.live._models((TEST_CAPTIONER, CIRCLES))
    assert segmenter_settings(segmenter.model)["rpn_post_nms_top_n_test"] <= 50
    full = service.models.model("segmenter", CIRCLES)
    assert segmenter_settings(full.model)["rpn_post_nms_top_n_test"] > 50  # photos keep theirs


def test_a_live_question_is_answered_about_the_sessions_latest_frame(service, tmp_path):
    with pytest.raises(RequestError, match="No camera frame yet: start the camera, then ask"):
        service.live.ask("asking", "How many circles?", "none")
    path = tmp_path / "frame.png"
    draw_shapes(960, 720, seed=3).save(path)
    _, _, stats = service.live.frame("asking", {"path": str(path)}, TEST_CAPTIONER, CIRCLES, 0.0)
    circles = len(stats["instances"])
    assert circles, "the test segmenter must find its circles"
    block, history = service.live.ask("asking", " How many circles? ", "none")
    sentence = f"There {'is' if circles == 1 else 'are'} {circles} circle"
    assert f'<p class="answer-sentence">{sentence}' in block and "answered from the objects found" in block
    # The circles' outlines, in the frame's coordinates (segmented at 480 x 360), for the page to lay over the camera.
    assert 'class="answer-outlines"' in block and 'viewBox="0 0 480 360"' in block and "data-boxes" not in block
    assert block.count("<g ") == circles and 'data-frame="1"' in block
    colour, history = service.live.ask("asking", "What colour is the circle?", TEST_ANSWERER, history)
    assert f"answered by the answerer {TEST_ANSWERER}" in colour and colour.count("<g ") == circles
    assert 'data-frame="2"' in colour
    assert [said["question"] for said in history["answers"]] == ["What colour is the circle?", "How many circles?"]
    assert "Earlier questions about the camera" in colour and "How many circles?" in colour
    missing, _ = service.live.ask("asking", "What colour is the square?", TEST_ANSWERER, history)
    assert "I see no square." in missing and "<g " not in missing  # not made up, nothing outlined
    for question, answerer, message in [
        ("", "none", "question must not be empty"),
        ("x" * 201, "none", "at most 200 characters"),
        ("Why?", "/etc/passwd", "unknown answerer"),
    ]:
        with pytest.raises(RequestError, match=message):
            service.live.ask("asking", question, answerer)
    with pytest.raises(RequestError, match="No camera frame yet"):
        service.live.ask("another-session", "How many circles?", "none")  # a session's frames are its own


def test_two_live_sessions_at_once_keep_their_own_streams(service, tmp_path):
    """Two clients stream at the same time: each keeps its own frames, key frames and models, and neither waits for
    the other's key frames (the server's live threads run one session's key frame each)."""
    pictures = []
    for seed in (4, 5):
        path = tmp_path / f"camera-{seed}.png"
        draw_shapes(320, 240, seed=seed).save(path)
        pictures.append({"path": str(path)})
    models = [CIRCLES, SQUARES]
    answers: dict[int, list[dict]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for _ in range(12):
                _, _, stats = service.live.frame(f"two-{index}", pictures[index], TEST_CAPTIONER, models[index], 0.0)
                answers[index].append(stats)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and all(not thread.is_alive() for thread in threads)
    for index, label in ((0, "circle"), (1, "square")):
        counts = [stats["frames_processed"] + stats["frames_dropped"] for stats in answers[index]]
        assert counts == list(range(1, 13)), counts  # its own stream, counted from its first frame
        assert answers[index][-1]["key_frames"] >= 1 and answers[index][-1]["fps"] > 0
        assert {found["label"] for found in answers[index][-1]["instances"]} <= {label}


@pytest.mark.parametrize(
    "label, said",
    [("person", "4 people"), ("skis", "4 pairs of skis"), ("mouse", "4 mice"), ("tv", "4 TVs")],
)
def test_the_photo_tabs_counts_and_description_word_a_count_alike(app_models, tmp_path, photo, label, said):
    """Labels whose plural is not "+s": the objects line (pipeline.render.describe_objects), the description and the
    CLI's count line (pipeline.describe.count_objects) all say the same words."""
    from helpers import save_tiny_segmenter

    from pipeline import ModelSpec, registered_models
    from pipeline.describe import count_objects

    categories = ["__background__", label, "dog"]
    directory = save_tiny_segmenter(tmp_path / "labels", categories=categories, favourite=1, box_detections_per_img=4)
    with registered_models([ModelSpec("test-labels", "segmenter", directory, "tiny random Mask R-CNN: labels")]):
        service = Service(ModelCache(device="cpu"), ModelMenus([TEST_CAPTIONER], ["test-labels"]))
        try:
            analysis = service.photos.photo(photo, TEST_CAPTIONER, "test-labels", caption_options={}, threshold=0.3)
            shown = service.photos.page(analysis, threshold=0.3, opacity=0.5, views=["objects"])
        finally:
            service.close()
    assert shown["objects"] == said
    assert said in shown["description"], shown["description"]
    assert count_objects([{"label": label}] * 4) == said


def test_a_trained_models_note_carries_its_card_summary_and_no_path(tmp_path):
    from helpers import save_tiny_blip

    from pipeline import ModelSpec, registered_models
    from pipeline.model_card import CardFacts, write_model_card

    folder = tmp_path / "runs" / "blip-shapes"
    save_tiny_blip(folder)
    facts = CardFacts(kind="captioner", base_model=str(tmp_path / "blip"), dataset="shapes", steps=30,
                      metrics={"BLEU-4": 0.4123, "CIDEr": 1.5, "METEOR": 0.3}, evaluated_on="4 validation images",
                      command=f"python -m train.caption --output_dir {folder}")  # fmt: skip
    spec = ModelSpec("finetuned", "captioner", str(folder), "fine-tuned captioner set by PIPELINE_FINETUNED_CAPTIONER")
    with registered_models([spec]):
        service = Service(ModelCache(device="cpu"), ModelMenus(["finetuned"], [CIRCLES]))
        plain = service.photos.model_note("captioner", "finetuned")
        write_model_card(folder, facts)
        note = service.photos.model_note("captioner", "finetuned")
        service.close()
    assert plain == "**finetuned**: fine-tuned captioner set by PIPELINE_FINETUNED_CAPTIONER."
    assert note == (
        f"{plain} Fine-tuned from a local model on shapes (30 steps); BLEU-4 0.412, CIDEr 1.500 "
        "on 4 validation images."
    )
    assert str(tmp_path) not in note


def test_an_answer_runner_answers_elsewhere_what_the_photo_threads_would(models, photo):
    """ZeroGPU's path: the question goes through the answer runner (there a spaces.GPU function calling answer_here),
    with the same answer as in the photo threads."""
    from pipeline.serve.zerogpu import gpu

    calls = []

    @gpu(duration=20)  # without the spaces package (here) the function itself
    def on_gpu(*arguments):
        calls.append(arguments[0])
        return elsewhere.models.answer_here(*arguments)

    menus = ModelMenus([TEST_CAPTIONER], [CIRCLES], answerers=[TEST_ANSWERER])
    elsewhere = Service(ModelCache(device="cpu"), menus, answer_runner=on_gpu)
    here = Service(ModelCache(device="cpu"), menus)
    try:
        for question in ("How many circles?", "What colour is the circle?"):
            asked = [
                service.endpoints.ask(photo, question, CIRCLES, TEST_ANSWERER, {}) for service in (elsewhere, here)
            ]
            assert asked[0] == asked[1]
        assert calls == ["How many circles?", "What colour is the circle?"]
    finally:
        elsewhere.close()
        here.close()


def test_a_model_failing_on_a_live_frame_or_a_photo_is_a_request_error_and_the_next_call_works(
    service, photo, monkeypatch
):
    from pipeline.serve.models import model_failures
    from pipeline.stream import LiveStream

    with pytest.raises(RequestError, match="takes no prompt"), model_failures("image"):
        raise ValueError("this model takes no prompt")
    original = LiveStream.process

    def out_of_memory(self, image):
        raise RuntimeError("not enough memory")

    monkeypatch.setattr(LiveStream, "process", out_of_memory)
    with pytest.raises(RequestError, match="The model failed on this frame: not enough memory") as failed:
        service.live.frame("failing", photo, TEST_CAPTIONER, "test-circles", 0.5)
    assert failed.value.title == "Model failed"
    monkeypatch.setattr(LiveStream, "process", original)
    _, _, stats = service.live.frame("failing", photo, TEST_CAPTIONER, "test-circles", 0.5)
    assert stats["frames_processed"] >= 1 and "instances" in stats
