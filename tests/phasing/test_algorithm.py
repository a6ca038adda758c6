import pytest

from cdiplatform.phasing import PhasingSettings, parse_algorithm


@pytest.mark.parametrize(
    "text, steps",
    [
        ("3*(20*ER+180*HIO)+20*ER", None),
        ("ER", (("ER", 1),)),
        ("20*er + 10*raar", (("ER", 20), ("RAAR", 10))),
        ("2*(ER+ER)", (("ER", 4),)),
        ("  5 * HIO ", (("HIO", 5),)),
        ("2*(3*(ER+HIO))", (("ER", 1), ("HIO", 1)) * 6),
    ],
)
def test_parse(text, steps):
    seq = parse_algorithm(text)
    if steps is not None:
        merged = []
        for op, n in steps:
            if merged and merged[-1][0] == op:
                merged[-1] = (op, merged[-1][1] + n)
            else:
                merged.append((op, n))
        assert seq.steps == tuple(merged)
    assert len(seq.operators()) == seq.n_iterations


def test_paper_sequence():
    seq = parse_algorithm("3*(20*ER+180*HIO)+20*ER")
    assert seq.n_iterations == 620
    ops = seq.operators()
    assert ops[:20] == ["ER"] * 20 and ops[20:200] == ["HIO"] * 180 and ops[-20:] == ["ER"] * 20
    assert ops.count("HIO") == 540


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("20*XYZ", "unknown operator"),
        ("3*(20*ER+180*HIO", "expected ')'"),
        ("20*ER+", "unexpected end"),
        ("0*ER", "at least 1"),
        ("20ER", "expected '*'"),
        ("ER**20", "not supported"),
        ("20*ER)", "unexpected ')'"),
        ("20*ER;", "unexpected character"),
        ("1000*(1000*(1000*ER))", "more than"),
    ],
)
def test_bad_strings(text, fragment):
    with pytest.raises(ValueError, match="bad algorithm string") as info:
        parse_algorithm(text)
    assert fragment in str(info.value)


def test_settings_check_the_string():
    with pytest.raises(ValueError, match="unknown operator"):
        PhasingSettings(algorithm="10*EP")
    with pytest.raises(ValueError, match="average_last"):
        PhasingSettings(algorithm="10*ER", average_last=11)
    with pytest.raises(ValueError, match="keep_best"):
        PhasingSettings(n_starts=2, keep_best=3)
