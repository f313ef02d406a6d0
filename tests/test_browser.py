"""The app in a real browser: Debian's chromium driven by Playwright, the server on 127.0.0.1, tiny test models.

Screenshots are saved under ``artifacts/screenshots/`` (git-ignored) for people to look at.
Run alone with ``pytest -m browser``; skipped when chromium or Playwright is missing.
"""

from __future__ import annotations

import re
import time

import pytest
from helpers import (
    EXAMPLES,
    RESULT_TIMEOUT_MS,
    SCREENSHOTS,
    open_page,
    page_width,
    upload,
    wait_for_caption,
    wait_for_picture,
)
from PIL import Image

from pipeline import load_captioner
from pipeline.captioning import caption_sentence
from pipeline.stream import FpsMeter

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def url(server):
    """The app of conftest's ``server`` fixture (the test models, on 127.0.0.1), by the name these tests use."""
    return server


def test_upload_shows_the_caption_the_objects_and_reads_aloud(browser, url, app_models):
    page = open_page(browser, url)
    photo = EXAMPLES / "cat.jpg"
    upload(page, photo)
    caption = wait_for_caption(page)
    wait_for_picture(page)
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value.includes('circle')",
        timeout=RESULT_TIMEOUT_MS,
    )
    expected = load_captioner(app_models["captioner"], device="cpu")(Image.open(photo))["caption"]
    assert caption == caption_sentence(expected)
    assert page.input_value("#objects-summary textarea") == "4 circles"
    assert page.locator("#objects-table").inner_text().count("circle") == 4
    assert page.locator("#semantic img").count() == 1 and page.locator("#panoptic img").count() == 1
    assert re.search(r"Caption \d+ ms", page.inner_text("#timings"))
    assert page.locator("#json a").first.get_attribute("href")
    # The caption is big enough to read, and the page fits the screen.
    assert float(page.eval_on_selector("#caption textarea", "e => parseFloat(getComputedStyle(e).fontSize)")) >= 24
    assert page_width(page) <= 1280
    # Read aloud hands the caption to the browser's speech synthesis.
    page.evaluate(
        "() => { window.__spoken = []; window.speechSynthesis.speak = (u) => window.__spoken.push(u.text); }"
    )
    page.click("#read-aloud")
    page.wait_for_function("() => window.__spoken.length > 0", timeout=10_000)
    spoken = page.evaluate("() => window.__spoken[0]")
    description = page.input_value("#description textarea")
    assert spoken == description and description.startswith(caption) and "circle" in description
    page.screenshot(path=str(SCREENSHOTS / "photo-desktop-1280x800.png"), full_page=True)
    page.screenshot(path=str(SCREENSHOTS / "photo-desktop-first-screen.png"))
    page.context.close()


def test_phone_width_fits_and_stays_legible(browser, url):
    page = open_page(browser, url, width=390, height=844)
    upload(page, EXAMPLES / "coffee.jpg")
    wait_for_caption(page)
    wait_for_picture(page)
    time.sleep(0.5)  # let images lay out
    assert page_width(page) <= 390, "the page scrolls sideways on a phone"
    assert float(page.eval_on_selector("#caption textarea", "e => parseFloat(getComputedStyle(e).fontSize)")) >= 20
    # The caption is reached before the model settings and the pictures.
    caption_top = page.eval_on_selector("#caption", "e => e.getBoundingClientRect().top")
    assert caption_top < page.eval_on_selector("#annotated", "e => e.getBoundingClientRect().top")
    page.screenshot(path=str(SCREENSHOTS / "photo-phone-390.png"), full_page=True)
    page.context.close()


def test_switching_the_segmenter_changes_the_result(browser, url):
    page = open_page(browser, url)
    upload(page, EXAMPLES / "shapes.png")
    wait_for_caption(page)
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value === '4 circles'", timeout=RESULT_TIMEOUT_MS
    )
    before = page.get_attribute("#annotated img", "src")
    page.click("#segmenter input")
    page.get_by_role("option", name=re.compile("test-squares")).click()
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value === '4 squares'", timeout=RESULT_TIMEOUT_MS
    )
    assert page.locator("#objects-table").inner_text().count("square") == 4
    assert page.get_attribute("#annotated img", "src") != before
    assert "test-squares" in page.inner_text("#timings")
    assert "finds squares" in page.inner_text("#segmenter-note")
    # Choosing a model that cannot load here says why, in the page.
    page.click("#segmenter input")
    page.get_by_role("option", name=re.compile("maskrcnn-v2")).click()
    page.wait_for_function(
        "() => document.querySelector('#segmenter-note').innerText.includes('cannot be used here')", timeout=20_000
    )
    page.wait_for_selector(".toast-body", timeout=20_000)
    assert "maskrcnn-v2" in page.locator(".toast-body").first.inner_text()
    time.sleep(0.6)
    page.screenshot(path=str(SCREENSHOTS / "segmenter-unavailable.png"))
    page.context.close()


def test_display_settings_redraw_without_running_the_models(browser, url):
    page = open_page(browser, url)
    upload(page, EXAMPLES / "cat.jpg")
    wait_for_caption(page)
    page.wait_for_selector("#semantic img", timeout=RESULT_TIMEOUT_MS)
    page.click("#settings button")  # open the accordion
    page.locator("#views label", has_text="Semantic map").click()
    page.wait_for_function(
        "() => document.querySelector('#timings').innerText.includes('models not re-run')", timeout=30_000
    )
    assert not page.locator("#semantic").is_visible()
    assert page.locator("#panoptic img").count() == 1
    # Beam search changes the caption's decoding only: the segmentation is reused, not recomputed.
    page.locator("#decoding label", has_text="Beam search").click()
    page.wait_for_function(
        "() => document.querySelector('#timings').innerText.includes('reused: segmentation')",
        timeout=RESULT_TIMEOUT_MS,
    )
    page.context.close()


def test_a_bad_file_shows_a_message_and_the_next_upload_works(browser, url, tmp_path):
    page = open_page(browser, url)
    bad = tmp_path / "holiday.png"
    bad.write_text("this is a text file with an image's name")
    upload(page, bad)
    page.wait_for_selector(".toast-body", timeout=RESULT_TIMEOUT_MS)
    message = page.locator(".toast-body").first.inner_text()
    assert re.search(r"(?i)not an image", message), message
    time.sleep(0.6)  # the notice fades in
    page.screenshot(path=str(SCREENSHOTS / "bad-file-error.png"))
    upload(page, EXAMPLES / "astronaut.jpg")
    assert wait_for_caption(page)
    wait_for_picture(page)
    page.context.close()


def overlay_figures(page) -> dict:
    """What the page's live overlay script saw: outline drawings shown, and the drawing's and the video's boxes."""
    return page.evaluate(
        "() => { const o = window.liveOverlay; const svg = document.querySelector('#live-in .live-overlay svg');"
        " const video = document.querySelector('#live-in video'); const box = (e) => { if (!e) return null;"
        " const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };"
        " return { updates: o.updates, times: o.times.slice(), drawing: box(svg), video: box(video),"
        " polygons: svg ? svg.querySelectorAll('polygon').length : 0 }; }"
    )


def test_live_tab_outlines_the_camera_several_times_a_second(browser, url):
    page = open_page(browser, url)
    page.get_by_role("tab", name="Live camera").click()
    page.locator("#live-in button", has_text="Click to Access Webcam").click()
    page.locator("#live-in button", has_text="Record").click()
    page.wait_for_function("() => window.liveOverlay && window.liveOverlay.updates >= 5", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#live-caption textarea').value.length > 0", timeout=30_000)
    stats = page.inner_text("#live-stats")
    assert re.search(r"\d+\.\d frames/s", stats) and "circle" in stats and "key frames" in stats
    # The outlines are drawn over the camera's own preview, on its box, no picture sent back.
    figures = overlay_figures(page)
    assert figures["polygons"] >= 1
    assert figures["drawing"] == pytest.approx(figures["video"], abs=1.5), figures
    assert page.locator("#live-out").count() == 0
    # The camera streams at 640x480, not the photo camera's size: the browser encodes every frame it sends.
    assert page.evaluate("() => document.querySelector('#live-in video').videoWidth") == 640
    # Several drawings a second, and the page's frames/s says what the browser saw (within 25%).
    # Both over the same last seconds (the page's figure is the server's over FpsMeter's window, sent twice a
    # second): on a busy machine the rate moves from one few seconds to the next.
    time.sleep(6.0)
    figures = overlay_figures(page)
    said = float(re.search(r"([\d.]+) frames/s", page.inner_text("#live-stats")).group(1))
    window_ms = 1000 * FpsMeter().window_s
    times = [t for t in figures["times"] if t >= figures["times"][-1] - window_ms]
    seen = (len(times) - 1) / ((times[-1] - times[0]) / 1000)
    assert seen >= 3.0, f"the outlines were redrawn {seen:.1f} times a second"
    assert abs(said - seen) <= 0.25 * seen, (said, seen)
    page.screenshot(path=str(SCREENSHOTS / "live-desktop.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    time.sleep(1.0)
    assert page_width(page) <= 390
    figures = overlay_figures(page)
    assert figures["drawing"] == pytest.approx(figures["video"], abs=1.5), figures
    page.screenshot(path=str(SCREENSHOTS / "live-phone-390.png"), full_page=True)
    page.locator("#live-in button", has_text="Stop").click()
    page.context.close()


def test_the_compare_tab_captions_one_photo_with_each_chosen_captioner(browser, url, app_models):
    page = open_page(browser, url)
    page.get_by_role("tab", name="Compare").click()
    photo = EXAMPLES / "cat.jpg"
    page.set_input_files("#compare-in input[type=file]", str(photo))
    page.wait_for_selector("#compare-in img", timeout=RESULT_TIMEOUT_MS)
    checked = page.locator("#compare-captioners input:checked")
    # Only the captioners that load here are ticked by default: test-tiny, not blip-base, which says why it is not.
    assert checked.count() == 1
    blip = page.locator("#compare-captioners label", has_text="blip-base")
    assert "not available here: " in blip.inner_text() and not blip.locator("input").is_checked()
    assert "Only 1 of the captioners" in page.inner_text("#compare-note")
    blip.click()  # it can still be chosen, and its row then says it cannot run
    page.click("#compare-run")
    page.wait_for_function(
        "() => document.querySelector('#compare-table').innerText.includes('blip-base')", timeout=RESULT_TIMEOUT_MS
    )
    table = page.inner_text("#compare-table")
    expected = load_captioner(app_models["captioner"], device="cpu")(Image.open(photo))["caption"]
    assert "test-tiny" in table and caption_sentence(expected) in table
    # blip-base cannot be loaded here: its row says so, in words and without a server path.
    assert "error:" in table and "/" not in table.split("blip-base", 1)[1].split("\n")[0]
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)


def test_stuff_shows_in_both_views_with_words(browser, app_models):
    """The page with the shapes stuff model on its menu: choosing it fills both views around the objects (the
    semantic map's legend under it) and the description says where the sky and the grass are."""
    from helpers import serve

    demo, address = serve(captioners=("shapes",), segmenters=("shapes",), stuff=("shapes",))
    try:
        page = open_page(browser, address)
        assert "shapes" in page.input_value("#stuff input")
        upload(page, EXAMPLES / "shapes-outdoors.png")
        wait_for_caption(page)
        page.wait_for_function(
            "() => document.querySelector('#description textarea').value.endsWith('Sky at the top, grass at the "
            "bottom.')",
            timeout=RESULT_TIMEOUT_MS,
        )
        for view in ("semantic", "panoptic"):
            wait_for_picture(page, f"#{view} img")
        sizes = {
            view: page.eval_on_selector(f"#{view} img", "e => [e.naturalWidth, e.naturalHeight]")
            for view in ("semantic", "panoptic")
        }
        assert sizes["panoptic"][0] == sizes["panoptic"][1]  # the square picture
        assert sizes["semantic"][1] > sizes["semantic"][0]  # the same picture and its legend below
        assert "+ shapes" in page.inner_text("#timings")
        page.screenshot(path=str(SCREENSHOTS / "photo-stuff.png"), full_page=True)
        # "none" takes the stuff away again.
        page.click("#stuff input")
        page.get_by_role("option", name=re.compile("^none")).click()
        page.wait_for_function(
            "() => !document.querySelector('#description textarea').value.includes('Sky')", timeout=RESULT_TIMEOUT_MS
        )
        page.context.close()
    finally:
        demo.close()
