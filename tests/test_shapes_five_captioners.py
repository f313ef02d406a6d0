"""The committed shapes-git and shapes-vit-gpt2 captioners, and the five offline shapes captioners (one per caption
family) offered by the offline app and compared side by side through ``/compare`` on a served app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import EXAMPLES

from pipeline import load_captioner
from pipeline.catalog import availability, get_spec
from pipeline.evaluation import evaluate_captioner
from train import make_shapes_models, shapes

#: The offline shapes captioner of each family, in the order the Compare table shows them.
FIVE = {
    "shapes": "blip",
    "shapes-lstm": "attention-lstm",
    "shapes-clip-prefix": "clip-prefix",
    "shapes-git": "git",
    "shapes-vit-gpt2": "vision-encoder-decoder",
}
#: The bars of the two new ones on the held-out split (300 pictures of seed 1, never seen in training).
BARS = {"BLEU-4": 0.50, "CIDEr": 2.0}
NEW = {"shapes-git": "git", "shapes-vit-gpt2": "vit-gpt2"}


def _words(text: str) -> set[str]:
    return set(text.lower().rstrip(".").split())


@pytest.mark.parametrize("name", sorted(NEW))
def test_the_committed_captioner_loads_as_float32_and_captions_with_beam_search(name):
    folder = Path(get_spec(name, "captioner").source)
    assert folder == make_shapes_models.WEIGHTS_DIR / make_shapes_models.OWN_CAPTIONERS[NEW[name]][0]
    assert set(make_shapes_models.MODEL_FILES[NEW[name]]) <= {path.name for path in folder.iterdir()}
    assert sum(path.stat().st_size for path in folder.iterdir()) <= 5 * 1024 * 1024  # float16 on disk
    captioner = load_captioner(name, device="cpu")
    assert captioner.family == FIVE[name]
    assert {parameter.dtype for parameter in captioner.model.parameters()} == {torch.float32}
    picture = str(EXAMPLES / "shapes.png")  # a yellow triangle, a blue circle and a red triangle
    for beams in (1, 3):
        words = _words(captioner(picture, num_beams=beams)["caption"])
        assert words <= set(shapes.vocabulary()) and {"yellow", "blue", "red"} <= words, words
    fast = load_captioner(name, device="cpu", profile="fast")
    assert _words(fast(picture)["caption"]) <= set(shapes.vocabulary())
    metrics = json.loads((folder / "heldout_metrics.json").read_text())
    assert metrics["images"] == make_shapes_models.TEST_IMAGES
    assert metrics["BLEU-4"] >= BARS["BLEU-4"] and metrics["CIDEr"] >= BARS["CIDEr"], metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NEW))
def test_the_committed_captioner_meets_the_bars_on_the_held_out_split(name, tmp_path):
    root = shapes.write_split(tmp_path, "test", make_shapes_models.TEST_IMAGES, seed=make_shapes_models.HELDOUT_SEED)
    figures = evaluate_captioner(load_captioner(name, device="cpu", batch_size=16), root, meteor=False)
    assert figures["BLEU-4"] >= BARS["BLEU-4"] and figures["CIDEr"] >= BARS["CIDEr"], figures
    recorded = json.loads((Path(get_spec(name, "captioner").source) / "heldout_metrics.json").read_text())
    assert figures["CIDEr"] == pytest.approx(recorded["CIDEr"], abs=0.05)  # the committed figures are this model's


def test_the_offline_app_offers_the_five_shapes_captioners():
    from pipeline.serve.config import build_service, parse_args

    service, chosen = build_service(parse_args(["--offline", "--captioner", "shapes", "--segmenter", "shapes"]))
    try:
        assert chosen["captioner"] == "shapes"
        assert set(FIVE) <= set(service.photos.available("captioner"))
        assert all(availability(name, "captioner")[0] for name in FIVE)
    finally:
        service.close()


def test_the_five_shapes_captioners_compare_side_by_side_through_the_app():
    from gradio_client import Client, handle_file
    from helpers import serve

    photo = str(EXAMPLES / "shapes.png")
    expected = {name: load_captioner(name, device="cpu")(photo)["caption"] for name in FIVE}
    assert len(set(expected.values())) >= 3  # five models of five families: not one answer repeated
    demo, url = serve(captioners=tuple(FIVE), segmenters=("shapes",))
    try:
        client = Client(url, verbose=False)
        rows = client.predict(handle_file(photo), list(FIVE), {"max_new_tokens": 30}, api_name="/compare")
    finally:
        demo.close()
    assert [row["name"] for row in rows] == list(FIVE)
    assert all(row["error"] is None and row["milliseconds"] > 0 for row in rows), rows
    assert {row["name"]: row["caption"] for row in rows} == expected


@pytest.mark.browser
def test_the_compare_tab_shows_the_five_captions_side_by_side(browser):
    from helpers import RESULT_TIMEOUT_MS, SCREENSHOTS, open_page, serve

    from pipeline.captioning import caption_sentence

    photo = EXAMPLES / "shapes.png"
    expected = {name: load_captioner(name, device="cpu")(str(photo))["caption"] for name in FIVE}
    demo, url = serve(captioners=tuple(FIVE), segmenters=("shapes",))
    try:
        page = open_page(browser, url)
        page.get_by_role("tab", name="Compare").click()
        page.set_input_files("#compare-in input[type=file]", str(photo))
        page.wait_for_selector("#compare-in img", timeout=RESULT_TIMEOUT_MS)
        for name in FIVE:  # every one loads here: the first two are ticked by default, the others are ticked now
            label = page.locator("#compare-captioners label", has_text=f"{name} —")
            assert "not available" not in label.inner_text()
            if not label.locator("input").is_checked():
                label.locator("input").check()
        assert page.locator("#compare-captioners input:checked").count() == 5
        page.click("#compare-run")
        names = json.dumps(list(FIVE))
        page.wait_for_function(
            f"() => {names}.every(name => document.querySelector('#compare-table').innerText.includes(name + '\\n'))",
            timeout=RESULT_TIMEOUT_MS,
        )
        # The table's text, row by row: the captioner's name on a line of its own, then its caption, then its ms.
        lines = [line.strip() for line in page.inner_text("#compare-table").splitlines() if line.strip()]
        shown = {line: lines[index + 1] for index, line in enumerate(lines) if line in FIVE}
        times = {line: lines[index + 2] for index, line in enumerate(lines) if line in FIVE}
        page.screenshot(path=str(SCREENSHOTS / "compare-five-shapes.png"), full_page=True)
        page.context.close()
    finally:
        demo.close()
    assert set(shown) == set(FIVE) and all(time.isdigit() and int(time) > 0 for time in times.values()), lines
    for name, caption in expected.items():
        assert shown[name].strip() == caption_sentence(caption), (name, shown[name])
