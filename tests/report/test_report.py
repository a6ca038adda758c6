"""build_report and ``cdip report`` on synthetic catalogs: pages, figures, values, what is missing, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread
from report_html import SIZES, elements
from typer.testing import CliRunner

from cdiplatform import open_catalog
from cdiplatform.cli import app
from cdiplatform.errors import NodeNotFoundError, ReportError
from cdiplatform.report import build_report, safe_name
from cdiplatform.testing.report_catalog import FAILED, write_report_catalog


#: the summary table's columns and the benchmark node's variables they show
NODE_VAR = {"seconds": "method_seconds"}


@pytest.mark.parametrize("value, expected", [(12, "12"), ("scan54_64", "scan54_64"), ("a_b", "a_b")])
def test_safe_names_keep_safe_identities(value, expected):
    assert safe_name(value) == expected


@pytest.mark.parametrize("values", [("34idc-2020/54", "34idc-2020_54"), ("a/b", "a_b", "a?b"), ("..", ".", "")])
def test_safe_names_are_safe_and_distinct(values):
    names = [safe_name(v) for v in values]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name), name


def _summary_cells(site):
    return {(c["data-scan"], c["data-method"], c["data-var"]): c["data-value"]
            for c in elements(site.index, "td") if "data-var" in c}


def test_simulated_report_pages_figures_and_values(simulated):
    path, site = simulated
    cat = open_catalog(path)
    bench = cat.open("benchmarks/quick", chunks=None).load()
    scans = [int(s) for s in bench["scan"].values]
    assert [p.name for p in site.pages] == ["index.html"] + [f"{s}.html" for s in scans]
    assert all(p.is_file() for p in site.pages + site.figures)
    assert (site.out / "style.css").is_file()

    cells = _summary_cells(site)
    for i, scan in enumerate(scans):
        for j, method in enumerate(bench["method"].values):
            for var in ("chi", "amplitude_error", "phase_error", "seconds"):
                value = float(cells[(str(scan), method, var)])
                expected = float(bench[NODE_VAR.get(var, var)].values[i, j])
                assert value == expected or (np.isnan(value) and np.isnan(expected)), (scan, method, var)
            assert cells[(str(scan), method, "flag")] == bench["flag"].values[i, j]

    failed_scan = scans[FAILED[1]]
    for scan in scans:
        page = site.out / "scans" / "benchmark-quick" / f"{scan}.html"
        shown = {img["data-method"] for img in elements(page, "img", cls="method-figure")}
        assert shown == ({"nn"} if scan == failed_scan else {"nn", "er_hio"})
        assert len(elements(page, "img", cls="truth-figure")) == 1
        assert len(elements(page, "img", cls="convergence-figure")) == 1
        for img in elements(page, "img"):
            assert (page.parent / img["src"]).resolve().is_file()
    failed_page = (site.out / "scans" / "benchmark-quick" / f"{failed_scan}.html").read_text()
    assert FAILED[2] in failed_page

    # the resolution: er_hio's PRTF (its result node) and FSC (carried by its post-processing node)
    prtf = cat.open("results/er_hio", chunks=None)["prtf_resolution"].values
    for i, scan in enumerate(scans):
        page = site.out / "scans" / "benchmark-quick" / f"{scan}.html"
        figures = elements(page, "img", cls="resolution-figure")
        assert len(figures) == (0 if scan == failed_scan else 1), scan
        if scan != failed_scan:
            assert (page.parent / figures[0]["src"]).resolve().is_file()
            text = page.read_text()
            assert "results/postprocess_er_hio" in text and "FSC" in text
            assert all(f"{v:.3g}" in text for v in prtf[i])

    # er_hio has a post-processing node: its figure has a strain row (3 rows against nn's 2)
    figures = site.out / "figures" / "benchmark-quick" / str(scans[0])
    assert imread(figures / "er_hio.png").shape[0] > 1.3 * imread(figures / "nn.png").shape[0]
    assert "results/postprocess_er_hio" in (site.out / "scans" / "benchmark-quick" / f"{scans[0]}.html").read_text()
    # the gold collection's distributions, the error histograms and the times on the summary
    assert {f.name for f in site.figures if f.parent.name == "benchmark-quick"} == {"errors.png", "time.png",
                                                                                    "gold.png"}
    index = site.index.read_text()
    assert "0123456789ab" in index and "synthetic" in index and "2026-11-22T06:25:20" in index  # provenance


def test_measured_scans_have_safe_page_names_and_no_error_columns(measured):
    path, site = measured
    scans = list(open_catalog(path).scans("benchmarks/quick"))
    assert scans[0] == "34idc-2020/54"
    links = [a["href"] for a in elements(site.index, "a") if a["href"].startswith("scans/")]
    assert links == [f"scans/benchmark-quick/{safe_name(s)}.html" for s in scans]
    assert all("/" not in safe_name(s) for s in scans)
    assert all((site.out / link).is_file() for link in links)
    variables = {var for _, _, var in _summary_cells(site)}
    assert variables == {"chi", "seconds", "flag"}  # no truth: no amplitude or phase errors
    assert any("no amplitude or phase errors" in note for note in site.notes)
    assert not list((site.out / "figures" / "benchmark-quick").glob("*/truth.png"))


def test_two_dimensional_results_without_post_processing(tmp_path):
    write_report_catalog(tmp_path / "c.zarr", ndim=2, n_scans=2, size=16, records=5)
    site = build_report(tmp_path / "c.zarr", out=tmp_path / "site")
    assert len(site.pages) == 3
    page = site.out / "scans" / "benchmark-quick" / "0.html"
    assert {i["data-method"] for i in elements(page, "img", cls="method-figure")} == {"nn", "er_hio"}


def test_missing_nodes_become_notes_not_errors(tmp_path):
    cat = write_report_catalog(tmp_path / "c.zarr", **SIZES)
    cat.remove("results/nn")
    cat.remove("collections/sim")
    site = build_report(tmp_path / "c.zarr", out=tmp_path / "site")
    notes = " | ".join(site.notes)
    assert "the result of nn" in notes and "is not there" in notes
    assert "its collection" in notes and "no truth and no scan metadata" in notes
    page = site.out / "scans" / "benchmark-quick" / "0.html"
    assert {i["data-method"] for i in elements(page, "img", cls="method-figure")} == {"er_hio"}
    assert "no result node recorded" in page.read_text()
    assert "What is missing" in site.index.read_text()


def test_results_without_a_benchmark_are_tabled_from_their_own_values(tmp_path):
    cat = write_report_catalog(tmp_path / "c.zarr", **SIZES)
    cat.remove("benchmarks/quick")
    site = build_report(tmp_path / "c.zarr", out=tmp_path / "site")
    cells = _summary_cells(site)
    for method in ("nn", "er_hio"):
        ds = cat.open(f"results/{method}", chunks=None)
        for scan, chi, status in zip(ds["scan"].values, ds["chi"].values, ds["status"].values):
            shown = float(cells[(str(scan), method, "chi")])
            assert shown == chi or (np.isnan(shown) and np.isnan(chi))
            assert cells[(str(scan), method, "status")] == {1: "ok", 2: "failed"}[int(status)]
    assert [p.parent.name for p in site.pages[1:]] == ["results-sim"] * SIZES["n_scans"]
    assert any("no benchmark node" in n for n in site.notes)


@pytest.mark.parametrize("nodes, methods", [
    (["collections/sim"], {"nn", "er_hio"}),       # everything made from the collection
    (["results/postprocess_er_hio"], {"er_hio"}),  # a post-processing node stands for its result
    (["results/nn"], {"nn"}),
])
def test_named_nodes_select_what_is_shown(tmp_path, nodes, methods):
    write_report_catalog(tmp_path / "c.zarr", **SIZES)
    site = build_report(tmp_path / "c.zarr", nodes=nodes, out=tmp_path / "site")
    assert {method for _, method, _ in _summary_cells(site)} == methods


def test_an_empty_catalog_gives_a_page_that_says_so(tmp_path):
    open_catalog(tmp_path / "empty.zarr", mode="a")
    site = build_report(tmp_path / "empty.zarr", out=tmp_path / "site")
    assert site.pages == (site.index,)
    assert "no benchmark and no result" in site.index.read_text()


def test_bad_inputs_are_one_line_errors(tmp_path):
    cat = write_report_catalog(tmp_path / "c.zarr", n_scans=2, size=8, records=3)
    cat.write("models/m", xr.Dataset({"w": ("k", np.zeros(2, np.float32))}),
              attrs={"architecture": "x", "config": {}, "weights_hash": "0"})
    for nodes, error, words in ((["models/m"], ReportError, "a model node"),
                                (["results/nope"], NodeNotFoundError, "no node 'results/nope'")):
        with pytest.raises(error, match=words) as info:
            build_report(tmp_path / "c.zarr", nodes=nodes, out=tmp_path / "site")
        assert "\n" not in str(info.value)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ReportError, match="a file"):
        build_report(tmp_path / "c.zarr", out=tmp_path / "a_file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ReportError, match="no earlier report"):
        build_report(tmp_path / "c.zarr", out=tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "c.zarr", "other"]  # no staging left


def test_a_rebuild_replaces_the_earlier_report(tmp_path):
    write_report_catalog(tmp_path / "c.zarr", n_scans=2, size=8, records=3)
    first = build_report(tmp_path / "c.zarr", out=tmp_path / "site")
    stale = first.out / "scans" / "stale.html"
    stale.write_text("old")
    second = build_report(tmp_path / "c.zarr", nodes=["results/nn"], out=tmp_path / "site")
    assert not stale.exists()
    assert second.index.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr", "site"]


def test_cli_report(tmp_path):
    write_report_catalog(tmp_path / "c.zarr", n_scans=2, size=8, records=3, measured=True)
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert f"report: {tmp_path / 'site' / 'index.html'} (3 pages" in result.output
    assert "missing: " in result.output  # measured: no truth
    result = runner.invoke(app, ["report", str(tmp_path / "c.zarr"), "raw/x/1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'c.zarr'}: no node 'raw/x/1'"]
    result = runner.invoke(app, ["report", str(tmp_path / "c.zarr")])  # default: beside the catalog
    assert result.exit_code == 0 and (tmp_path / "c.report" / "index.html").is_file()


def test_scan_pages_limits_the_pages_not_the_summary(tmp_path):
    write_report_catalog(tmp_path / "c.zarr", ndim=2, n_scans=4, size=16, records=3)
    site = build_report(tmp_path / "c.zarr", out=tmp_path / "site", scan_pages=2)
    assert [p.name for p in site.pages] == ["index.html", "0.html", "1.html"]
    assert {scan for scan, _, _ in _summary_cells(site)} == {"0", "1", "2", "3"}
    links = [a["href"] for a in elements(site.index, "a") if a["href"].startswith("scans/")]
    assert links == ["scans/benchmark-quick/0.html", "scans/benchmark-quick/1.html"]
    last = (site.out / "scans" / "benchmark-quick" / "1.html").read_text()
    assert "previous: 0" in last and "next:" not in last
    assert any("scan pages for the first 2 of 4 scans" in note for note in site.notes)
    with pytest.raises(ReportError, match="scan_pages must be >= 0"):
        build_report(tmp_path / "c.zarr", out=tmp_path / "site", scan_pages=-1)


def test_benchmark_error_histograms_draws_one_benchmark_into_one_png(tmp_path):
    from cdiplatform.report import benchmark_error_histograms

    write_report_catalog(tmp_path / "c.zarr", ndim=2, n_scans=3, size=16, records=3)
    png = benchmark_error_histograms(tmp_path / "c.zarr", "benchmarks/quick", tmp_path / "docs" / "e.png",
                                     methods={"er_hio": "ER/HIO", "nn": "the network"}, dpi=50)
    assert png == tmp_path / "docs" / "e.png" and imread(png).shape[0] > 100
    with pytest.raises(ReportError, match="no method 'mean_object'"):
        benchmark_error_histograms(tmp_path / "c.zarr", "benchmarks/quick", tmp_path / "x.png",
                                   methods={"mean_object": "baseline"})
    with pytest.raises(ReportError, match="not a benchmark node"):
        benchmark_error_histograms(tmp_path / "c.zarr", "results/nn", tmp_path / "x.png")


def _page_texts(site) -> dict[str, str]:
    """Every page's text without its time stamp, by its path in the site."""
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
    return {str(p.relative_to(site.out)): stamp.sub("TIME", p.read_text(encoding="utf-8")) for p in site.pages}


def test_scan_pages_drawn_by_another_map_make_the_same_site(measured, tmp_path):
    # the report stage draws the scan pages on the cluster's workers, a few a task: each call gets only
    # pickled arguments and reads the catalog again by its path
    import pickle

    path, site = measured
    calls = []

    def elsewhere(fn, items):
        calls.extend(items)
        return [pickle.loads(pickle.dumps(fn(pickle.loads(pickle.dumps(item))))) for item in items]

    other = build_report(path, out=tmp_path / "site", map_pages=elsewhere)
    assert len(calls) == 1 and len(calls[0].scans) == SIZES["n_scans"]
    assert [p.relative_to(other.out) for p in other.pages] == [p.relative_to(site.out) for p in site.pages]
    assert sorted(f.relative_to(other.out) for f in other.figures) == sorted(f.relative_to(site.out)
                                                                             for f in site.figures)
    assert other.notes == site.notes
    assert _page_texts(other) == _page_texts(site)


def test_scan_metadata_is_listed_by_name(measured):
    # the coordinates of a node opened from the store came in another order in another process, so two
    # builds of one report differed
    _, site = measured
    page = next(p for p in site.pages if p.parent.name == "benchmark-quick")
    rows = re.findall(r"<tr><th>([^<]+)</th><td>", page.read_text(encoding="utf-8").split('class="metadata"')[1]
                      .split("</table>")[0])
    assert rows[0] == "collection" and len(rows) > 2
    assert rows[1:] == sorted(rows[1:])
