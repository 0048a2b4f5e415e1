"""The pages as a reader sees them, in headless Chromium at desktop and phone widths, with screenshots checked."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from leaderboard import build_submission, episodes_hash

ENV_ID = "LMEnv/TargetWord-v0"
QA_ID = "LMEnv/KnowledgeQA-v3"
LONG_NAME = "thoughtfully regularised policy gradient agent with a reverse curriculum"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _qa_submission(i, scores):
    seeds = [{"seed": s, "score": v, "episodes_hash": episodes_hash([{"qa": i, "s": s}])} for s, v in enumerate(scores)]
    return build_submission(
        QA_ID, agent=f"qa-agent-{i}", agent_config={"i": i}, model="tiny", tokenizer_hash="t", seeds=seeds,
        wall_time_s=1,
    )  # fmt: skip


@pytest.fixture
def site(tmp_path, live_server_factory, make_submission):
    from leaderboard.store import LeaderboardStore

    db = f"sqlite:///{tmp_path / 'pages.sqlite'}"
    with LeaderboardStore(db) as store:
        rows = [
            (LONG_NAME, [0.9, 0.95, 0.85]),
            ("tied-a", [0.5, 0.6, 0.55]),  # overlapping intervals: one shared rank
            ("tied-b", [0.52, 0.58, 0.54]),
            *[(f"agent-{i}", [0.1 + i / 100, 0.12 + i / 100, 0.11 + i / 100]) for i in range(9)],
        ]
        ids = {
            a: store.submit(make_submission(i, scores=s, agent=a, model=f"model {a}")).id
            for i, (a, s) in enumerate(rows)
        }
        store.set_verification(ids["tied-b"], "verified", {"status": "verified", "seeds": []})
        from leaderboard.baselines import baseline_record

        seeds = [{"seed": s, "score": v} for s, v in enumerate([0.3, 0.25, 0.35])]  # a reference line among the rows
        store.set_baseline(baseline_record(ENV_ID, "format-only", seeds, {}))
        for i, scores in enumerate([[0.2, -0.1, 0.3], [0.6, 0.7, 0.65]]):
            store.submit(_qa_submission(i, scores))
    return live_server_factory(db), ids


def _emulate(browser, width, height):
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
    )


def _check_screenshot(path, width):
    from PIL import Image

    with Image.open(path) as image:
        assert image.width == width, (image.width, width)
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 20, "the screenshot is (nearly) blank"
        white = sum(n for n, c in colors or [] if c == (255, 255, 255))
        assert colors is None or white < 0.97 * rgb.width * rgb.height


WORDS_ON_ONE_LINE = """
const broken = [];
for (const cell of document.querySelectorAll("td.name a, td.name.model")) {
  const node = cell.firstChild;
  if (!node || node.nodeType !== Node.TEXT_NODE || cell.offsetParent === null) continue;
  const re = /\\S+/g; let m;
  while ((m = re.exec(node.textContent)) !== null) {
    const range = document.createRange();
    range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
    const lines = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
    if (lines.size > 1) broken.push(m[0]);
  }
}
return broken;
"""


@pytest.mark.parametrize("layout", sorted(WIDTHS))
def test_pages_read_well_at_desktop_and_phone_widths(site, browser, tmp_path, layout):
    from selenium.webdriver.common.by import By

    server, ids = site
    width, height = WIDTHS[layout]
    _emulate(browser, width, height)
    browser.get(server.base + "/")
    assert browser.execute_script("return window.innerWidth") == width

    # Populated envs first, in an overview; envs without entries collected at the end.
    sections = [s.get_attribute("data-env") for s in browser.find_elements(By.CSS_SELECTOR, "section.board")]
    assert sections == [QA_ID, ENV_ID]
    overview = [r.get_attribute("data-env") for r in browser.find_elements(By.CSS_SELECTOR, "table.overview tbody tr")]
    assert overview == [QA_ID, ENV_ID]
    empty = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.empty-envs a")]
    assert "LMEnv/Math-v0" in empty and ENV_ID not in empty
    assert browser.execute_script(
        "const e = document.querySelector('section.empty-envs'); const b = [...document.querySelectorAll"
        "('section.board')].pop(); return !!(b.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING);"
    )

    # Nothing runs off the screen, and no name is broken inside a word.
    for path in ("/", f"/env/{quote(ENV_ID)}", f"/entry/{ids[LONG_NAME]}"):
        browser.get(server.base + path)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
        for table in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard"):
            assert browser.execute_script("return arguments[0].getBoundingClientRect().right", table) <= width
        assert browser.execute_script(WORDS_ON_ONE_LINE) == [], path
        shot = tmp_path / f"{layout}-{path.strip('/').replace('/', '_') or 'index'}.png"
        assert browser.save_screenshot(str(shot))
        _check_screenshot(shot, width)

    # Overlapping intervals are shown as ties; verification is visible at every width.
    browser.get(f"{server.base}/env/{quote(ENV_ID)}")
    ranks = {
        r.find_element(By.CSS_SELECTOR, "td.agent a").text: r.find_element(By.CSS_SELECTOR, "td.rank").text
        for r in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr[data-entry-id]")
    }
    assert ranks[LONG_NAME] == "1" and ranks["tied-a"] == ranks["tied-b"] == "2="
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-entry-id='{ids['tied-b']}']")
    visible = row.find_element(By.CSS_SELECTOR, "span.badge.verified" if layout == "desktop" else "span.verified-mark")
    assert visible.is_displayed()

    # The format-only baseline is a reference row where its score falls, inside the screen, and a line in the plot.
    line = browser.find_element(By.CSS_SELECTOR, "table.leaderboard tr.baseline[data-baseline='format-only']")
    assert line.is_displayed() and "format-only" in line.text
    assert browser.execute_script("return arguments[0].getBoundingClientRect().right", line) <= width
    order = [r.get_attribute("data-entry-id") or "line" for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert order.index("line") == 3  # after the three entries above 0.3, before the nine below it
    dashed = browser.find_element(
        By.CSS_SELECTOR, "svg.plot g.baseline line"
    )  # vertical: zero width, so no is_displayed
    assert browser.execute_script("return arguments[0].getBoundingClientRect().height", dashed) > 100
    flagged = browser.find_elements(By.CSS_SELECTOR, "tr.below-baseline")
    assert len(flagged) == 9
    if layout == "desktop":
        assert flagged[0].find_element(By.CSS_SELECTOR, "span.badge.below-baseline").is_displayed()


def test_search_and_verified_filter_in_the_browser(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, ids = site
    _emulate(browser, *WIDTHS["desktop"])
    browser.get(f"{server.base}/env/{quote(ENV_ID)}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr[data-entry-id]")) == 12
    box = browser.find_element(By.CSS_SELECTOR, "form.filter input[name=q]")
    box.send_keys("tied")
    box.submit()
    WebDriverWait(browser, 10).until(lambda d: "q=tied" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr[data-entry-id]")
    assert sorted(r.get_attribute("data-entry-id") for r in rows) == sorted(str(ids[a]) for a in ("tied-a", "tied-b"))
    browser.find_element(By.CSS_SELECTOR, "form.filter input[name=verified]").click()
    browser.find_element(By.CSS_SELECTOR, "form.filter button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "verified=1" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr[data-entry-id]")
    assert [r.get_attribute("data-entry-id") for r in rows] == [str(ids["tied-b"])]
    status, listing = server.request("GET", "/api/v1/submissions?verified=1")
    assert status == 200 and [e["agent"] for e in listing] == ["tied-b"]
    assert "Traceback" not in server.log() and json.dumps(listing)
