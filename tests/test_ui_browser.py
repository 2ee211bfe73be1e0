"""A presenter's walk through the demo in a real browser (Debian's chromium, headless, driven by Playwright), at the
three sizes it must read at: a laptop (1440x900), a projector (1280x720) and a phone (390x844).

At every size the guided story runs step by step with its proving numbers (the assets' own figures, an encrypted
answer equal to the plaintext one, the client's wall clock, and in its fifth step one model writing with another's
head: four streams, the agreeing tokens highlighted and counted by the verdict), every tab opens, no word in a table
breaks mid-word, and the browser console stays free of errors. At the laptop size a chosen pair classifies
encrypted, a refusal keeps the last good result with the message beside the button, encryption off shows what would
be exposed, a secure fit runs, the export follows the selections and a short generation streams. Screenshots go
to test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import app
import app_text
from securealign.app_support import service
from securealign.app_support.app_process import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow

SIZES = {"laptop": (1440, 900), "projector": (1280, 720), "phone": (390, 844)}
TABS = ("Convergence", "Secure inference", "Secure fit", "OOD", "Generation", "Results", "What is protected")
QUERY_TIMEOUT_MS = 180_000  # a cold model load on a busy 2-core machine
GENERATION_TIMEOUT_MS = 900_000  # first use loads two LMs
# every word of every visible table cell, with the number of lines it occupies; a break at a hyphen, a slash or a
# space is fine, anything else is a word broken in two
MID_WORD_BREAKS_JS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('[role=tabpanel] td, [role=tabpanel] th')) {
    if (!cell.getClientRects().length) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/[^\\s\\-\\/]+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""


@pytest.fixture(scope="module")
def app_url(launch_app):
    with launch_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh test (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console_errors() -> list[str]:
    return []


def open_page(browser: Browser, url: str, size: str, console_errors: list[str]) -> Page:
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("#story-step-1")).to_be_visible(timeout=60_000)
    return page


def open_tab(page: Page, name: str) -> None:
    """Click a tab; on narrow screens the tabs that do not fit sit behind Gradio's "More tabs" menu."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.is_visible():
        tab.click()
    else:
        page.locator("button[aria-label='More tabs']").click()
        page.locator(".overflow-dropdown button", has_text=name).first.click()
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")


def choose(page: Page, label: str, option: str) -> None:
    """Pick the option starting with ``option`` in the dropdown labelled ``label`` on the visible tab (tabs reuse
    labels, so the search stays inside the visible one)."""
    box = page.locator("[role=tabpanel]:visible").get_by_label(label, exact=True)
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} [role=option]", has_text=option).first.click()
    expect(box).to_have_value(re.compile("^" + re.escape(option)))


def assert_no_mid_word_breaks(page: Page) -> None:
    assert page.evaluate(MID_WORD_BREAKS_JS) == []


def classify(page: Page) -> None:
    """Click Classify and wait for the whole result: the client's answer, then the provider-model reference."""
    page.locator("#classify-button").click()
    expect(page.locator("#query-summary table")).to_be_visible(timeout=QUERY_TIMEOUT_MS)
    expect(page.locator("#query-summary")).not_to_contain_text("computing…", timeout=QUERY_TIMEOUT_MS)


def story_generation(page: Page, pair: tuple[str, str]) -> None:
    """Run the story's fifth step for ``pair`` and check what it shows: four continuations, the mapped tokens that
    agree with the target's own highlighted and counted by the verdict (the encrypted stream's the same), each
    stream's times, and the pair's measured figures from its committed map."""
    source, target = service.model_name(pair[0]), service.model_name(pair[1])
    page.locator("#story-gen-pair").get_by_label(app_text.story_pair_label(source, target), exact=True).check()
    page.locator("#story-step-5").click()
    expect(page.locator("#story-gen-timings")).to_contain_text(
        "Encrypted = plaintext, token for token", timeout=GENERATION_TIMEOUT_MS
    )
    verdict = page.locator("#story-text-5")
    expect(verdict).to_be_in_viewport()
    agreeing = page.locator("#story-gen-mapped .token.highlighted").count()
    total = page.locator("#story-gen-native-target .token").count()
    outcome = "(works|reads well in words of its own|drifts)"
    pair_name = f"{re.escape(source)} → {re.escape(target)}"
    expect(verdict).to_contain_text(re.compile(rf"{pair_name} {outcome}: {agreeing or 'none'} of {total} tokens"))
    assert page.locator("#story-gen-mapped-encrypted .token.highlighted").count() == agreeing
    for name in ("native-source", "native-target", "mapped", "mapped-encrypted"):
        assert page.locator(f"#story-gen-{name} .token").count() > 0
    figures = service.pair_figures(*pair)
    expect(page.locator("#story-gen-pairs")).to_contain_text(app_text.pct(figures["exact_match_rate"]))
    expect(page.locator("#story-gen-timings")).to_contain_text("the same, under encryption")
    expect(page.locator("#story-gen-latency")).to_contain_text("Each stream's own time per token")


@pytest.mark.parametrize("size", SIZES)
def test_the_story_and_every_tab_read_at_every_size(
    browser: Browser, app_url: str, size: str, console_errors: list[str], artifacts_dir: Path
) -> None:
    page = open_page(browser, app_url, size, console_errors)
    pair = service.pair_summary(app.DEFAULT_TASK, app.DEFAULT_CLIENT, app.DEFAULT_PROVIDER)
    truth = service.true_label(app.DEFAULT_TASK, service.examples(app.DEFAULT_TASK)[0])
    expected = {
        1: [f"linear CKA {pair['cka']:.2f}"],
        2: [app_text.pct(pair["mapped_acc"]), app_text.pct(pair["provider_acc"])],
        3: ["the same answer as plaintext", f"true label: {truth}", re.compile(r"The client waited [\d.]+\s(ms|s)")],
        4: ["never the text or the embedding"],
    }
    for step, texts in expected.items():
        page.locator(f"#story-step-{step}").click()
        headline = page.locator(f"#story-text-{step}")
        for text in texts:
            expect(headline).to_contain_text(text, timeout=QUERY_TIMEOUT_MS)
        expect(headline).to_be_in_viewport()  # the answer is scrolled into view, not left below the fold
    story_generation(page, service.STORY_PAIRS[0])
    assert_no_mid_word_breaks(page)
    page.wait_for_timeout(1000)  # plots finish drawing
    page.screenshot(path=artifacts_dir / f"ui-{size}-story.png", full_page=True)
    for tab in TABS:
        open_tab(page, tab)
        if tab == "Secure inference":  # the first example is preselected: one click classifies it
            classify(page)
            expect(page.locator("#query-headline")).to_contain_text("the same answer as plaintext")
            expect(page.locator("#query-headline")).to_be_in_viewport()
        page.wait_for_timeout(1000)
        assert_no_mid_word_breaks(page)
        page.screenshot(path=artifacts_dir / f"ui-{size}-{tab.split()[-1].lower()}.png", full_page=True)
    assert console_errors == []
    page.close()


@pytest.fixture(scope="module")
def laptop(browser: Browser, app_url: str):
    errors: list[str] = []
    page = open_page(browser, app_url, "laptop", errors)
    yield page
    assert errors == []
    page.close()


@pytest.fixture(scope="module")
def classified(laptop: Page) -> dict[str, str]:
    """One encrypted query of a chosen pair and held-out example; the summary table's answers by path. Tests that
    need a result on the page ask for this, not for an earlier test."""
    open_tab(laptop, "Secure inference")
    task = service.catalogue()["tasks"][0][1]
    choose(laptop, "provider's task", service.catalogue()["tasks"][0][0])
    choose(laptop, "client model (source)", f"{service.model_name('minilm')}: ")
    choose(laptop, "provider model (target)", f"{service.model_name('wordllama')}: ")
    example = service.examples(task)[1]
    choose(laptop, "pick a held-out example ([true label] text)…", f"[{service.true_label(task, example)}]")
    expect(laptop.locator("#query-text textarea")).to_have_value(example)
    classify(laptop)
    rows = laptop.locator("#query-summary table tbody tr")
    return {
        rows.nth(i).locator("td").nth(0).inner_text(): rows.nth(i).locator("td").nth(2).inner_text()
        for i in range(rows.count())
    }


def test_a_chosen_pair_answers_the_same_encrypted_and_in_plaintext(
    laptop: Page, classified: dict[str, str], artifacts_dir: Path
) -> None:
    open_tab(laptop, "Secure inference")
    assert classified[app_text.PATH_NAMES["mapped_encrypted"]] == classified[app_text.PATH_NAMES["mapped_plaintext"]]
    assert classified[app_text.PATH_NAMES["mapped_encrypted"]] != ""
    expect(laptop.locator("#protocol-steps")).to_contain_text("provider")
    expect(laptop.locator("#query-summary")).to_contain_text("reference only this demo can compute")
    laptop.wait_for_timeout(1000)
    laptop.screenshot(path=artifacts_dir / "ui-laptop-chosen-pair.png", full_page=True)


def test_a_refusal_keeps_the_last_result_and_says_why_beside_the_button(
    laptop: Page, classified: dict[str, str], artifacts_dir: Path
) -> None:
    open_tab(laptop, "Secure inference")
    headline = laptop.locator("#query-headline").inner_text()
    assert "same answer as plaintext" in headline  # the last good result is on the page
    laptop.locator("#query-text textarea").fill("   ")
    laptop.locator("#classify-button").click()
    expect(laptop.locator("#classify-error")).to_contain_text("The query is empty", timeout=30_000)
    expect(laptop.locator("#query-headline")).to_have_text(headline)
    assert "Traceback" not in laptop.locator("body").inner_text()
    laptop.screenshot(path=artifacts_dir / "ui-laptop-refusal.png")
    laptop.get_by_test_id("toast-close").first.click()


def test_encryption_off_shows_what_the_provider_would_see(laptop: Page, artifacts_dir: Path) -> None:
    open_tab(laptop, "Secure inference")
    laptop.locator("#query-text textarea").fill("The film is a delight from start to finish.")
    laptop.get_by_label("encrypt (CKKS)").uncheck()
    classify(laptop)
    expect(laptop.locator("#query-headline")).to_contain_text("unencrypted")
    expect(laptop.locator("#protocol-steps")).to_contain_text("what the provider would receive")
    expect(laptop.locator("#classify-error")).to_have_text("")  # a success clears any earlier refusal's message
    laptop.screenshot(path=artifacts_dir / "ui-laptop-encryption-off.png", full_page=True)
    laptop.get_by_label("encrypt (CKKS)").check()


def test_secure_fit_estimates_then_runs_in_the_page(laptop: Page, artifacts_dir: Path) -> None:
    open_tab(laptop, "Secure fit")  # the fewest texts the protocol accepts for the pair are preselected
    expect(laptop.locator("#fit-estimate")).to_contain_text("Estimate before you start")
    laptop.locator("#fit-button").click()
    expect(laptop.locator("#fit-summary")).to_contain_text("Same map as in plaintext", timeout=600_000)
    expect(laptop.locator("#fit-plot-time")).to_contain_text("Encrypted fit, wall clock")
    laptop.screenshot(path=artifacts_dir / "ui-laptop-secure-fit.png", full_page=True)


def test_export_follows_the_selections(laptop: Page, classified: dict[str, str]) -> None:
    open_tab(laptop, "Results")
    laptop.get_by_role("button", name="Export comparison (HTML)").click()
    link = laptop.locator("a[download][href$='securealign-comparison.html']")
    expect(link).to_be_visible(timeout=60_000)
    exported = laptop.request.get(link.get_attribute("href")).text()
    assert exported.startswith("<!DOCTYPE html>") and app_text.PATH_NAMES["mapped_plaintext"] in exported
    assert f"map fitted on {service.REGIME_SHORT[service.catalogue()['demo_regime']]}" in exported


def test_short_generation_streams(laptop: Page, artifacts_dir: Path) -> None:
    open_tab(laptop, "Generation")
    tokens = laptop.get_by_label("number input for new tokens")
    tokens.fill("6")
    tokens.press("Enter")
    laptop.locator("#generate-button").click()
    for stream in ("#gen-native-source", "#gen-native-target", "#gen-mapped"):
        expect(laptop.locator(f"{stream} textarea")).not_to_have_value("", timeout=GENERATION_TIMEOUT_MS)
    expect(laptop.locator("#gen-metrics")).to_contain_text("Quality", timeout=GENERATION_TIMEOUT_MS)
    laptop.screenshot(path=artifacts_dir / "ui-laptop-generation.png", full_page=True)
