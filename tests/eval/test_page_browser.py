"""The local page in a real headless browser (Chromium through Selenium), with the shipped model.

Skipped where no browser is installed (``apt-get install -y chromium chromium-driver``; ``.ci/run``
installs them). ``ATTNGAN_SCREENSHOT=PATH`` keeps the screenshot (the README's is taken so).
"""

import os
import shutil
import threading

import pytest
from PIL import Image

from attngan_jax import model_dir
from attngan_jax.eval import sampling, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no headless browser: apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def page_url():
    assert os.path.isfile(os.path.join(model_dir.SHIPPED_MODEL, "model.json")), (
        "the shipped model is missing: python scripts/ship_shapes_model.py --train"
    )
    srv = serve.make_server(None, port=0)  # the shipped model
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    h, p = srv.server_address[:2]
    yield f"http://{h}:{p}/"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1200,1000"):  # fmt: skip
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout=180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def test_page_generates_every_stage_and_attention_map(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    spec = sampling.load_model(model_dir.SHIPPED_MODEL).spec
    d = browser
    d.get(page_url)
    header = "model: the shipped shapes demo model (commit "
    _wait(d, lambda d: header in d.find_element(By.ID, "model").text)
    assert "/" not in d.find_element(By.ID, "model").text  # no local path

    # An empty caption gets a message on the page, and no images.
    d.find_element(By.ID, "caption").clear()
    d.find_element(By.ID, "generate").click()
    msg = d.find_element(By.ID, "message")
    assert "Type a caption" in msg.text and "error" in msg.get_attribute("class")

    # A caption with a word the model does not know; two samples.
    d.find_element(By.ID, "caption").send_keys("a red circle above a blue zebra square")
    n = d.find_element(By.ID, "num-samples")
    n.clear()
    n.send_keys("2")
    d.find_element(By.ID, "new-seed").click()
    d.find_element(By.ID, "generate").click()
    want = 2 * spec.num_stages
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.stage")) == want)
    loaded = d.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert loaded, "an image did not load"
    attention = d.find_elements(By.CSS_SELECTOR, "img.attention")
    assert len(attention) == 2 * (spec.num_stages - 1) * 3  # top 3 words per attending stage
    sizes = d.execute_script(
        "return [...document.querySelectorAll('img.stage')].map(i => i.naturalWidth)"
    )
    assert sizes == list(spec.image_sizes) * 2
    struck = [s.text for s in d.find_elements(By.CSS_SELECTOR, ".words s")]
    assert struck == ["zebra"]
    assert "not in the vocabulary" in d.find_element(By.CSS_SELECTOR, ".note").text
    assert "error" not in d.find_element(By.ID, "message").get_attribute("class")

    # One caption per line: each shape of the dataset, two samples each (the README's screenshot).
    d.find_element(By.ID, "caption").clear()
    d.find_element(By.ID, "caption").send_keys("a red circle\na blue square\n\na green triangle")
    d.find_element(By.ID, "seed").clear()
    d.find_element(By.ID, "seed").send_keys("0")
    d.find_element(By.ID, "generate").click()
    _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.stage")) == 3 * want)
    shown = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#results .caption")]
    assert shown == ["a red circle", "a blue square", "a green triangle"]
    assert "error" not in d.find_element(By.ID, "message").get_attribute("class")
    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    for _ in range(3):  # the whole page in the screenshot (the window's frame takes some height)
        missing = d.execute_script(
            "return document.documentElement.scrollHeight - window.innerHeight"
        )
        if missing <= 0:
            break
        d.set_window_size(1200, d.get_window_size()["height"] + int(missing) + 20)
    path = os.environ.get("ATTNGAN_SCREENSHOT") or str(tmp_path / "page.png")
    assert d.save_screenshot(path)
    with Image.open(path) as im:
        assert im.size[0] >= 800 and im.size[1] >= 600
