"""The page on a phone, measured in a real browser (Debian's chromium under Playwright, the test models on 127.0.0.1):
at 360, 390 and 414 px the result pictures fill the width, nothing scrolls sideways, every control is a 44 x 44 px
touch target, the text is 16 px or more, the answer comes first; at 1280 px the two columns stay. The live tab starts
on the rear camera (Chromium's fake camera takes ``facingMode``) and switches to the front one.

Screenshots go to ``artifacts/screenshots/`` for people to look at; the assertions are on rendered sizes.
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from helpers import EXAMPLES, RESULT_TIMEOUT_MS, SCREENSHOTS, open_page, upload, wait_for_caption

pytestmark = pytest.mark.browser

PHONES = [(360, 740), (390, 844), (414, 896)]
PICTURES = ("#annotated img", "#semantic img", "#panoptic img")
#: WCAG 2.5.5: a pointer target of at least 44 x 44 CSS px.
TARGET = 44

#: Visible controls whose target is under TARGET px either way: buttons, tabs, links, fields, sliders; a check box
#: or a radio button counts with its label, which takes the tap too.
SMALL_TARGETS = """(target) => {
  const small = [];
  for (const element of document.querySelectorAll("button, [role=tab], a[href], input, select, textarea")) {
    if (!element.checkVisibility({visibilityProperty: true, opacityProperty: true})) { continue; }
    const own = element.getBoundingClientRect();
    if (own.width < 2 || own.height < 2) { continue; }  // visually hidden, never tapped
    const tapped = ["checkbox", "radio"].includes(element.type) ? (element.closest("label") || element) : element;
    const box = tapped.getBoundingClientRect();
    if (box.width < target || box.height < target) {
      const name = element.getAttribute("aria-label") || element.innerText || element.id || element.type;
      small.push(`${name.trim().slice(0, 30)}: ${Math.round(box.width)} x ${Math.round(box.height)}`);
    }
  }
  return small;
}"""

#: Text under 16 px that is shown in the page's content (text nodes, and what fields hold).
SMALL_TEXT = """() => {
  const small = [];
  const visible = (e) => e.checkVisibility({visibilityProperty: true, opacityProperty: true})
    && e.getBoundingClientRect().width > 1;
  const walker = document.createTreeWalker(document.querySelector(".contain"), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, element = node.parentElement;
    if (!node.textContent.trim() || !visible(element)) { continue; }
    const size = parseFloat(getComputedStyle(element).fontSize);
    if (size < 16) { small.push(`${node.textContent.trim().slice(0, 30)}: ${size} px`); }
  }
  for (const field of document.querySelectorAll(".contain textarea, .contain input")) {
    const size = parseFloat(getComputedStyle(field).fontSize);
    if (visible(field) && size < 16) { small.push(`${field.getAttribute("aria-label")}: ${size} px`); }
  }
  return small;
}"""


def rendered(page, selector: str) -> dict:
    return page.eval_on_selector(
        selector, "e => { const r = e.getBoundingClientRect(); return {left: r.left, top: r.top + scrollY,"
        " width: r.width, height: r.height, bottom: r.bottom}; }",
    )  # fmt: skip


def content_width(page) -> float:
    """The width the page gives its content: the viewport less the page's side margins."""
    return page.eval_on_selector("main.contain", "e => e.clientWidth")


def viewport_width(page) -> int:
    return page.evaluate("() => document.documentElement.clientWidth")


def scroll_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def analyzed_on(browser, url, width: int, height: int):
    page = open_page(browser, url, width=width, height=height)
    upload(page, EXAMPLES / "shapes.png")
    wait_for_caption(page)
    # Not scrolled to: a result a screen or two down must be loaded and drawn all the same (no lazy 0 x 0).
    page.wait_for_function(
        "(pictures) => pictures.every((selector) => { const image = document.querySelector(selector);"
        " return image && image.complete && image.naturalWidth > 0 && image.getBoundingClientRect().height > 0; })",
        arg=list(PICTURES),
        timeout=RESULT_TIMEOUT_MS,
    )
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value.length > 0", timeout=RESULT_TIMEOUT_MS
    )
    return page


def test_a_photo_on_a_phone_fills_the_width_answer_first_with_touch_sized_controls(browser, server):
    """One analysis, looked at on each phone (the page's layout follows the viewport, as on a phone turned or a
    window resized), then on a desktop."""
    page = analyzed_on(browser, server, *PHONES[1])
    page.click("#settings button")  # open, so that its sliders, boxes and radio buttons are measured as well
    page.locator("#views").wait_for()
    for width, height in PHONES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function("(width) => document.documentElement.clientWidth === width", arg=width)
        phone_layout_holds(page, width)
        page.screenshot(path=str(SCREENSHOTS / f"photo-phone-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_function("() => document.documentElement.clientWidth === 1280")
    desktop_layout_holds(page)
    page.context.close()


def phone_layout_holds(page, width: int) -> None:
    content = content_width(page)
    assert content >= 0.9 * width, f"the page's margins take {width - content} of {width} px"
    sizes = {picture: rendered(page, picture) for picture in PICTURES}
    print(f"\n{width} px: content {content} px, pictures " + ", ".join(
        f"{picture.split()[0]} {size['width']:.0f} x {size['height']:.0f}" for picture, size in sizes.items()
    ))  # fmt: skip
    for picture, size in sizes.items():
        assert size["width"] >= 0.9 * content and size["height"] > 0, (width, picture, size, content)
    assert scroll_width(page) == viewport_width(page) == width, f"the page scrolls sideways at {width} px"
    # The answer first: the caption, the outlined picture, what is where, the objects, then the other views.
    order = ["#caption", "#annotated", "#description", "#objects-list", "#semantic", "#panoptic"]
    tops = [rendered(page, selector)["top"] for selector in order]
    assert tops == sorted(tops), (width, dict(zip(order, tops)))
    # The objects line and the description word the counts alike.
    objects = page.input_value("#objects-summary textarea")
    assert re.fullmatch(r"\d+ \w+(, \d+ \w+)*", objects), objects
    description = page.input_value("#description textarea")
    assert all(count in description for count in objects.split(", ")), (objects, description)
    assert page.evaluate(SMALL_TARGETS, TARGET) == [], width
    assert page.evaluate(SMALL_TEXT) == [], width


def desktop_layout_holds(page) -> None:
    caption, annotated = rendered(page, "#caption"), rendered(page, "#annotated img")
    assert annotated["left"] >= caption["left"] + caption["width"], "the pictures moved under the words"
    assert annotated["width"] >= 0.25 * 1280  # 384 px for shapes.png before and after the phone layout
    for picture in ("#semantic img", "#panoptic img"):
        size = rendered(page, picture)
        assert size["width"] >= 250 and size["height"] > 0, (picture, size)
    semantic, panoptic = rendered(page, "#semantic"), rendered(page, "#panoptic")
    assert semantic["top"] == panoptic["top"], "the two maps no longer sit side by side"
    assert scroll_width(page) == 1280


def facing_mode(page) -> str | None:
    """The camera the live preview's stream was asked for (Chromium's fake camera keeps the constraint)."""
    return page.evaluate(
        "() => { const video = document.querySelector('#live-in video');"
        " const track = video && video.srcObject && video.srcObject.getVideoTracks()[0];"
        " if (!track || track.readyState !== 'live') { return null; }"
        " const mode = track.getConstraints().facingMode; return mode && (mode.ideal || mode.exact || mode); }"
    )


def processed(page) -> int:
    found = re.search(r"(\d+) processed", page.inner_text("#live-stats"))
    return int(found.group(1)) if found else 0


def test_the_live_tab_on_a_phone_starts_on_the_rear_camera_and_switches(browser, server):
    page = open_page(browser, server, width=390, height=844)
    page.get_by_role("tab", name="Live camera").click()
    rear = page.get_by_role("radio", name="Rear camera")
    front = page.get_by_role("radio", name="Front camera (selfie)")
    assert rear.is_checked() and not front.is_checked()
    # The caption and its speech come before the pictures, and "Speak each new caption" is on the first screen.
    speak = page.get_by_role("checkbox", name="Speak each new caption")
    assert page.evaluate("() => window.scrollY") == 0
    assert speak.bounding_box()["y"] + speak.bounding_box()["height"] <= 844
    assert rendered(page, "#live-caption")["top"] < rendered(page, "#live-in")["top"]
    page.locator("#live-in button", has_text="Click to Access Webcam").click()
    page.locator("#live-in button", has_text="Record").click()
    page.wait_for_function("() => document.querySelector('#live-caption textarea').value.length > 0", timeout=120_000)
    page.wait_for_function("() => window.liveOverlay && window.liveOverlay.updates >= 2", timeout=60_000)
    assert facing_mode(page) == "environment"
    content = content_width(page)
    # One picture, the camera's, at the full width, its objects outlined over it at its size.
    # (the layer, not its drawing: each frame replaces the drawing, and a replaced one measures 0 x 0)
    video, drawing = rendered(page, "#live-in video"), rendered(page, "#live-in .live-overlay")
    assert video["width"] >= 0.9 * content and video["height"] > 0, (video, content)
    assert drawing == pytest.approx(video, abs=1.5), (drawing, video)
    assert page.locator("#live-in .live-overlay svg polygon").count() >= 1
    assert scroll_width(page) == 390
    assert page.evaluate(SMALL_TARGETS, TARGET) == []
    page.screenshot(path=str(SCREENSHOTS / "live-phone-390-rear.png"), full_page=True)
    serious = [v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    # Switching while the camera runs: the preview's stream is the front camera's, and frames keep coming.
    front.check()
    page.wait_for_function(
        "() => { const v = document.querySelector('#live-in video'); const t = v && v.srcObject"
        " && v.srcObject.getVideoTracks()[0]; return t && t.readyState === 'live'"
        " && JSON.stringify(t.getConstraints().facingMode).includes('user'); }",
        timeout=20_000,
    )
    assert facing_mode(page) == "user"
    seen = processed(page)
    page.wait_for_function(
        "(seen) => Number((document.querySelector('#live-stats').innerText.match(/(\\d+) processed/) || [0, 0])[1])"
        " >= seen + 3",
        arg=seen,
        timeout=60_000,
    )
    page.locator("#live-in button", has_text="Stop").click()
    page.context.close()
