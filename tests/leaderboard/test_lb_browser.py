"""The web page in a real headless browser (Debian's Chromium): submit through the API, see the row appear."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

ENV_ID = "LMEnv/TargetWord-v0"
SCRIPT = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def test_submitted_rows_appear_sorted_escaped_and_plotted(tmp_path, live_server_factory, browser, make_submission):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from leaderboard.store import LeaderboardStore

    db = f"sqlite:///{tmp_path / 'browser.sqlite'}"
    with LeaderboardStore(db) as store:
        token = store.issue_token("browser-test")
    server = live_server_factory(db)
    page = f"{server.base}/env/{quote(ENV_ID)}"

    browser.get(page)
    assert browser.find_elements(By.CSS_SELECTOR, "p.empty")  # no rows yet

    submissions = [
        make_submission(1, scores=[0.2, 0.3, 0.25], agent="middle"),
        make_submission(2, scores=[0.9, 0.8, 0.95], agent=SCRIPT),
        make_submission(3, scores=[0.05, 0.1, 0.0], agent="last"),
    ]
    ids = []
    for doc in submissions:
        status, body = server.request("POST", "/api/v1/submissions", json.dumps(doc).encode(), token=token)
        assert status == 201, body
        ids.append(body["id"])

    browser.refresh()
    rows = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr"))
    assert [r.get_attribute("data-entry-id") for r in rows] == [str(ids[1]), str(ids[0]), str(ids[2])]

    # The script-injection name is shown literally and did not run.
    agents = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard td.agent")]
    assert agents == [SCRIPT, "middle", "last"]
    assert browser.title != "pwned" and "pwned" not in browser.execute_script("return document.title")
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert

    # Confidence intervals are shown, and the plot has one group per entry with CI bars and seed dots.
    ci = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard td.ci")[0].text
    assert ci.startswith("[") and ci.endswith("]")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.plot g.entry")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.plot line.ci")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.plot circle.seed")) == 9

    # Sorting: click the Agent header (ascending), again (descending); Enter on the score header.
    def column(cls):
        return [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"table.leaderboard td.{cls}")]

    header = browser.find_element(By.XPATH, "//table[contains(@class,'leaderboard')]//th[text()='Agent']")
    header.click()
    assert column("agent") == [SCRIPT, "last", "middle"] and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert column("agent") == ["middle", "last", SCRIPT] and header.get_attribute("aria-sort") == "descending"
    score_header = browser.find_element(By.XPATH, "//table[contains(@class,'leaderboard')]//th[text()='Score (IQM)']")
    score_header.send_keys(Keys.ENTER)
    scores = [float(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard td.score")]
    assert scores == sorted(scores)

    # The entry page holds the full record, escaped.
    browser.find_element(By.LINK_TEXT, SCRIPT).click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith(f"/entry/{ids[1]}"))
    assert browser.find_element(By.CSS_SELECTOR, "dd.agent").text == SCRIPT
    record = json.loads(browser.find_element(By.CSS_SELECTOR, "pre.record").text)
    assert record == submissions[1]
    assert browser.title != "pwned"

    # The index page shows the same row in this env's table.
    browser.get(server.base + "/")
    section = browser.find_element(By.CSS_SELECTOR, f"section.board[data-env='{ENV_ID}']")
    assert len(section.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3
    assert "Traceback" not in server.log()
