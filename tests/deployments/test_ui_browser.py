"""The Prefect UI in a real browser: a custom end-to-end run started from the deployment's parameter form runs to
Completed with the values typed into the form, and its run page shows the funnel.

Headless Debian chromium driven by Selenium against `prefect server start` + `lmpipe serve` (tests/deployments/
conftest.py), everything on 127.0.0.1. Screenshots: runs/ui/flow-run.png (the run page, Artifacts tab) and
runs/ui/funnel.png (the funnel artifact), also in the test's tmp_path; on a failure, runs/ui/failure-*.png.

apt-get install -y chromium chromium-driver      # once (.ci/run does it)
pytest -m slow tests/deployments/test_ui_browser.py -s
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import unavailable
from tests.deployments.prefect_server import ROOT, PrefectServer, Served, poll, wait_for_final

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
MISSING = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
pytestmark = pytest.mark.slow
if MISSING:  # here rather than in the browser fixture, which runs after the session's Prefect server started
    unavailable(f"{' and '.join(MISSING)} not found: apt-get install chromium chromium-driver", module_level=True)
SCREENSHOTS = ROOT / "runs" / "ui"  # runs/ is git-ignored
MAX_STEPS, VOCAB_SIZE = 20, 4096  # typed into the form: a short training on a small vocabulary (~60 s on 2 cores)
# A form field: the innermost property block around its label (labels repeat across sections, e.g. "Seed").
LABEL = "span[@class='schema-form-property__label' and normalize-space()='{} (Optional)']"
PROPERTY = "ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')][1]"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",  # no calls home: the machine has no internet
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",  # a fresh profile
    ):
        options.add_argument(arg)
    # An explicit driver: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def screenshot_on_failure(driver: WebDriver, name: str, tmp_path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"failure-{name}.png"))
        (tmp_path / f"failure-{name}.html").write_text(driver.page_source)
        raise


def _wait(driver: WebDriver, timeout: float = 30) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.25)


def _click(driver: WebDriver, xpath: str, timeout: float = 30) -> None:
    _wait(driver, timeout).until(ec.element_to_be_clickable((By.XPATH, xpath))).click()


def _field(form: WebElement, *labels: str) -> WebElement:
    """The input of the form property reached through nested labels, e.g. ("Train", "Max Steps")."""
    node = form
    for label in labels:
        node = node.find_element(By.XPATH, f".//{LABEL.format(label)}/{PROPERTY}")
    return node.find_element(By.XPATH, ".//*[self::input or self::textarea]")


def _type(driver: WebDriver, element: WebElement, value: str) -> None:
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(value)
    # The form's number inputs show the typed value only after the next render (~0.3 s), not right away.
    _wait(driver, 10).until(lambda _: element.get_attribute("value") == value)


def _tab(driver: WebDriver, name: str) -> None:
    _click(driver, f"//li[contains(@class, 'p-tab')][normalize-space()='{name}']")


def _save(driver: WebDriver, name: str, tmp_path: Path, height: int) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1400, height)  # tall enough for the whole page in one picture
    path = SCREENSHOTS / name
    assert driver.save_screenshot(str(path)), path
    shutil.copy(path, tmp_path / name)
    return path


def _runs_of(deployment_id: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment_id)]))
        )


def _subflow(parent: FlowRun, flow_name: str) -> FlowRun:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
        flows = {r.flow_id: client.read_flow(r.flow_id).name for r in runs}
    [run] = [r for r in runs if flows[r.flow_id] == flow_name]
    return run


def test_custom_run_from_the_ui_form_completes_and_shows_the_funnel(
    served: Served,
    prefect_api: PrefectServer,
    browser: WebDriver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ui, deployment_id = prefect_api.url, served.ids["end-to-end"]
    data_root = tmp_path / "data"
    started = datetime.now(UTC)
    for stale in SCREENSHOTS.glob("failure-*.png"):
        stale.unlink()

    with screenshot_on_failure(browser, "custom-run", tmp_path):
        browser.get(f"{ui}/deployments")
        _click(browser, f"//a[contains(@href, '/deployments/deployment/{deployment_id}')]")
        _wait(browser).until(ec.url_contains(deployment_id))
        _click(browser, "//button[normalize-space()='Run']")
        _click(browser, "//*[normalize-space()='Custom run']")
        form = _wait(browser).until(
            ec.presence_of_element_located((By.XPATH, "//form[.//span[normalize-space()='Data Root (Optional)']]"))
        )
        _type(browser, _field(form, "Data Root"), str(data_root))
        _type(browser, _field(form, "Tokenize", "Vocab Size"), str(VOCAB_SIZE))
        _type(browser, _field(form, "Train", "Max Steps"), str(MAX_STEPS))
        form.find_element(By.XPATH, ".//button[@type='submit']").click()
        [run] = poll(lambda: _runs_of(deployment_id), 30, "the flow run submitted from the form")

    run = wait_for_final(run.id, timeout=420)
    assert run.state_name == "Completed", f"{run.state_name}: {run.state.message}\n{served.process.tail()}"
    assert run.created >= started
    config = run.parameters["config"]  # the run used what was typed into the form …
    assert config["data_root"] == str(data_root)
    assert config["train"]["max_steps"] == MAX_STEPS and config["tokenize"]["vocab_size"] == VOCAB_SIZE
    # … and the served process ran with it
    assert json.loads((data_root / "runs" / "sample-tiny" / "summary.json").read_text())["steps"] == MAX_STEPS
    assert json.loads((data_root / "sample" / "tokens" / "meta.json").read_text())["vocab_size"] == VOCAB_SIZE
    assert (data_root / "report.md").is_file()

    with screenshot_on_failure(browser, "flow-run", tmp_path):
        browser.get(f"{ui}/runs/flow-run/{run.id}")
        _wait(browser).until(ec.presence_of_element_located((By.XPATH, f"//*[normalize-space()='{run.name}']")))
        _wait(browser).until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space()='Completed']")))
        _tab(browser, "Artifacts")
        _wait(browser).until(ec.visibility_of_element_located((By.XPATH, "//*[normalize-space()='report']")))
        flow_run_png = _save(browser, "flow-run.png", tmp_path, height=1100)

        # The funnel is published by the data-refresh subflow: Subflow Runs → its page → Artifacts → funnel.
        refresh = _subflow(run, "data-refresh")
        _tab(browser, "Subflow Runs")
        _click(browser, f"//a[contains(@href, '/runs/flow-run/{refresh.id}')]")
        _wait(browser).until(ec.url_contains(str(refresh.id)))
        _tab(browser, "Artifacts")
        _click(browser, "//*[normalize-space()='funnel']")
        _wait(browser).until(ec.visibility_of_element_located((By.XPATH, "//h1[normalize-space()='Data funnel']")))
        browser.find_element(By.XPATH, f"//a[contains(@href, '/runs/flow-run/{refresh.id}')]")  # of this run
        for stage in ("extract", "filter", "dedup", "pii", "tokenize"):
            browser.find_element(By.XPATH, f"//table//td[normalize-space()='{stage}']")
        chart = browser.find_element(By.XPATH, "//img[@alt='funnel']")
        _wait(browser).until(lambda d: d.execute_script("return arguments[0].naturalWidth", chart) > 0)
        funnel_png = _save(browser, "funnel.png", tmp_path, height=1800)

    with capsys.disabled():
        print(f"\nscreenshots: {flow_run_png}  {funnel_png}")
