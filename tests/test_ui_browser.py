"""A presenter's walk through the demo in a real browser (Debian's chromium, headless, driven by Playwright):
the heatmap renders, a chosen model pair classifies a query encrypted and in plaintext with the same answer, and a
short generation streams. Screenshots of every tab go to test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from securealign import service

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install.sh test); a browser is never downloaded
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CLIENT, PROVIDER = "minilm", "wordllama"
GENERATION_TIMEOUT_MS = 900_000  # first use loads two LMs (and fits their map if no copy is cached)


@pytest.fixture(scope="module")
def app_url(launch_app):
    with launch_app() as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url: str):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh test (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        yield page
        browser.close()


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the dropdown labelled ``label`` on the visible tab (options live in the list the input
    controls); tabs reuse labels, so the search stays inside the visible one."""
    box = page.locator("[role=tabpanel]:visible").get_by_label(label, exact=True)
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} [role=option]", has_text=option).first.click()
    expect(box).to_have_value(re.compile(re.escape(option)))  # long options are shown shortened


def prediction_cells(page: Page) -> dict[str, str]:
    """The summary table's rows: variant name -> predicted label."""
    rows = page.locator("#query-summary table tbody tr")
    return {rows.nth(i).locator("td").nth(0).inner_text().strip(): rows.nth(i).locator("td").nth(2).inner_text().strip()
            for i in range(rows.count())}


@pytest.fixture(scope="module")
def classified(page: Page) -> dict[str, str]:
    """One encrypted query of a held-out example with the chosen pair; the summary table's predictions. Tests that
    need a query behind them (the export carries the session's last one) ask for this, not for an earlier test."""
    page.get_by_role("tab", name="Secure inference").click()
    choose(page, "client model (source)", service.model_name(CLIENT))
    choose(page, "provider model (target)", service.model_name(PROVIDER))
    example = service.examples(service.catalogue()["tasks"][0][1])[0]
    choose(page, "pick a held-out example…", example[:40])
    expect(page.locator("#query-text textarea")).to_have_value(example)
    expect(page.get_by_label("encrypt (CKKS)")).to_be_checked()
    page.locator("#classify-button").click()
    expect(page.locator("#query-summary table")).to_be_visible(timeout=180_000)
    return prediction_cells(page)


def test_heatmap_renders(page: Page, artifacts_dir: Path) -> None:
    page.get_by_role("tab", name="Convergence").click()
    plot = page.locator("#similarity-plot .js-plotly-plot")
    expect(plot).to_be_visible(timeout=60_000)
    assert plot.locator(".heatmaplayer").count() == 1
    # the diagonal of a similarity matrix is 1: its cells are printed on the figure
    cell_labels = plot.locator(".heatmaplayer text").all_text_contents()
    cat = service.catalogue()
    shown = service.similarity(cat["similarity_datasets"][0][1], cat["similarity_metrics"][0][1])
    assert cell_labels.count("1.00") == len(shown["keys"])
    page.screenshot(path=artifacts_dir / "ui-convergence.png", full_page=True)


def test_empty_query_shows_a_message_not_a_traceback(page: Page, artifacts_dir: Path) -> None:
    page.get_by_role("tab", name="Secure inference").click()
    page.locator("#query-text textarea").fill("")
    page.locator("#classify-button").click()
    expect(page.get_by_text("The query is empty").first).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.locator("body").inner_text()
    page.wait_for_timeout(1000)  # the toast slides in
    page.screenshot(path=artifacts_dir / "ui-empty-query.png")
    page.get_by_test_id("toast-close").first.click()  # so it does not cover the next screenshots


def test_encrypted_and_plaintext_predictions_agree(page: Page, classified: dict[str, str], artifacts_dir: Path) -> None:
    page.get_by_role("tab", name="Secure inference").click()
    cells = classified
    assert cells["mapped (encrypted)"] == cells["mapped (plaintext)"] != ""
    expect(page.locator("#query-summary")).to_contain_text("Encrypted and plaintext predictions agree")
    expect(page.locator("#protocol-steps")).to_contain_text("provider")
    page.wait_for_timeout(1000)  # let the plots finish drawing before the screenshot
    page.screenshot(path=artifacts_dir / "ui-secure-inference.png", full_page=True)


def test_secure_fit_runs_in_the_page(page: Page, artifacts_dir: Path) -> None:
    page.get_by_role("tab", name="Secure fit").click()
    choose(page, "client model (source)", service.model_name(CLIENT))
    choose(page, "provider model (target)", service.model_name(PROVIDER))
    page.locator("#fit-button").click()
    expect(page.locator("#fit-summary")).to_contain_text("Same map as in plaintext", timeout=300_000)
    expect(page.locator("[role=tabpanel]:visible .js-plotly-plot").first).to_be_visible()
    page.screenshot(path=artifacts_dir / "ui-secure-fit.png", full_page=True)


def test_other_views_render_and_export(page: Page, classified: dict[str, str], artifacts_dir: Path) -> None:
    for tab, selector in (("OOD", ".js-plotly-plot"), ("Results", "table"), ("What is protected", "table")):
        page.get_by_role("tab", name=tab).click()
        expect(page.locator(f"[role=tabpanel]:visible {selector}").first).to_be_visible(timeout=30_000)
        if tab == "Results":  # the export carries this session's last query
            page.get_by_role("button", name="Export comparison (HTML)").click()
            link = page.locator("a[download][href$='securealign-comparison.html']")
            expect(link).to_be_visible(timeout=60_000)
            exported = page.request.get(link.get_attribute("href")).text()
            assert exported.startswith("<!DOCTYPE html>") and "mapped (encrypted)" in exported
        page.wait_for_timeout(500)
        page.screenshot(path=artifacts_dir / f"ui-{tab.split()[0].lower()}.png", full_page=True)


def test_short_generation_streams(page: Page, artifacts_dir: Path) -> None:
    page.get_by_role("tab", name="Generation").click()
    tokens = page.get_by_label("number input for new tokens")
    tokens.fill("6")
    tokens.press("Enter")
    page.locator("#generate-button").click()
    for stream in ("#gen-native-source", "#gen-native-target", "#gen-mapped"):
        expect(page.locator(f"{stream} textarea")).not_to_have_value("", timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("[role=tabpanel]:visible")).to_contain_text("Quality", timeout=GENERATION_TIMEOUT_MS)
    page.screenshot(path=artifacts_dir / "ui-generation.png", full_page=True)
