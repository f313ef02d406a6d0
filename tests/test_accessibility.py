"""The app for people who use a keyboard or a screen reader, in a real browser: axe-core's checks over the photo tab
(after an analysis, at desktop and phone widths) and the live tab, the accessibility tree, a keyboard-only path,
and the grounded caption's highlight over the picture.

axe-core comes bundled in ``axe-playwright-python``; each axe run prints its counts by impact and by rule, so that
``pytest -s`` shows what is left (minor and moderate findings are reported, serious and critical ones fail).
Run alone with ``pytest -m browser tests/test_accessibility.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import EXAMPLES, RESULT_TIMEOUT_MS, open_page, upload, wait_for_caption, wait_for_picture

pytestmark = pytest.mark.browser

#: Impacts that fail a test; axe's others are "moderate" and "minor".
BLOCKING = ("serious", "critical")


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
    violations = axe_violations(page)
    by_impact, by_rule = axe_counts(violations)
    print(f"\naxe-core, {where}: by impact {dict(by_impact)}; by rule {dict(by_rule)}")
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[node['target'] for node in v['nodes']]}"
        for v in violations
        if v["impact"] in BLOCKING
    ]
    assert not blocking, "\n".join(blocking)


def analyzed_page(browser, server, width: int, height: int = 800):
    page = open_page(browser, server, width=width, height=height)
    upload(page, EXAMPLES / "shapes.png")
    wait_for_caption(page)
    wait_for_picture(page)
    page.wait_for_function(
        "() => document.querySelector('#objects-summary textarea').value.length > 0", timeout=RESULT_TIMEOUT_MS
    )
    return page


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_axe_finds_nothing_serious_on_the_photo_tab(browser, server, width, height):
    page = analyzed_page(browser, server, width, height)
    check_axe(page, f"photo tab after an analysis, {width} px")
    page.context.close()


def test_axe_finds_nothing_serious_on_the_live_tab(browser, server):
    page = open_page(browser, server)
    page.get_by_role("tab", name="Live camera").click()
    page.locator("#live-in button", has_text="Click to Access Webcam").wait_for()
    check_axe(page, "live tab, before the camera starts")
    page.locator("#live-in button", has_text="Click to Access Webcam").click()
    page.locator("#live-in button", has_text="Record").click()
    page.wait_for_function("() => document.querySelector('#live-caption textarea').value.length > 0", timeout=120_000)
    check_axe(page, "live tab, camera streaming")
    page.locator("#live-in button", has_text="Stop").click()
    page.context.close()
