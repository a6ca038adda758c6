from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.ingest import IngestError, SpecFile
from cdiplatform.ingest.spec import parse_scan_command

from ingest_synthetic import FILE_HEADER, scan_block


def test_index_and_header(beamtime):
    spec = SpecFile(beamtime.spec)
    assert len(spec) == 3
    assert spec.keys == ["1", "2", "3"]
    assert 2 in spec and 9 not in spec
    scan = spec.scan(1)
    assert scan.command.split()[:2] == ["ascan", "th"]
    assert scan.date_iso == "2020-02-04T12:28:23"
    assert scan.count_time == 0.25
    assert scan.motor("Energy") == 9.0
    assert scan.motor("IDEnergy") == pytest.approx(9.198)
    assert scan.motor("th") == pytest.approx(0.22)  # by mnemonic
    assert scan.motor("delta") == pytest.approx(32.174)  # case-insensitive fallback
    assert scan.motor_name("gam") == "Gamma"
    assert scan.labels == ("Theta", "H", "Monitor", "pm detector", "Detector")  # names with spaces
    assert scan.header["UIMR5"].split()[:4] == ["4", "10", "2", "8"]
    np.testing.assert_allclose(scan.column("th"), -0.1 + 0.01 * np.arange(6), atol=1e-9)
    np.testing.assert_array_equal(scan.column("pm detector"), np.arange(6) % 3)
    assert not scan.aborted and not scan.incomplete and not spec.scan(3).incomplete  # 3 is aborted


def test_comments_blank_lines_and_bad_rows_inside_data(beamtime):
    scan = SpecFile(beamtime.spec).scan(2)
    assert scan.n_points == 7  # the comment, the blank line and the bad row are not points
    assert any("beam dump" in c for c in scan.comments)
    np.testing.assert_array_equal(scan.column("Monitor"), 1000 + np.arange(7))
    np.testing.assert_allclose(scan.column("Theta"), -0.1 + 0.01 * np.arange(7), atol=1e-9)


@pytest.mark.parametrize("bad_row", ["0.5 0.1 oops", "0.5 0.1 2 3 4 5 6"])
def test_bad_first_data_row_is_refused_not_read_wrongly(tmp_path, bad_row):
    # silx takes the column count from the first row and would drop every good row after it
    lines = scan_block(1, 5).splitlines()
    lines.insert(lines.index(next(x for x in lines if x.startswith("#L"))) + 1, bad_row)
    path = tmp_path / "first.spec"
    path.write_text(FILE_HEADER + "\n".join(lines) + "\n")
    with pytest.raises(IngestError, match="bad first data row") as info:
        SpecFile(path).scan(1)
    assert info.value.scan == 1 and info.value.path == str(path)


def test_aborted_scan(beamtime):
    scan = SpecFile(beamtime.spec).scan(3)
    assert scan.aborted
    assert scan.n_points == 4
    assert scan.parsed_command.n_points == scan.planned_points == 10  # the command asked for more
    assert not scan.incomplete  # aborted: complete with the points it has


def test_missing_scan_names_file_and_scan(beamtime):
    spec = SpecFile(beamtime.spec)
    with pytest.raises(IngestError) as info:
        spec.scan(54)
    assert info.value.scan == 54
    assert info.value.path == str(beamtime.spec)
    assert "not in SPEC file" in str(info.value) and "beamtime.spec" in str(info.value)


def test_duplicate_scan_numbers(tmp_path):
    path = tmp_path / "dup.spec"
    # a second file header restarts numbering, with different motor names
    second_header = FILE_HEADER.replace("#O1 camdist  IDEnergy  Energy  pm detector",
                                        "#O1 camdist  IDEnergy  Energy  other motor")
    path.write_text(FILE_HEADER + scan_block(1, 3) + scan_block(2, 3)
                    + second_header + scan_block(1, 5, energy=10.0))
    spec = SpecFile(path)
    assert spec.keys == ["1", "2", "1.2"]
    with pytest.raises(IngestError, match="appears 2 times"):
        spec.scan(1)
    first, second = spec.scan("1.1"), spec.scan("1.2")
    assert (first.n_points, second.n_points) == (3, 5)
    assert second.occurrence == 2 and second.key == "1.2"
    assert second.motor("Energy") == 10.0
    assert "other motor" in second.motors and "pm detector" in first.motors
    assert spec.scan(2).n_points == 3  # a scan before the second header ends at it


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("   \n\n", "empty"),
    ("#F x\n#C no scans here\n", "no scan"),
])
def test_bad_spec_files(tmp_path, content, message):
    path = tmp_path / "bad.spec"
    path.write_text(content)
    with pytest.raises(IngestError, match=message) as info:
        SpecFile(path)
    assert info.value.path == str(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(IngestError, match="not found"):
        SpecFile(tmp_path / "nope.spec")


def test_data_rows_without_labels(tmp_path):
    path = tmp_path / "nolabels.spec"
    path.write_text("#S 1 ascan th 0 1 2 0.1\n#P0 1\n1 2 3\n")
    with pytest.raises(IngestError, match="#L"):
        SpecFile(path).scan(1)


@pytest.mark.parametrize("command, kind, motors, intervals, count, relative", [
    ("ascan  th -0.279996 0.720004  200 0.25", "ascan", [("th", -0.279996, 0.720004)], 200, 0.25, False),
    ("dscan phi -1 1 20 1", "dscan", [("phi", -1.0, 1.0)], 20, 1.0, True),
    ("a2scan th 0 1 tth 0 2 10 0.5", "a2scan", [("th", 0.0, 1.0), ("tth", 0.0, 2.0)], 10, 0.5, False),
    ("timescan 1", "timescan", [], None, None, False),
    ("ascan th 0 1", "ascan", [], None, None, False),
])
def test_parse_scan_command(command, kind, motors, intervals, count, relative):
    parsed = parse_scan_command(command)
    assert parsed.kind == kind
    assert [tuple(m) for m in parsed.motors] == motors
    assert parsed.intervals == intervals
    assert parsed.count_time == count
    assert parsed.relative == relative


@pytest.mark.shared_data
def test_scan54_index_and_metadata(shared_data):
    spec = SpecFile(shared_data / "example.spec")
    assert len(spec) == 498
    scan = spec.scan(54)
    assert scan.n_points == 201
    th = scan.column("th")
    assert th[0] == pytest.approx(-0.28, abs=1e-4) and th[-1] == pytest.approx(0.72, abs=1e-4)
    assert scan.parsed_command.step() == pytest.approx(0.005)
    assert scan.count_time == 0.25
    assert scan.motor("Energy") == 9.0
    assert scan.motor("Delta") == pytest.approx(32.174)
    assert scan.motor("Gamma") == pytest.approx(12.6346)
    assert scan.motor("camdist") == 500.0
    assert "Monitor" in scan.data and scan.data["Monitor"].shape == (201,)
    aborted = [s.key for s in spec if s.aborted]
    assert len(aborted) >= 10  # the file's "Scan aborted after N points." comments


def test_single_space_labels_of_old_files(tmp_path):
    path = tmp_path / "old.spec"
    path.write_text("#S 1 ascan th 0 1 2 0.1\n#L Theta Monitor Detector\n0 10 1\n0.5 11 2\n1 12 3\n")
    scan = SpecFile(path).scan(1)
    assert scan.labels == ("Theta", "Monitor", "Detector")
    np.testing.assert_array_equal(scan.column("Monitor"), [10, 11, 12])


def test_repeated_number_without_a_new_header(tmp_path):
    path = tmp_path / "rep.spec"
    path.write_text(FILE_HEADER + scan_block(1, 3) + scan_block(1, 4))
    spec = SpecFile(path)
    assert spec.keys == ["1", "1.2"] and spec.numbers == [1, 1]
    assert 1 in spec and "1.1" in spec and "1.2" in spec and "1.3" not in spec
    assert spec.scan("1.2").n_points == 4 and spec.scan("1.1").n_points == 3


def test_windows_line_endings(tmp_path):
    path = tmp_path / "crlf.spec"
    path.write_bytes((FILE_HEADER + scan_block(1, 4)).replace("\n", "\r\n").encode())
    scan = SpecFile(path).scan(1)
    assert scan.labels == ("Theta", "H", "Monitor", "pm detector", "Detector")
    assert scan.header["UIMR5"] == "4 10 2 8 1" and scan.motor("Energy") == 9.0
    assert "pm detector" in scan.motors and scan.motor_name("gam") == "Gamma"  # last of their lines
    np.testing.assert_array_equal(scan.column("Detector"), 10 * np.arange(4))


# -- a file still being written (--watch) ---------------------------------------------------

def _being_written(tmp_path, cut: int | None = None, extra: str = "") -> tuple[SpecFile, str]:
    """Scan 1 done, scan 2 (planned 6 points) with 3 rows so far, the last row cut ``cut`` chars short."""
    block = scan_block(2, 3, start=0.0, step=0.1).rstrip("\n")
    block = block.replace("ascan  th 0 0.2  2", "ascan  th 0 0.5  5")
    text = FILE_HEADER + scan_block(1, 4) + block + extra
    if cut is not None:
        text = text[:len(text) - cut]
    path = tmp_path / "live.spec"
    path.write_text(text)
    return SpecFile(path), text


@pytest.mark.parametrize("cut, points", [
    (None, 2),  # the last row without its newline: not finished
    (1, 2),  # cut inside the last number ("20" -> "2"): the right count of values, a wrong value
    (3, 2),  # cut after a space: one value short
])
def test_partial_last_line_is_not_a_point(tmp_path, cut, points):
    spec, text = _being_written(tmp_path, cut=cut)
    assert spec.ends_mid_line
    scan = spec.scan(2)
    assert scan.n_points == points and scan.planned_points == 6
    assert scan.last and scan.incomplete and not scan.aborted
    np.testing.assert_allclose(scan.column("Theta"), [0.0, 0.1])
    assert spec.scan(1).n_points == 4 and not spec.scan(1).incomplete


def test_partial_last_line_ending_in_a_space_is_dropped(tmp_path):
    # silx keeps an unterminated line that ends in a space; its values may still be cut short
    _, text = _being_written(tmp_path)
    path = tmp_path / "space.spec"
    path.write_text(text.rsplit("\n", 1)[0] + "\n0.200000 0.200 1002 2 2 ")  # "20" cut to "2"
    scan = SpecFile(path).scan(2)
    assert scan.n_points == 2 and scan.incomplete


def test_finished_rows_then_a_new_scan_header_being_written(tmp_path):
    spec, _ = _being_written(tmp_path, extra="\n\n#S 3  ascan  th -0.1 0.4  5 0.2")
    assert not spec.ends_mid_line  # an unterminated header line is not a data row
    assert spec.keys == ["1", "2", "3"]
    two, three = spec.scan(2), spec.scan(3)
    assert two.n_points == 3 and not two.last and not two.incomplete
    assert two.aborted  # 3 of 6 planned points when the next scan began: cut short
    assert three.n_points == 0 and three.labels == () and three.incomplete


def test_last_scan_with_all_planned_points_is_complete(tmp_path):
    path = tmp_path / "done.spec"
    path.write_text(FILE_HEADER + scan_block(1, 4) + scan_block(2, 5).rstrip("\n"))
    scan = SpecFile(path).scan(2)
    assert scan.last and scan.n_points == 4 and scan.incomplete  # the 5th row has no newline yet
    path.write_text(FILE_HEADER + scan_block(1, 4) + scan_block(2, 5))
    scan = SpecFile(path).scan(2)
    assert scan.n_points == scan.planned_points == 5 and not scan.incomplete


def test_spec_file_pickles_and_closes(beamtime):
    import pickle

    with SpecFile(beamtime.spec) as spec:
        back = pickle.loads(pickle.dumps(spec))
    assert back.keys == ["1", "2", "3"] and back.scan(1).n_points == 6
    back.close()
