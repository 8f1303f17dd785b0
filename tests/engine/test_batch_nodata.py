"""Issue 22: ``--nodata`` in a batch: tiles equal to the value are skipped, the run records it, and
runs without it keep their ids."""

from __future__ import annotations

from dataclasses import replace

import pyogrio
from batch_helpers import BlobGenerator, blob_image, write_geotiff

from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity, run_batch, run_identity
from rsvg_desktop.engine.events import BatchFinished
from rsvg_desktop.engine.inputs import Query

MODEL = ModelIdentity(model="blob-detector", model_id="0123456789abcdef", precision="fp32")


def _config(inputs, out, **kw):
    base = dict(
        inputs=tuple(str(i) for i in inputs), queries=(Query("refer", "car"),), output=str(out),
        tile_size=64, overlap=0, batch_size=4, max_new_tokens=16,
    )  # fmt: skip
    base.update(kw)
    return BatchConfig(**base)


def test_batch_skips_the_collar_and_records_the_nodata(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = blob_image(128, 64, [(90, 30, 10)], seed=1)
    image[:, :, :64] = 0  # the left tile is all collar, with no nodata flag
    write_geotiff(folder / "collar.tif", image, x0=500000.0)

    summaries = {}
    for label, nodata in (("plain", None), ("given", 0.0)):
        cfg = _config([folder], tmp_path / f"{label}.gpkg", nodata=nodata)
        events = list(run_batch(cfg, BlobGenerator(), model=MODEL))
        assert isinstance(events[-1], BatchFinished)
        summaries[label] = events[-1].summary
    assert summaries["plain"].tiles_done == 2
    assert summaries["given"].tiles_done == 1
    runs = pyogrio.read_dataframe(tmp_path / "given.gpkg", layer="run")
    assert runs["nodata"].tolist() == ["0"]
    assert pyogrio.read_dataframe(tmp_path / "plain.gpkg", layer="run")["nodata"].isna().all()


def test_nodata_changes_the_run_id_only_when_given(tmp_path):
    cfg = _config([tmp_path], tmp_path / "o.gpkg")
    q = Query("refer", "car")
    base = run_identity(q, MODEL, cfg)
    assert base.nodata is None
    given = run_identity(q, MODEL, replace(cfg, nodata=0.0))
    assert given.run_id != base.run_id and given.nodata == "0"
    assert run_identity(q, MODEL, replace(cfg, nodata=float("nan"))).nodata == "nan"
