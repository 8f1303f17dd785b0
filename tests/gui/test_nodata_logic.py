"""The nodata field's rules without a window: parsing, writing back, the settings key, the run config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.nodata import SETTINGS_GROUP, nodata_key, nodata_text, parse_nodata
from rsvg_desktop.gui.logic.runplan import QueryRequest, build_run_config


@pytest.mark.parametrize(
    ("text", "value"),
    [("", None), ("  ", None), ("0", 0.0), (" -9999 ", -9999.0), ("0.5", 0.5), ("1e3", 1000.0)],
)
def test_parse_nodata_values(text: str, value: float | None) -> None:
    assert parse_nodata(text, "uint8") == value


def test_parse_nodata_nan_only_for_floating_point() -> None:
    value = parse_nodata("nan", "float32")
    assert value is not None and math.isnan(value)
    assert parse_nodata("NaN") is not None  # the data type unknown: accepted
    with pytest.raises(ConfigError, match="floating-point data; this scene holds uint8"):
        parse_nodata("nan", "uint8")


@pytest.mark.parametrize("text", ["zero", "0,5", "1 2", "inf", "-inf", "0x10"])
def test_parse_nodata_refuses_what_is_not_a_value(text: str) -> None:
    with pytest.raises(ConfigError, match="Nodata value"):
        parse_nodata(text, "uint8")


@pytest.mark.parametrize(
    ("value", "text"), [(None, ""), (0.0, "0"), (-9999.0, "-9999"), (0.5, "0.5"), (math.nan, "nan")]
)
def test_nodata_text_round_trips(value: float | None, text: str) -> None:
    assert nodata_text(value) == text
    back = parse_nodata(text, "float32")
    assert nodata_text(back) == text


def test_nodata_key_is_the_absolute_path_in_one_settings_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    key = nodata_key("scene.tif")
    assert key == nodata_key(str(tmp_path / "scene.tif"))
    group, name = key.split("/")
    assert group == SETTINGS_GROUP and "\\" not in name
    assert "scene.tif" in name and nodata_key("other.tif") != key
    assert nodata_key("https://example.org/a.tif").startswith(f"{SETTINGS_GROUP}/https")


def test_build_run_config_carries_nodata() -> None:
    tiles = [Tile(0, 0, 0, 0, 504, 504, 504)]
    kw = dict(scene="s.tif", scene_size=(504, 504), tiles=tiles, output="o.gpkg", tile_size=504, overlap=0)
    request = QueryRequest(task="refer", query="cars")
    assert build_run_config(request, **kw).nodata is None
    assert build_run_config(request, nodata=0.0, **kw).nodata == 0.0
