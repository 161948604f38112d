"""The review page in a real browser (Debian's chromium and chromium-driver, driven by Selenium), on the real
pipeline's results: name a faceset, merge two, remove a crop, veto a planned drop; the decisions file says
so; the pipeline applies it (anna_top30.fsz, the removed crop in no bundle, the merged faceset in _merged/).
The screenshots of the people page and a faceset page are saved to docs/screenshots/ (the README shows them;
git-ignored: they show crops of the shared photos, which are never committed).
"""
from __future__ import annotations

import io
import json
import shutil
import threading
import zipfile

import pytest
from conftest import FACES, REPO, copy_photos, needs_shared
from pipeline_util import planned, snakemake, write_config

from facesets.core.layout import Layout
from facesets.review import decisions as D
from facesets.review.server import serve

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SHOTS = REPO / "docs" / "screenshots"
pytestmark = [needs_shared, pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium / chromedriver not installed "
                                                                   "(.ci/run installs chromium and chromium-driver)")]
PEOPLE = ("p01", "p03", "p04", "p05", "p06")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    wd = tmp_path_factory.mktemp("review_browser")
    rels = [str(p.relative_to(FACES)) for d in PEOPLE for p in sorted((FACES / "deepface" / d).glob("*.jpg"))]
    copy_photos(wd / "src", rels)
    cfg = write_config(wd, {"s": wd / "src"}, refine={"min_faces": 2},
                       curation={"neardup": {"similarity": 0.88}, "occlusion": {"enabled": "off"}},
                       review={"decisions": str(wd / "decisions.yaml")})
    snakemake(wd, cfg)
    lay = Layout(wd / "results")
    server = serve(lay.results, wd / "decisions.yaml", apply_command=f"snakemake --cores all --configfile {cfg.name}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield wd, cfg, lay, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def faceset_of(lay: Layout, person: str) -> str:
    refine = json.loads(lay.refine_manifest.read_text())
    return next(n for n, fs in refine["facesets"].items() if all(f"/{person}/" in p for _, p in fs["faces"]))


def click(driver, css: str) -> None:
    """Click a form's button and wait for the page it leads to (the write, then the redirect back)."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 60).until(lambda d: old != d.find_element(By.TAG_NAME, "html"))
    errors = driver.find_elements(By.ID, "error")
    assert not errors, errors[0].text


def shot(driver, name: str) -> None:
    """A small PNG of what the browser shows, once every image in view has loaded."""
    from PIL import Image

    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0)"))
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    SHOTS.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(SHOTS / name, optimize=True)
    assert (SHOTS / name).stat().st_size < 400_000


def test_name_merge_remove_and_veto_in_a_browser_then_the_pipeline_applies_them(results, browser):
    wd, cfg, lay, url = results
    anna, p03, p04 = faceset_of(lay, "p01"), faceset_of(lay, "p03"), faceset_of(lay, "p04")
    browser.get(url + "/")
    cards = browser.find_elements(By.CSS_SELECTOR, "#people .person")
    assert len(cards) == len(PEOPLE) and "crops" in cards[0].text
    # name it
    browser.find_element(By.CSS_SELECTOR, f'.person[data-faceset="{anna}"] a').click()
    field = browser.find_element(By.CSS_SELECTOR, '#name-form input[name="name"]')
    field.clear()
    field.send_keys("anna")
    click(browser, "#name-form button.name")
    assert "name " + anna in browser.find_element(By.ID, "done").text
    # remove a crop (not this person)
    second = browser.find_elements(By.CSS_SELECTOR, "#crops .crop")[1]
    removed = second.get_attribute("data-key")
    click(browser, f'#crops .crop[data-key="{removed}"] button.remove')
    assert "removed (pending)" in browser.find_element(By.CSS_SELECTOR, f'#crops .crop[data-key="{removed}"]').text
    # merge two: p04's faceset is the same person as p03's (the most similar facesets are listed first)
    browser.get(f"{url}/faceset/{p03}")
    click(browser, f'#similar .similar:has(.person[data-faceset="{p04}"]) button.merge')
    # veto a planned drop (keep the crop)
    browser.get(url + "/pending")
    row = browser.find_element(By.CSS_SELECTOR, 'table[data-pass="neardup"] tr.item')
    kept = row.get_attribute("data-key")
    click(browser, f'table[data-pass="neardup"] tr.item[data-key="{kept}"] button.veto')
    assert browser.find_element(By.ID, "not-applied").text.startswith("Decisions not applied yet")

    d = D.load(wd / "decisions.yaml")
    assert d["names"] == {anna: "anna"} and d["remove"] == {anna: [removed]}
    assert d["same"] == [[p03, p04]] and d["keep"] == [kept]

    snakemake(wd, cfg)
    assert planned(wd, cfg) == []
    assert (lay.corpus / anna / "anna_top30.fsz").is_file() and (lay.corpus / anna / "anna_all.fsz").is_file()
    crop = f"{removed.split(':')[0][:16]}_{removed.split(':')[1]}.png"
    for bundle in (b for b in lay.corpus.rglob("*.fsz") if ".curation" not in b.parts):
        with zipfile.ZipFile(bundle) as z:
            assert not any(n.endswith(crop) for n in z.namelist()), bundle
    assert (lay.corpus / "_merged" / p04).is_dir() and not (lay.corpus / p04).exists()
    neardup = json.loads((lay.plans / "neardup.json").read_text())
    assert [v["key"] for v in neardup["vetoed"]] == [kept]

    browser.get(url + "/")
    assert "Decisions not applied yet" not in browser.page_source
    assert "anna" in browser.find_element(By.CSS_SELECTOR, f'.person[data-faceset="{anna}"]').text
    assert "merged" in browser.find_element(By.CSS_SELECTOR, f'.person[data-faceset="{p04}"]').text
    shot(browser, "review_people.png")
    browser.get(f"{url}/faceset/{anna}")
    shot(browser, "review_faceset.png")
