"""The report in a real browser: the system's headless Chromium, driven by selenium through its own chromedriver.

``make test`` / ``.ci/run`` install both from the distribution's packages (``make browser``: Debian ``chromium`` and
``chromium-driver``). ``ZEROSHOT_CHROMIUM`` and ``ZEROSHOT_CHROMEDRIVER`` name other binaries. The page is opened
from ``file://``, as a researcher opens it; the screenshot is saved beside the report (``screenshot.png``).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from zeroshot.report import write_report


def _binary(variable: str, *names: str) -> str:
    chosen = os.environ.get(variable)
    found = chosen or next((path for name in names if (path := shutil.which(name))), None)
    if not found:
        pytest.fail(
            f"no {names[0]} found (set {variable}, or run `make browser`, which installs Debian's chromium and "
            "chromium-driver): the report's browser test needs the system's Chromium"
        )
    return found


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = _binary("ZEROSHOT_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_binary("ZEROSHOT_CHROMEDRIVER", "chromedriver")))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(report_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report"
    write_report([report_runs.run], out, compare_dir=report_runs.compare, figures_dir=report_runs.figures,
                 progress=False)  # fmt: skip
    return out


def _severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _visible_values(driver, table_id: str, column: str) -> list[str | None]:
    """The sort values (``data-v``, else the text) of ``column`` in the shown rows of a table, top to bottom."""
    return driver.execute_script(
        """
        const table = document.getElementById(arguments[0]);
        const index = Array.from(table.tHead.rows[0].cells).findIndex(c => c.textContent.trim() === arguments[1]);
        return Array.from(table.tBodies[0].rows).filter(r => !r.hidden).map(r => {
            const cell = r.cells[index];
            return cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
        });
        """,
        table_id,
        column,
    )


def _click(driver, element) -> None:
    """Click as a user does: scrolled to the middle of the window, clear of the page's sticky header."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _click_header(driver, table_id: str, column: str) -> None:
    from selenium.webdriver.common.by import By

    headers = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    _click(driver, next(h for h in headers if h.text.strip().rstrip(" ▲▼") == column))


def test_report_in_a_real_browser(browser, report, report_runs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get((report / "index.html").as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert _severe(browser) == []  # no script error, no file that failed to load
    results = pd.read_parquet(report_runs.run / "results.parquet")

    # Sort the case table by Dice: ascending (undefined values of failed rows last), then descending.
    _click_header(browser, "case-table", "dice")
    values = _visible_values(browser, "case-table", "dice")
    numbers = [float(v) for v in values if v != ""]
    assert len(values) == len(results) and values[len(numbers) :] == [""] * (len(values) - len(numbers))
    assert numbers == sorted(numbers) and len(numbers) == int(results["dice"].notna().sum())
    assert math.isclose(numbers[0], results["dice"].min())
    _click_header(browser, "case-table", "dice")
    descending = [float(v) for v in _visible_values(browser, "case-table", "dice") if v != ""]
    assert descending == sorted(numbers, reverse=True)

    # Sort a table of zeroshot compare by a metric column.
    _click_header(browser, "table-summary", "mean")
    means = [float(v) for v in _visible_values(browser, "table-summary", "mean") if v != ""]
    assert len(means) > 1 and means == sorted(means)

    # Filter every table to one sequence.
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="sequence"]')).select_by_value("T2")
    assert _visible_values(browser, "case-table", "sequence") == ["T2"] * int((results["sequence"] == "T2").sum())
    summary = set(_visible_values(browser, "table-summary", "sequence"))
    assert summary == {"T2"}
    count = browser.find_element(By.CSS_SELECTOR, "#case-table [data-count]").text
    assert count == f"({(results['sequence'] == 'T2').sum()} of {len(results)} rows)"
    # And to one strategy too: both filters hold in every table that has their columns.
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="strategy"]')).select_by_value("point-center")
    assert set(_visible_values(browser, "case-table", "strategy")) == {"point-center"}
    assert set(_visible_values(browser, "table-summary", "strategy")) == {"point-center"}
    assert set(_visible_values(browser, "table-summary", "sequence")) == {"T2"}
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="strategy"]')).select_by_value("")

    # Open a case whose prediction was saved: its slice images load.
    entry = browser.execute_script(
        """
        const shown = Array.from(document.querySelectorAll("#case-table tbody tr")).filter(r => !r.hidden);
        const row = shown.find(r => document.getElementById(r.dataset.entry).querySelector("img[data-src]"));
        row.scrollIntoView({block: "center"});
        return row.dataset.entry;
        """
    )
    _click(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-entry="{entry}"]'))
    article = browser.find_element(By.ID, entry)
    assert article.is_displayed()
    images = article.find_elements(By.TAG_NAME, "img")
    assert 1 <= len(images) <= 4
    WebDriverWait(browser, 30).until(lambda d: all(d.execute_script("return arguments[0].complete", i) for i in images))
    assert all(browser.execute_script("return arguments[0].naturalWidth", image) > 0 for image in images)
    assert browser.current_url.endswith(f"#{entry}")
    # The figures of zeroshot figures load too.
    figures = browser.find_elements(By.CSS_SELECTOR, "#figures img")
    assert len(figures) == len(list(report_runs.figures.glob("*.png")))
    for figure in figures:
        browser.execute_script("arguments[0].scrollIntoView()", figure)
    WebDriverWait(browser, 30).until(
        lambda d: all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", f) for f in figures
        )
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", article)
    browser.execute_script("document.querySelector('.cases-wrap').scrollLeft = 0")  # clicks scrolled it sideways
    screenshot = report / "screenshot.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    assert _severe(browser) == []
