"""Default QGIS styles for exported layers, and the GeoPackage ``layer_styles`` table QGIS reads on load.

* ``detections``: a yellow outline (0.6 mm) over a faint translucent fill, labelled with ``phrase``
  (white text with a dark halo, at the polygon's centre).
* ``tiles``: thin grey outlines; tiles that were skipped (all nodata) dashed red. The rule reads the
  boolean ``skipped`` field.

Other polygon layers (the change layers of ``rsvg change``) reuse the detections' style with their own
:class:`PolygonLook`: outline colour and width, fill opacity and QGIS fill style, labels on or off.

QML is QGIS's native style format (what QGIS writes with "Save Style"); an SLD 1.1 equivalent is stored
next to it for other clients. QGIS uses the row of ``layer_styles`` whose ``useAsDefault`` is true when
a GeoPackage layer is added.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from rsvg_desktop.core.answers import utc_now_iso

__all__ = [
    "DETECTIONS_LOOK",
    "PolygonLook",
    "detections_qml",
    "detections_sld",
    "tiles_qml",
    "tiles_sld",
    "write_layer_styles",
]

log = logging.getLogger(__name__)

DETECTION_COLOR = (255, 221, 0)
TILE_COLOR = (128, 128, 128)
SKIPPED_COLOR = (220, 30, 30)
_QGIS_VERSION = "3.34.0-Prizren"


@dataclass(frozen=True, slots=True)
class PolygonLook:
    """How a polygon layer is drawn: outline ``color`` (RGB) and width, fill of that colour at
    ``fill_opacity`` (0–1) in QGIS's SimpleFill ``fill_style`` (``solid``, ``no``, ``b_diagonal``…; SLD
    draws any style but ``no`` as a plain fill) and labels by the label field when ``labels``."""

    color: tuple[int, int, int] = DETECTION_COLOR
    fill_opacity: float = 0.15
    fill_style: str = "solid"
    width_mm: float = 0.6
    outline_style: str = "solid"
    labels: bool = True


#: The detections layer's look: a yellow outline over a faint translucent fill, labelled.
DETECTIONS_LOOK = PolygonLook()


def _opt(name: str, value: str) -> str:
    return f'<Option name="{name}" type="QString" value={quoteattr(value)}/>'


def _fill_symbol(
    name: str, *, fill: str, fill_style: str, outline: str, outline_style: str, width_mm: float
) -> str:
    options = "".join(
        [
            _opt("border_width_map_unit_scale", "3x:0,0,0,0,0,0"),
            _opt("color", fill),
            _opt("joinstyle", "miter"),
            _opt("offset", "0,0"),
            _opt("offset_map_unit_scale", "3x:0,0,0,0,0,0"),
            _opt("offset_unit", "MM"),
            _opt("outline_color", outline),
            _opt("outline_style", outline_style),
            _opt("outline_width", f"{width_mm:g}"),
            _opt("outline_width_unit", "MM"),
            _opt("style", fill_style),
        ]
    )
    return (
        f'<symbol type="fill" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">'
        '<layer class="SimpleFill" enabled="1" pass="0" locked="0">'
        f'<Option type="Map">{options}</Option>'
        "</layer></symbol>"
    )


def _rgba(rgb: tuple[int, int, int], alpha: int) -> str:
    return f"{rgb[0]},{rgb[1]},{rgb[2]},{alpha}"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


_HEAD = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def _aliases(aliases: Mapping[str, str]) -> str:
    items = "".join(f"<alias field={quoteattr(f)} name={quoteattr(a)}/>" for f, a in aliases.items())
    return f"<aliases>{items}</aliases>" if items else ""


def _qml_labels(label_field: str) -> str:
    """QGIS simple labelling by ``label_field``: bold white text with a dark halo, inside the polygon."""
    return (
        '<labeling type="simple"><settings calloutType="simple">'
        f'<text-style fieldName={quoteattr(label_field)} isExpression="0" fontFamily="Sans Serif"'
        ' fontSize="9" fontSizeUnit="Point" fontWeight="75" namedStyle="Bold" textColor="255,255,255,255"'
        ' textOpacity="1" fontItalic="0" fontUnderline="0" fontStrikeout="0" blendMode="0"'
        ' allowHtml="0" multilineHeight="1">'
        '<text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" bufferColor="0,0,0,255"'
        ' bufferOpacity="0.8" bufferNoFill="1" bufferJoinStyle="128" bufferBlendMode="0"/>'
        "</text-style>"
        '<text-format wrapChar="" multilineAlign="3" autoWrapLength="0" plussign="0"'
        ' formatNumbers="0" decimals="3" reverseDirectionSymbol="0" addDirectionSymbol="0"'
        ' placeDirectionSymbol="0"/>'
        '<placement placement="1" offsetType="0" dist="0" distUnits="MM" quadOffset="4"'
        ' centroidWhole="0" centroidInside="1" fitInPolygonOnly="0" priority="5"'
        ' overlapHandling="PreventOverlap"/>'
        '<rendering drawLabels="1" obstacle="1" obstacleType="1" scaleVisibility="0" fontMinPixelSize="3"'
        ' fontMaxPixelSize="10000" fontLimitPixelSize="0" upsidedownLabels="0" labelPerPart="0"'
        ' mergeLines="0" displayAll="0" limitNumLabels="0" maxNumLabels="2000" zIndex="0"/>'
        "</settings></labeling>"
    )


def detections_qml(
    label_field: str = "phrase",
    aliases: Mapping[str, str] | None = None,
    look: PolygonLook = DETECTIONS_LOOK,
) -> str:
    """QML for the detections layer (or another polygon layer drawn with ``look``): outlined,
    translucent fill, labelled by ``label_field`` (unless ``look.labels`` is false); ``aliases``
    (field → the name QGIS shows for it) are added with the ``Fields`` style category."""
    symbol = _fill_symbol(
        "0",
        fill=_rgba(look.color, round(look.fill_opacity * 255)),
        fill_style=look.fill_style,
        outline=_rgba(look.color, 255),
        outline_style=look.outline_style,
        width_mm=look.width_mm,
    )
    categories = "Symbology|Labeling|Fields" if aliases else "Symbology|Labeling"
    return (
        _HEAD + f'<qgis version="{_QGIS_VERSION}" styleCategories="{categories}"'
        f' labelsEnabled="{int(look.labels)}">'
        '<renderer-v2 type="singleSymbol" forceraster="0" symbollevels="0" enableorderby="0"'
        ' referencescale="-1">'
        f"<symbols>{symbol}</symbols><rotation/><sizescale/></renderer-v2>"
        f"{_qml_labels(label_field) if look.labels else ''}"
        f"{_aliases(aliases or {})}"
        "<layerGeometryType>2</layerGeometryType>"
        "</qgis>\n"
    )


def tiles_qml(skipped_field: str = "skipped") -> str:
    """QML for the tiles layer: thin grey outlines, skipped tiles dashed red (rule on ``skipped_field``)."""
    skipped = _fill_symbol(
        "0",
        fill=_rgba(SKIPPED_COLOR, 0),
        fill_style="no",
        outline=_rgba(SKIPPED_COLOR, 255),
        outline_style="dash",
        width_mm=0.4,
    )
    normal = _fill_symbol(
        "1",
        fill=_rgba(TILE_COLOR, 0),
        fill_style="no",
        outline=_rgba(TILE_COLOR, 200),
        outline_style="solid",
        width_mm=0.2,
    )
    flt = quoteattr(f'"{skipped_field}"')
    return (
        _HEAD + f'<qgis version="{_QGIS_VERSION}" styleCategories="Symbology" labelsEnabled="0">'
        '<renderer-v2 type="RuleRenderer" forceraster="0" symbollevels="0" enableorderby="0"'
        ' referencescale="-1">'
        '<rules key="{rsvg-root}">'
        f'<rule key="{{rsvg-skipped}}" filter={flt} label="skipped (no data)" symbol="0"/>'
        '<rule key="{rsvg-tile}" filter="ELSE" label="tile" symbol="1"/>'
        "</rules>"
        f"<symbols>{skipped}{normal}</symbols></renderer-v2>"
        "<layerGeometryType>2</layerGeometryType>"
        "</qgis>\n"
    )


_SLD_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" xmlns:ogc="http://www.opengis.net/ogc"'
    ' xmlns:se="http://www.opengis.net/se" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1.0"'
    ' xsi:schemaLocation="http://www.opengis.net/sld'
    ' http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd">'
)


def _sld_polygon(fill: str | None, fill_opacity: float, stroke: str, width_px: float, dash: str = "") -> str:
    fill_xml = (
        f'<se:Fill><se:SvgParameter name="fill">{fill}</se:SvgParameter>'
        f'<se:SvgParameter name="fill-opacity">{fill_opacity:g}</se:SvgParameter></se:Fill>'
        if fill
        else ""
    )
    dash_xml = f'<se:SvgParameter name="stroke-dasharray">{dash}</se:SvgParameter>' if dash else ""
    return (
        f"<se:PolygonSymbolizer>{fill_xml}<se:Stroke>"
        f'<se:SvgParameter name="stroke">{stroke}</se:SvgParameter>'
        f'<se:SvgParameter name="stroke-width">{width_px:g}</se:SvgParameter>{dash_xml}'
        "</se:Stroke></se:PolygonSymbolizer>"
    )


def _sld_label(label_field: str) -> str:
    return (
        "<se:TextSymbolizer><se:Label>"
        f"<ogc:PropertyName>{escape(label_field)}</ogc:PropertyName></se:Label>"
        '<se:Font><se:SvgParameter name="font-family">Sans Serif</se:SvgParameter>'
        '<se:SvgParameter name="font-size">12</se:SvgParameter>'
        '<se:SvgParameter name="font-weight">bold</se:SvgParameter></se:Font>'
        '<se:Halo><se:Radius>1.5</se:Radius><se:Fill><se:SvgParameter name="fill">#000000</se:SvgParameter>'
        "</se:Fill></se:Halo>"
        '<se:Fill><se:SvgParameter name="fill">#ffffff</se:SvgParameter></se:Fill>'
        "</se:TextSymbolizer>"
    )


def detections_sld(
    layer: str = "detections", label_field: str = "phrase", look: PolygonLook = DETECTIONS_LOOK
) -> str:
    """SLD 1.1 equivalent of :func:`detections_qml`."""
    name = escape(layer)
    fill = None if look.fill_style == "no" else _hex(look.color)
    dash = "4 2" if look.outline_style == "dash" else ""
    return (
        _SLD_HEAD + f"<NamedLayer><se:Name>{name}</se:Name><UserStyle><se:Name>{name}</se:Name>"
        "<se:FeatureTypeStyle><se:Rule><se:Name>detection</se:Name>"
        + _sld_polygon(fill, look.fill_opacity, _hex(look.color), look.width_mm / 0.3, dash)
        + (_sld_label(label_field) if look.labels else "")
        + "</se:Rule></se:FeatureTypeStyle></UserStyle></NamedLayer>"
        "</StyledLayerDescriptor>\n"
    )


def tiles_sld(layer: str = "tiles", skipped_field: str = "skipped") -> str:
    """SLD 1.1 equivalent of :func:`tiles_qml`."""
    name, fld = escape(layer), escape(skipped_field)
    is_skipped = (
        f"<ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>{fld}</ogc:PropertyName>"
        "<ogc:Literal>1</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"
    )
    not_skipped = (
        f"<ogc:Filter><ogc:PropertyIsNotEqualTo><ogc:PropertyName>{fld}</ogc:PropertyName>"
        "<ogc:Literal>1</ogc:Literal></ogc:PropertyIsNotEqualTo></ogc:Filter>"
    )
    return (
        _SLD_HEAD
        + f"<NamedLayer><se:Name>{name}</se:Name><UserStyle><se:Name>{name}</se:Name><se:FeatureTypeStyle>"
        f"<se:Rule><se:Name>skipped</se:Name>{is_skipped}"
        + _sld_polygon(None, 0, _hex(SKIPPED_COLOR), 1.5, "4 2")
        + f"</se:Rule><se:Rule><se:Name>tile</se:Name>{not_skipped}"
        + _sld_polygon(None, 0, _hex(TILE_COLOR), 0.75)
        + "</se:Rule></se:FeatureTypeStyle></UserStyle></NamedLayer></StyledLayerDescriptor>\n"
    )


_CREATE_LAYER_STYLES = """
CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    f_table_catalog TEXT(256),
    f_table_schema TEXT(256),
    f_table_name TEXT(256),
    f_geometry_column TEXT(256),
    styleName TEXT(30),
    styleQML TEXT,
    styleSLD TEXT,
    useAsDefault BOOLEAN,
    description TEXT,
    owner TEXT(30),
    ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)
"""


def write_layer_styles(gpkg: str | Path, styles: dict[str, tuple[str, str, str]]) -> None:
    """Add default styles to a GeoPackage's ``layer_styles`` table (created if missing, and registered
    in ``gpkg_contents`` as an attributes table, as QGIS does).

    ``styles`` maps a table name to ``(style name, QML, SLD)``; the geometry column is read from
    ``gpkg_geometry_columns``. Earlier default styles for the same tables lose their default flag.
    """
    now = utc_now_iso()  # the spec's DATETIME: milliseconds, Z
    con = sqlite3.connect(str(gpkg))
    try:
        with con:
            con.execute(_CREATE_LAYER_STYLES)
            con.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description,"
                " last_change) VALUES ('layer_styles', 'attributes', 'layer_styles',"
                " 'QGIS layer styles', ?)",
                (now,),
            )
            geom_cols = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
            for table, (style_name, qml, sld) in styles.items():
                if table not in geom_cols:
                    log.debug("no geometry table %r in %s: no style written", table, gpkg)
                    continue
                con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (table,))
                con.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name,"
                    " f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, owner,"
                    " ui, update_time) VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '', NULL, ?)",
                    (
                        table,
                        geom_cols[table],
                        style_name,
                        qml,
                        sld,
                        f"rsvg-desktop default style for {table}",
                        now,
                    ),
                )
    finally:
        con.close()
