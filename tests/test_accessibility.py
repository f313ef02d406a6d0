"""The app for people who use a keyboard or a screen reader, in a real browser: axe-core's checks over the photo tab
(after an analysis, at desktop and phone widths) and the live tab, the accessibility tree, a keyboard-only path,
the grounded caption's highlight over the picture, and questions about the photo (Enter asks; the answer in large
type, in a live region, spoken, its objects outlined).

axe-core comes bundled in ``axe-playwright-python``; each axe run prints its counts by impact and by rule, so that
``pytest -s`` shows what is left (minor and moderate findings are reported, serious and critical ones fail).
Run alone with ``pytest -m browser tests/test_accessibility.py``.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from helpers import (
    EXAMPLES,
    RESULT_TIMEOUT_MS,
    SCREENSHOTS,
    TEST_ANSWERER,
    TEST_CAPTIONER,
    TEST_SEGMENTERS,
    open_page,
    serve,
    upload,
    wait_for_caption,
    wait_for_picture,
)

pytestmark = pytest.mark.browser

#: Impacts that fail a test; axe's others are "moderate" and "minor".
BLOCKING = ("serious", "critical")
#: Wraps the browser's own speech synthesis (the real API, still called) to record what the page asks it to say.
RECORD_SPEECH = """
window.__spoken = []; window.__cancelled = 0;
const synthesis = window.speechSynthesis;
const speak = synthesis.speak.bind(synthesis), cancel = synthesis.cancel.bind(synthesis);
synthesis.speak = (utterance) => {
  window.__spoken.push({text: utterance.text, rate: utterance.rate}); speak(utterance);
};
synthesis.cancel = () => { window.__cancelled += 1; cancel(); };
"""


@pytest.fixture(scope="module")
def server(app_models):
    """The app on the offline shapes models first (their captions name the shapes they find), the test models after."""
    demo, url = serve(
        captioners=("shapes", TEST_CAPTIONER), segmenters=("shapes", *TEST_SEGMENTERS), answerers=(TEST_ANSWERER,)
    )
    try:
        yield url
    finally:
        demo.close()


def axe_violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now (all of axe's default rules)."""
    from axe_playwright_python.sync_playwright import Axe

    return Axe().run(page).response["violations"]


def axe_counts(violations: list[dict]) -> tuple[Counter, Counter]:
    """Failing elements by impact and by ``rule (impact)``."""
    by_impact, by_rule = Counter(), Counter()
    for violation in violations:
        by_impact[violation["impact"]] += len(violation["nodes"])
        by_rule[f"{violation['id']} ({violation['impact']})"] += len(violation["nodes"])
    return by_impact, by_rule


def check_axe(page, where: str) -> None:
    # Gradio fades a component to 20% opacity while its event runs: on a busy machine the last one may still be
    # fading back, and axe would read its colours at that moment.
    page.wait_for_function("() => !document.querySelector('.pending')", timeout=30_000)
    page.wait_for_timeout(300)  # the fade's transition
    violations = axe_violations(page)
    by_impact, by_rule = axe_counts(violations)
    print(f"\naxe-core, {where}: by impact {dict(by_impact)}; by rule {dict(by_rule)}")
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[node['target'] for node in v['nodes']]}"
        for v in violations
        if v["impact"] in BLOCKING
    ]
    assert not blocking, "\n".join(blocking)


def analyzed_page(browser, server, width: int = 1280, height: int = 800):
    page = open_page(browser, server, width=width, height=height, init_script=RECORD_SPEECH)
    upload(page, EXAMPLES / "shapes.png")
    wait_for_caption(page)
    wait_for_picture(page)
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value.length > 0", timeout=RESULT_TIMEOUT_MS
    )
    return page


@pytest.mark.parametrize("sizes", [[(1280, 800)], [(390, 844), (360, 740), (414, 896)]], ids=["desktop", "phones"])
def test_axe_finds_nothing_serious_on_the_photo_tab(browser, server, sizes):
    """One analysis per layout, checked at each of its sizes (the phones' layout follows the viewport)."""
    page = analyzed_page(browser, server, *sizes[0])
    for width, height in sizes:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function("(width) => document.documentElement.clientWidth === width", arg=width)
        check_axe(page, f"photo tab after an analysis, {width} px")
    page.context.close()


def test_live_tab_passes_axe_and_announces_each_new_caption_once(browser, server):
    page = open_page(browser, server, init_script=RECORD_SPEECH)
    page.get_by_role("tab", name="Live camera").click()
    page.locator("#live-in button", has_text="Click to Access Webcam").wait_for()
    check_axe(page, "live tab, before the camera starts")
    page.get_by_role("checkbox", name="Speak each new caption").check()
    page.locator("#live-in button", has_text="Click to Access Webcam").click()
    page.locator("#live-in button", has_text="Record").click()
    page.wait_for_function("() => document.querySelector('#live-caption textarea').value.length > 0", timeout=120_000)
    region = page.locator("[aria-live=polite]#live-announcer")
    page.wait_for_function("() => window.__spoken.length > 0", timeout=30_000)
    caption = page.input_value("#live-caption textarea")
    assert region.text_content() == caption and page.evaluate("() => window.__spoken[0].text") == caption
    # Frames keep coming; the same caption is neither spoken nor announced again.
    processed = lambda: int(re.search(r"(\d+) processed", page.inner_text("#live-stats")).group(1))  # noqa: E731
    seen = processed()
    page.wait_for_function(
        "(seen) => Number(document.querySelector('#live-stats').innerText.match(/(\\d+) processed/)[1]) >= seen + 4",
        arg=seen,
        timeout=60_000,
    )
    texts = page.evaluate("() => window.__spoken.map(s => s.text)")
    assert all(before != after for before, after in zip(texts, texts[1:])), texts
    assert processed() - seen > len(texts) - 1
    check_axe(page, "live tab, camera streaming")
    ask_about_the_camera(page)
    page.locator("#live-in button", has_text="Stop").click()
    page.context.close()


def ask_about_the_camera(page) -> None:
    """Questions on the live tab about the latest frame: Enter asks; the answer in large type, said once in the polite
    live region, spoken (reading answers aloud is on), its objects outlined over the camera, kept in a history."""
    page.locator("#live-ask-group").get_by_role("checkbox", name="Read answers aloud").check()
    box = page.get_by_role("textbox", name="Ask about what the camera shows")
    box.fill("How many circles are there?")
    box.press("Enter")
    page.wait_for_function(
        "() => { const s = document.querySelector('#live-answer .answer-sentence');"
        " return s && s.textContent.startsWith('There '); }",
        timeout=RESULT_TIMEOUT_MS,
    )
    sentence = page.text_content("#live-answer .answer-sentence")
    found = re.match(r"^There (?:is|are) (\d+|no) circles?\b", sentence)
    assert found, sentence
    circles = 0 if found.group(1) == "no" else int(found.group(1))
    asked = page.text_content("#live-answer .answer-question")
    assert asked == "You asked: How many circles are there? (answered from the objects found)", asked
    size = page.eval_on_selector("#live-answer .answer-sentence", "e => parseFloat(getComputedStyle(e).fontSize)")
    caption = page.eval_on_selector("#live-caption textarea", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 24 and size == caption, (size, caption)
    page.wait_for_function(
        "(s) => document.querySelector('[aria-live=polite]#live-answer-announcer').textContent === s", arg=sentence
    )
    page.wait_for_function("(s) => window.__spoken.some(said => said.text === s)", arg=sentence, timeout=10_000)
    # The circles it counted, outlined over the camera's preview, in a layer of their own on the video's box.
    page.wait_for_function(
        "(n) => { const svg = document.querySelector('#live-in .live-answer-overlay svg');"
        " return svg && svg.querySelectorAll('g').length === n; }",
        arg=circles,
        timeout=5_000,
    )
    layer = page.eval_on_selector("#live-in .live-answer-overlay", "e => e.getBoundingClientRect().toJSON()")
    video = page.eval_on_selector("#live-in video", "e => e.getBoundingClientRect().toJSON()")
    assert [layer[k] for k in ("x", "y", "width", "height")] == pytest.approx(
        [video[k] for k in ("x", "y", "width", "height")], abs=1.5
    )
    page.screenshot(path=str(SCREENSHOTS / "live-ask-answer.png"))
    # The Ask button asks too; the first answer stays in the camera's history.
    box.fill("Is there a triangle?")
    page.locator("#live-ask-button").click()
    page.wait_for_function(
        "() => { const q = document.querySelector('#live-answer .answer-question');"
        " return q && q.textContent.startsWith('You asked: Is there a triangle?'); }",
        timeout=RESULT_TIMEOUT_MS,
    )
    second = page.text_content("#live-answer .answer-sentence")
    assert re.match(r"^(Yes: \d+ triangles?|No, I see no triangle\.)", second), second
    history = page.get_by_role("list", name="Earlier questions about the camera").get_by_role("listitem")
    assert history.all_inner_texts() == [f"How many circles are there? {sentence}"]
    check_axe(page, "live tab, after two questions")


def test_caption_description_and_objects_are_reachable_by_role_and_name(browser, server):
    page = analyzed_page(browser, server)
    caption = page.get_by_role("textbox", name="What the photo shows")
    description = page.get_by_role("textbox", name="What is where")
    objects = page.get_by_role("list", name=re.compile(r"^Objects found, in reading order: \d+ objects?$"))
    assert description.input_value().startswith(caption.input_value())
    assert re.search(r"\d+ (triangle|circle|square)", description.input_value())
    items = objects.get_by_role("listitem")
    assert items.count() >= 1
    snapshot = page.locator("#objects-list").aria_snapshot()
    print("\n" + snapshot)
    assert re.search(r"- listitem: \"?(triangle|circle|square): (small|medium|large), ", snapshot)
    group = page.get_by_role("group", name="The caption, its objects marked")
    words = group.get_by_role("button", name=re.compile(r": \d+ objects? found$"))
    assert words.count() >= 1, group.aria_snapshot()
    expect_snapshot = page.locator("#grounded-caption").aria_snapshot()
    assert re.search(r'button "(triangle|circle|square)\w*[^"]*: \d+ objects? found"', expect_snapshot), (
        expect_snapshot
    )
    page.context.close()


def highlights(page) -> list[dict]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.object-highlight')).map(e => {"
        " const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; })"
    )


def inside_picture(page, boxes: list[dict]) -> bool:
    picture = page.eval_on_selector(
        "#annotated img", "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
    )
    left, top, right, bottom = picture
    return all(
        left - 1 <= b["left"] < b["right"] <= right + 1 and top - 1 <= b["top"] < b["bottom"] <= bottom + 1
        for b in boxes
    )


@pytest.mark.parametrize("how", ["hover", "focus"])
def test_a_grounded_word_outlines_its_objects_over_the_picture(browser, server, how):
    page = analyzed_page(browser, server)
    word = page.locator("#grounded-caption button.grounded-word").first
    count = len(json.loads(word.get_attribute("data-boxes")))
    page.locator("#annotated img").scroll_into_view_if_needed()
    assert highlights(page) == []
    getattr(word, how)()
    page.wait_for_function("() => document.querySelectorAll('.object-highlight').length > 0", timeout=5_000)
    shown = highlights(page)
    assert len(shown) == count and inside_picture(page, shown)
    page.screenshot(path=str(SCREENSHOTS / f"grounded-word-{how}.png"))
    # Leaving the word takes the outline away.
    if how == "hover":
        page.mouse.move(1, 1)
    else:
        page.keyboard.press("Escape")
        page.evaluate("() => document.activeElement.blur()")
    page.wait_for_function("() => document.querySelectorAll('.object-highlight').length === 0", timeout=5_000)
    page.context.close()


def tab_to(page, where: str, presses: int = 120) -> None:
    """Press Tab until the focused element matches the CSS selector ``where`` (at most ``presses`` times)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(where) => !!document.activeElement && document.activeElement.matches(where)", where):
            return
    raise AssertionError(f"Tab never reached {where}")


def test_keyboard_only_analyze_objects_and_read_aloud(browser, server):
    page = open_page(browser, server, init_script=RECORD_SPEECH)
    upload(page, EXAMPLES / "shapes.png")  # choosing the file is the system's dialog; everything after is keys
    first = wait_for_caption(page)
    page.wait_for_function("() => document.querySelectorAll('#objects-list li').length > 0", timeout=RESULT_TIMEOUT_MS)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab_to(page, "#analyze")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#timings').innerText.includes('reused')", timeout=RESULT_TIMEOUT_MS
    )
    assert page.input_value("#caption textarea") == first
    tab_to(page, "#objects-list li")
    items = page.locator("#objects-list li")
    visited = [page.evaluate("() => document.activeElement.innerText")]
    page.wait_for_function("() => document.querySelectorAll('.object-highlight').length === 1", timeout=5_000)
    for _ in range(items.count() - 1):
        page.keyboard.press("ArrowDown")
        visited.append(page.evaluate("() => document.activeElement.innerText"))
    assert visited == items.all_inner_texts()
    page.keyboard.press("Home")
    assert page.evaluate("() => document.activeElement.innerText") == visited[0]
    tab_to(page, "#read-aloud")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__spoken.length === 1", timeout=10_000)
    spoken = page.evaluate("() => window.__spoken[0]")
    assert spoken == {"text": page.input_value("#description textarea"), "rate": 1}
    # Stop and Repeat, then the rate: each reached with Tab.
    tab_to(page, "#stop-reading")
    cancelled = page.evaluate("() => window.__cancelled")
    page.keyboard.press("Enter")
    page.wait_for_function("(before) => window.__cancelled > before", arg=cancelled, timeout=10_000)
    tab_to(page, "#repeat-reading")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__spoken.length === 2", timeout=10_000)
    tab_to(page, "#speech-rate input")
    page.keyboard.press("Control+A")
    page.keyboard.type("1.5")
    page.keyboard.press("Enter")
    page.locator("#repeat-reading").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__spoken.length === 3", timeout=10_000)
    assert page.evaluate("() => window.__spoken.map(s => s.text)") == [spoken["text"]] * 3
    assert page.evaluate("() => window.__spoken[2].rate") == 1.5
    page.context.close()


def answer_shown(page, question: str) -> str:
    """Wait for the answer to ``question`` in the answer block; its sentence."""
    page.wait_for_function(
        "(question) => { const asked = document.querySelector('#answer .answer-question');"
        " return asked && asked.textContent.startsWith('You asked: ' + question + ' ('); }",
        arg=question,
        timeout=RESULT_TIMEOUT_MS,
    )
    return page.text_content("#answer .answer-sentence")


def test_ask_about_this_photo_answers_large_in_a_live_region_spoken_and_outlined(browser, server):
    page = analyzed_page(browser, server)
    box = page.get_by_role("textbox", name="Ask about this photo")
    page.get_by_role("checkbox", name="Read answers aloud").check()
    box.fill("How many triangles are there?")
    box.press("Enter")  # Enter asks
    sentence = answer_shown(page, "How many triangles are there?")
    triangles = [item for item in page.locator("#objects-list li").all_inner_texts() if item.startswith("triangle")]
    assert re.match(rf"^There (is|are) {len(triangles)} triangles?\b", sentence), (sentence, triangles)
    assert "(answered from the objects found)" in page.text_content("#answer .answer-question")
    # Large type, the caption's size, on screen.
    size = page.eval_on_selector("#answer .answer-sentence", "e => parseFloat(getComputedStyle(e).fontSize)")
    caption = page.eval_on_selector("#caption textarea", "e => parseFloat(getComputedStyle(e).fontSize)")
    box_size = page.eval_on_selector("#answer .answer-sentence", "e => e.getBoundingClientRect().toJSON()")
    print(f"\nanswer {size} px, caption {caption} px, answer box {box_size['width']:.0f} x {box_size['height']:.0f}")
    assert size >= 24 and size == caption and box_size["width"] > 100 and box_size["height"] >= size
    # Said once in the polite live region, spoken (reading answers aloud is on), its objects outlined on the photo.
    page.wait_for_function(
        "(s) => document.querySelector('[aria-live=polite]#answer-announcer').textContent === s", arg=sentence
    )
    page.wait_for_function("(s) => window.__spoken.some(said => said.text === s)", arg=sentence, timeout=10_000)
    page.wait_for_function(
        "(n) => document.querySelectorAll('.object-highlight').length === n", arg=len(triangles), timeout=5_000
    )
    assert inside_picture(page, highlights(page))
    page.screenshot(path=str(SCREENSHOTS / "ask-answer.png"))
    # A question the objects cannot answer goes to the answerer; the first stays in the photo's history.
    box.fill("What colour is the circle?")
    page.locator("#ask-button").click()
    answer_shown(page, "What colour is the circle?")
    assert f"(answered by the answerer {TEST_ANSWERER})" in page.text_content("#answer .answer-question")
    history = page.get_by_role("list", name="Earlier questions about this photo").get_by_role("listitem")
    assert history.all_inner_texts() == [f"How many triangles are there? {sentence}"]
    check_axe(page, "photo tab after two questions")
    # An empty question is a message; the answer stays.
    box.fill("   ")
    box.press("Enter")
    page.get_by_text("question must not be empty").first.wait_for(timeout=10_000)
    assert page.text_content("#answer .answer-question").startswith("You asked: What colour is the circle?")
    page.context.close()
