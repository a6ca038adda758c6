"""The report in a real browser (headless Chromium over the DevTools pipe): pages, images, links, values.

Chromium is Debian's ``chromium`` package; :func:`ensure_chromium` installs it
when it is missing and we are root. Without it the tests skip, and fail under
``CI=true``.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from matplotlib.image import imread

from cdiplatform import open_catalog
from cdiplatform.catalog import STATUS_OK
from cdiplatform.testing import require
from cdiplatform.testing.browser import BrowserError, Chromium, ensure_chromium

IMAGES = "[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
LINKS = "[...document.querySelectorAll('a[href]')].map(a => a.href)"
CELLS = ("[...document.querySelectorAll('table.summary td[data-var]')]"
         ".map(td => [td.dataset.scan, td.dataset.method, td.dataset.var, td.dataset.value])")
METHOD_FIGURES = "[...document.querySelectorAll('img.method-figure')].map(i => i.dataset.method)"


@pytest.fixture(scope="module")
def browser():
    try:
        executable = ensure_chromium()
    except BrowserError as exc:
        require(False, f"no chromium ({exc})")
    with Chromium(executable=executable, width=1280, height=900) as chromium:
        yield chromium


def _local(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file", f"{url}: the report links outside itself"
    return Path(unquote(parts.path))


def _crawl(browser: Chromium, index: Path) -> dict[Path, list[str]]:
    """Every page reachable from the summary, loaded: no console error, every image in, every link resolving."""
    seen: dict[Path, list[str]] = {}
    todo = [index]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        load = browser.load(page.as_uri())
        assert load.errors == [], f"{page}: {load.errors}"
        assert all(url.startswith("file://") for url in load.requests), load.requests  # nothing from the internet
        images = browser.evaluate(IMAGES)
        assert images, f"{page}: no image"
        for src, complete, width in images:
            assert complete and width > 0, f"{page}: image {src} did not load"
        links = browser.evaluate(LINKS)
        seen[page] = links
        for link in links:
            target = _local(link)
            assert target.is_file(), f"{page}: link {link} resolves to nothing"
            fragment = urlsplit(link).fragment
            if fragment:
                assert f'id="{fragment}"' in target.read_text(), f"{page}: {link}: no such anchor"
            todo.append(target)
    return seen


@pytest.mark.parametrize("case", ["simulated", "measured"])
def test_report_in_a_browser(browser, request, case):
    catalog, site = request.getfixturevalue(case)
    pages = _crawl(browser, site.index.resolve())
    assert set(pages) == {p.resolve() for p in site.pages}  # every page reachable from the summary

    # the summary table holds the benchmark node's values
    cat = open_catalog(catalog)
    bench = cat.open("benchmarks/quick", chunks=None).load()
    browser.load(site.index.resolve().as_uri())
    cells = {(s, m, v): value for s, m, v, value in browser.evaluate(CELLS)}
    methods = [str(m) for m in bench["method"].values]
    variables = ["chi", "seconds"] + ([] if case == "measured" else ["amplitude_error", "phase_error"])
    assert {v for _, _, v in cells} == {*variables, "flag"}
    for i, scan in enumerate(bench["scan"].values):
        for j, method in enumerate(methods):
            for var in variables:
                node_var = "method_seconds" if var == "seconds" else var  # the run's own "seconds" is bookkeeping
                shown, stored = float(cells[(str(scan), method, var)]), float(bench[node_var].values[i, j])
                assert shown == stored or (np.isnan(shown) and np.isnan(stored)), (scan, method, var)
            assert cells[(str(scan), method, "flag")] == str(bench["flag"].values[i, j])

    # a screenshot of the summary is not blank
    pixels = imread(io.BytesIO(browser.screenshot()))[..., :3]
    assert pixels.std() > 0.1 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100

    # one figure per scan and method with a result for it, on the scan's page
    ok = {}
    for method in methods:
        ds = cat.open(f"results/{method}", chunks=None)
        ok[method] = {str(s) for s, status in zip(ds["scan"].values, ds["status"].values) if status == STATUS_OK}
    scan_pages = [p for p in site.pages if p.parent.parent.name == "scans"]
    assert len(scan_pages) == bench.sizes["scan"]
    for page in scan_pages:
        browser.load(page.resolve().as_uri())
        scan = browser.evaluate("document.querySelector('img.method-figure').dataset.scan")
        shown = browser.evaluate(METHOD_FIGURES)
        assert sorted(shown) == sorted(m for m in methods if scan in ok[m]), page


def test_the_checks_see_what_is_broken(browser, tmp_path):
    """The browser reports a console error, an exception and an image that does not load."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("boom"); '
                    'null.x;</script></body></html>')
    load = browser.load(page.as_uri())
    text = " | ".join(load.errors)
    assert "console.error: boom" in text and "exception: TypeError" in text and "ERR_FILE_NOT_FOUND" in text
    assert browser.evaluate(IMAGES)[0][2] == 0
