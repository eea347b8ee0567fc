"""The UI in a real browser (Debian's chromium driven by Playwright), as a person sees it.

Screenshots land in ``tests/artifacts/``; with ``UPDATE_SCREENSHOTS=1`` the README's copies in
``docs/screenshots/`` are refreshed from the same run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import polars as pl
import pytest

from instruct_assets.lib.paths import DataPaths
from tests.support import REPO

from .scenario import ARTIFACTS, BAD, GOOD, Pipeline

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover - only where the dev extra lacks playwright
    pytest.skip(f"BROWSER TEST NOT RUN: playwright cannot be imported ({exc}); "
                "install it with `pip install playwright`", allow_module_level=True)
if CHROMIUM is None:  # pragma: no cover - only where chromium is not installed
    pytest.skip("BROWSER TEST NOT RUN: no `chromium` on PATH; install Debian's package with "
                "`apt-get install -y chromium`", allow_module_level=True)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-quic", "--disable-sync"]
SHOTS = ARTIFACTS / "screenshots"
README_SHOTS = ("lineage.png", "quality_scores_metadata.png", "quality_scores_checks.png")
DOCS_SHOTS = REPO / "docs" / "screenshots"
TIMEOUT_MS = 60_000  # two shared cores: the UI's first GraphQL answers can be slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        page.close()
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "page_errors.txt").write_text("\n".join(errors), encoding="utf-8")


def shoot(page: Page, name: str) -> None:
    """Save a screenshot artifact; nothing may cover the UI (nux is off in dagster.yaml)."""
    expect(page.get_by_text("Join the Dagster community")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / name)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" and name in README_SHOTS:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHOTS / name, DOCS_SHOTS / name)


def test_lineage_and_quality_scores_page(pipeline: Pipeline, page: Page) -> None:
    paths = DataPaths.at(pipeline.data_dir)
    rows = pl.read_parquet(paths.quality / "quality.parquet").height

    # the asset graph, every group expanded (the graph's own shortcut, listed in its menu)
    page.goto(pipeline.server.url)
    page.get_by_role("link", name="Lineage").click()
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Materialize all"))).to_be_visible()
    page.keyboard.press("Alt+KeyE")
    for asset in ("staged_examples", "quality_scores", "complexity_scores",
                  "split_assignments", "training_exports"):
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    shoot(page, "lineage.png")

    # the quality_scores page: its status, then the latest materialization's metadata
    page.goto(f"{pipeline.server.url}/assets/quality_scores")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text("Row count")).to_be_visible()
    expect(page.get_by_text(f"{rows:,}", exact=True).first).to_be_visible()
    shoot(page, "quality_scores_overview.png")
    page.get_by_role("tab", name="Events").click()
    for label in ("dagster/row_count", "flags_by_kind", "score_histogram", "worst_examples"):
        expect(page.get_by_text(label, exact=True).first).to_be_visible()
    for source in GOOD:
        expect(page.get_by_text(source, exact=True).first).to_be_attached()
    expect(page.get_by_text(BAD, exact=True)).to_have_count(0)
    shoot(page, "quality_scores_metadata.png")

    # its check results
    page.get_by_role("tab", name="Checks").click()
    expect(page.get_by_text("scores_in_range", exact=True).first).to_be_visible()
    page.get_by_text("one_quality_row_per_example", exact=True).first.click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    for label in ("examples", "quality_rows", "missing", "duplicated"):
        expect(page.get_by_text(label, exact=True).first).to_be_visible()
    shoot(page, "quality_scores_checks.png")
