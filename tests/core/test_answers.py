"""Answer log: round trip, crash tolerance, strict errors, forward compatibility."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rsvg_desktop.core.answers import (
    SCHEMA_VERSION,
    AnswerLogWriter,
    AnswerRecord,
    read_answer_log,
    utc_now_iso,
)
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import AnswerLogError, AnswerLogNotFoundError


def make(i: int = 0, **kw) -> AnswerRecord:
    base = dict(
        scene="/data/scene.tif",
        col_off=504 * i,
        row_off=0,
        width=504,
        height=504,
        task="refer",
        query="[refer] Give me the location of <p> airplanes </p>",
        answer="{<10><70><26><82>|<90>}",
        time="2025-01-01T00:00:00.000Z",
    )
    base.update(kw)
    return AnswerRecord(**base)


def full_record() -> AnswerRecord:
    return make(
        tile_row=1,
        tile_col=2,
        tile_size=504,
        run_id="run-1",
        model="geochat-7B",
        precision="nf4",
        device="NVIDIA H100",
        angle_convention="ccw",
        crs='PROJCS["WGS 84 / UTM zone 40N"]',
        transform=(0.5, 0.0, 300000.0, 0.0, -0.5, 2700000.0),
        pixel_mode=False,
        input_tokens=1350,
        output_tokens=24,
        seconds=1.25,
    )


def write_all(path: Path, records) -> None:
    with AnswerLogWriter(path) as w:
        for r in records:
            w.write(r)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    records = [full_record(), make(1), make(2, transform=[1, 0, 0, 0, -1, 0], pixel_mode=True, seconds=3)]
    write_all(path, records)
    got = list(read_answer_log(path))
    assert got == records
    assert got[2].transform == (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    assert isinstance(got[2].seconds, float)
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""
    obj = json.loads(lines[0])
    assert obj["schema"] == SCHEMA_VERSION == 1
    assert list(obj)[:8] == ["scene", "col_off", "row_off", "width", "height", "task", "query", "answer"]


def test_writer_appends_and_fills_time(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_all(path, [make(0)])
    with AnswerLogWriter(path, fsync=True) as w:
        written = w.write(make(1, time=None))
        assert w.count == 1
    assert written.time is not None and written.time.endswith("Z")
    got = list(read_answer_log(path))
    assert [r.col_off for r in got] == [0, 504]
    assert got[1].time == written.time
    assert w.closed
    with pytest.raises(AnswerLogError, match="closed"):
        w.write(make(2))


def test_each_line_is_flushed_before_close(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    w = AnswerLogWriter(path)
    w.write(make(0))
    w.write(make(1))
    # Another reader sees both complete lines while the writer is still open.
    assert [r.col_off for r in read_answer_log(path)] == [0, 504]
    w.close()
    w.close()  # idempotent


def test_unicode_queries(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    tricky = 'Où sont les avions ✈️? 飞机在哪里\u2028next\x85line "quoted" \\ back\nnewline'
    rec = make(query=tricky, answer="<p>飞机</p> {<1><2><3><4>}", scene="/données/scène.tif")
    surrogate = make(1, answer="bad \ud800 surrogate")
    write_all(path, [rec, surrogate])
    assert path.read_bytes().count(b"\n") == 2
    assert list(read_answer_log(path)) == [rec, surrogate]
    assert "飞机在哪里".encode() in path.read_bytes()  # readable UTF-8, not \u escapes


def test_truncated_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.jsonl"
    write_all(path, [make(0), make(1), make(2)])
    data = path.read_bytes()
    path.write_bytes(data[:-30])  # killed mid-write of the third line
    with caplog.at_level(logging.WARNING, logger="rsvg_desktop.core.answers"):
        got = list(read_answer_log(path))
    assert [r.col_off for r in got] == [0, 504]
    assert "t.jsonl:3" in caplog.text and "cut-off" in caplog.text


def test_truncated_inside_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_all(path, [make(0), make(1, answer="飞机")])
    data = path.read_bytes()
    cut = data.index("飞".encode()) + 1
    path.write_bytes(data[:cut])
    assert [r.col_off for r in read_answer_log(path)] == [0]


def test_last_line_without_newline_but_complete_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_all(path, [make(0), make(1)])
    path.write_bytes(path.read_bytes()[:-1])
    assert [r.col_off for r in read_answer_log(path)] == [0, 504]


def test_writer_repairs_a_cut_off_log_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_all(path, [make(0), make(1)])
    path.write_bytes(path.read_bytes()[:-20])
    write_all(path, [make(2)])
    assert [r.col_off for r in read_answer_log(path)] == [0, 1008]
    # a last line that only lost its newline is kept
    path.write_bytes(path.read_bytes()[:-1])
    write_all(path, [make(3)])
    assert [r.col_off for r in read_answer_log(path)] == [0, 1008, 1512]


def test_writer_repairs_single_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"scene": "x", "col')
    write_all(path, [make(0)])
    assert path.read_bytes().startswith(b'{"scene": "/data/scene.tif"')
    assert len(list(read_answer_log(path))) == 1


def _lines(path: Path, *lines: str) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _good() -> str:
    return json.dumps(make().to_dict())


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("{not json", "not JSON"),
        ('{"scene": "s"}', "missing fields 'col_off'"),
        (json.dumps({k: v for k, v in make().to_dict().items() if k != "answer"}), "missing field 'answer'"),
        (json.dumps({**make().to_dict(), "col_off": "0"}), "'col_off' must be an integer, got str"),
        (json.dumps({**make().to_dict(), "width": 504.0}), "'width' must be an integer, got float"),
        (json.dumps({**make().to_dict(), "width": 0}), "'width' must be >= 1"),
        (json.dumps({**make().to_dict(), "row_off": True}), "'row_off' must be an integer, got bool"),
        (json.dumps({**make().to_dict(), "query": None}), "'query' must be a string, got null"),
        (json.dumps({**make().to_dict(), "transform": [1, 2, 3]}), "'transform'"),
        (json.dumps({**make().to_dict(), "pixel_mode": "yes"}), "'pixel_mode'"),
        (json.dumps({**make().to_dict(), "seconds": -1}), "'seconds'"),
        ('{"scene": NaN}', "not strict JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('"text"', "expected a JSON object, got a string"),
    ],
)
def test_malformed_middle_line_names_file_and_line(tmp_path: Path, bad: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    _lines(path, _good(), "", bad, _good())
    it = read_answer_log(path)
    assert next(it).col_off == 0
    with pytest.raises(AnswerLogError) as info:
        next(it)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert expected in message


def test_malformed_last_line_with_newline_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    _lines(path, _good(), "{not json")
    with pytest.raises(AnswerLogError, match=r"bad\.jsonl:2: not JSON"):
        list(read_answer_log(path))


def test_not_utf8_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_good().encode() + b"\n\xff\xfe\n" + _good().encode() + b"\n")
    with pytest.raises(AnswerLogError, match=r"bad\.jsonl:2: not UTF-8"):
        list(read_answer_log(path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(AnswerLogNotFoundError, match=r"nope\.jsonl") as info:
        read_answer_log(path)  # raised at the call, not at the first next()
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, AnswerLogError)


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnswerLogError):
        list(read_answer_log(tmp_path))


def test_extra_keys_preserved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.jsonl"
    obj = {**make().to_dict(), "schema": 2, "boxes": [[1, 2, 3, 4, 90]], "extra": {"nested": True}}
    _lines(path, json.dumps(obj))
    with caplog.at_level(logging.WARNING):
        (rec,) = read_answer_log(path)
    assert "newer" in caplog.text
    assert rec.extra == {"boxes": [[1, 2, 3, 4, 90]], "extra": {"nested": True}}
    assert rec.schema == 2
    out = tmp_path / "copy.jsonl"
    write_all(out, [rec])
    assert json.loads(out.read_text(encoding="utf-8")) == obj


def test_extra_cannot_shadow_fields() -> None:
    with pytest.raises(AnswerLogError, match="clash"):
        make(extra={"scene": "other"})


def test_optional_defaults_and_minimal_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    minimal = {
        k: make().to_dict()[k]
        for k in ("scene", "col_off", "row_off", "width", "height", "task", "query", "answer")
    }
    path.write_text("\r\n".join([json.dumps(minimal)] * 2) + "\r\n", encoding="utf-8")
    a, b = read_answer_log(path)
    assert a == b
    assert a.tile_size == 504 and a.schema == 1 and a.pixel_mode is False
    assert a.crs is None and a.transform is None and a.time is None and a.extra == {}
    assert a.tile is None


def test_for_tile_and_tile_property() -> None:
    tile = Tile(row=3, col=4, col_off=1512, row_off=2016, width=504, height=504)
    rec = AnswerRecord.for_tile(Path("/data/s.tif"), tile, "grounding", "q", "a", model="m")
    assert rec.scene == "/data/s.tif" and rec.window == (1512, 2016, 504, 504)
    assert rec.tile == tile
    assert rec.model == "m"


def test_record_is_frozen_and_hashable() -> None:
    rec = make()
    with pytest.raises(AttributeError):
        rec.answer = "x"  # type: ignore[misc]
    assert hash(rec) == hash(make())


def test_utc_now_iso() -> None:
    from datetime import datetime

    now = utc_now_iso()
    assert now.endswith("Z")
    assert datetime.fromisoformat(now).utcoffset().total_seconds() == 0
