"""``rsvg bench`` end to end on small fixture datasets with the tiny random-weights model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rsvg_desktop.cli.main import main

TILES = ("04133.png", "train_2956_0001.png")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture()
def bench_data(tmp_path: Path, data_dir: Path) -> Path:
    """GeoChat-Bench files for every task and a DIOR-RSVG folder, on small copies of real tiles."""
    root = tmp_path / "bench"
    images = root / "images"
    images.mkdir(parents=True)
    ids = []
    for name in TILES:
        with Image.open(data_dir / "geochat_demo_tiles" / name) as im:
            im.convert("RGB").resize((64, 64)).save(images / name)
        ids.append(Path(name).stem)
    poly = [[[8, 8], [40, 8], [40, 30], [8, 30]]]
    _write_jsonl(
        root / "referring.jsonl",
        [
            {
                "question_id": f"r{i}",
                "image_id": ids[i],
                "question": "the large plane",
                "ground_truth": poly,
                "type": "ref",
                "dataset": "SIOR",
                "obj_ids": [i],
                "size_group": ["small", "large"][i],
            }
            for i in range(2)
        ],
    )
    _write_jsonl(
        root / "scene" / "UCMerced.jsonl",
        [
            {
                "question_id": f"{c}/{i}",
                "image": TILES[i],
                "text": "Classes: airplane, beach. What is it?",
                "ground_truth": c,
            }
            for i, c in enumerate(("airplane", "beach"))
        ],
    )
    _write_jsonl(
        root / "vqa.jsonl",
        [
            {
                "question_id": "v1",
                "image": TILES[0],
                "text": "Is a road present?",
                "ground_truth": "yes",
                "type": "presence",
            },
            {
                "question_id": "v2",
                "image": TILES[1],
                "text": "How many cars?",
                "ground_truth": "3",
                "type": "count",
            },
        ],
    )
    _write_jsonl(
        root / "region-caption.jsonl",
        [
            {
                "question_id": "c1",
                "image_id": ids[0],
                "question": "{<10><10><40><40>|<0>}",
                "ground_truth": "a plane",
            }
        ],
    )
    return root


def test_run_writes_answers_report_metrics_and_plots(
    bench_data: Path, test_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["-q", "bench", "run", "--data", str(bench_data), "--model", str(test_model_dir),
            "--precisions", "bf16,int8,nf4", "--device", "cpu", "--max-new-tokens", "4", "--batch-size", "2",
            "--limit", "2", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    for prec in ("bf16", "int8", "nf4"):
        for task in ("referring", "scene", "vqa", "region-caption"):
            lines = (out / "answers" / prec / f"{task}.jsonl").read_text().splitlines()
            rec = json.loads(lines[0])
            assert set(rec) >= {"question_id", "image_id", "answer", "ground_truth", "question",
                                "type", "dataset", "obj_ids", "size_group"}  # fmt: skip
            assert rec["file"] in (
                "referring.jsonl",
                "scene/UCMerced.jsonl",
                "vqa.jsonl",
                "region-caption.jsonl",
            )
        sample = json.loads((out / "answers" / prec / "sample.json").read_text())  # what --limit drew
        assert (sample["limit"], sample["seed"]) == (2, 0) and ["vqa.jsonl", "v1"] in sample["questions"]
    data = json.loads((out / "metrics.json").read_text())
    assert set(data) == {"metrics"}
    keys = {(m["label"], m["task"], m["metric"]) for m in data["metrics"]}
    for prec in ("bf16", "int8", "nf4"):
        want = {
            (prec, "referring", "acc@0.5"),
            (prec, "scene/UCMerced", "accuracy"),
            (prec, "vqa/presence", "accuracy"),
            (prec, "vqa/average", "accuracy"),
            (prec, "region-caption", "meteor"),
        }
        assert want <= keys
    for m in data["metrics"]:
        assert set(m) == {"label", "task", "metric", "value", "n"}
    excluded = next(m for m in data["metrics"] if m["task"] == "vqa/excluded" and m["label"] == "bf16")
    assert excluded["n"] == 1  # the count question
    report = (out / "report.md").read_text()
    assert "RANDOM WEIGHTS" in report and "| nf4 |" in report
    for png in ("accuracy_vs_memory.png", "accuracy_per_size_group.png", "confusion_UCMerced_bf16.png"):
        assert (out / png).stat().st_size > 1000
    # Resumable: a rerun answers nothing new and keeps one line per question.
    before = (out / "answers" / "nf4" / "vqa.jsonl").read_text()
    (out / "accuracy_vs_memory.png").unlink()
    assert main(args) == 0
    assert (out / "answers" / "nf4" / "vqa.jsonl").read_text() == before
    # ... and, loading no model, still knows each precision's weight memory and that weights are random.
    rerun = (out / "report.md").read_text()
    assert rerun == report
    assert (out / "accuracy_vs_memory.png").stat().st_size > 1000


def test_score_ground_truth_answers_and_dior(tmp_path: Path) -> None:
    dior = tmp_path / "dior"
    (dior / "Annotations").mkdir(parents=True)
    (dior / "Annotations" / "00001.xml").write_text(
        "<annotation><filename>00001.jpg</filename><size><width>800</width><height>800</height></size>"
        "<object><name>airplane</name><bndbox><xmin>80</xmin><ymin>160</ymin><xmax>240</xmax><ymax>320</ymax>"
        "</bndbox><description>the airplane on the left</description></object>"
        "<object><name>ship</name><bndbox><xmin>400</xmin><ymin>400</ymin><xmax>480</xmax><ymax>600</ymax>"
        "</bndbox><description>a ship</description></object></annotation>"
    )
    (dior / "test.txt").write_text("1\n")
    answers = tmp_path / "referring.jsonl"
    # Object 1 (the ship) exactly on the grid: 400/8 = 50 … 600/8 = 75.
    _write_jsonl(answers, [{"question_id": "1", "answer": "{<50><50><60><75>|<0>}"}])
    out = tmp_path / "out"
    assert (
        main(["-q", "bench", "score", "--data", str(dior), "--answers", f"gt={answers}", "-o", str(out)]) == 0
    )
    metrics = {(m["task"], m["metric"]): m for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert metrics[("referring", "acc@0.5")]["value"] == pytest.approx(100.0)
    assert metrics[("referring", "acc@0.5")]["n"] == 1  # the split keeps object 1 only


def test_bad_answer_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    _write_jsonl(
        data / "vqa.jsonl",
        [{"question_id": "v1", "image": "a.png", "text": "q", "ground_truth": "yes", "type": "presence"}],
    )
    bad = tmp_path / "vqa.jsonl"
    bad.write_text('{"question_id": "v1", "answer": "yes"}\n{"question_id": "v2"}\n')
    code = main(["bench", "score", "--data", str(data), "--answers", f"x={bad}", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"rsvg: error: {bad}:2: missing field 'answer'"]


def test_speed_on_the_tiny_model(test_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed"
    args = ["-q", "bench", "speed", "--model", str(test_model_dir), "--precisions", "bf16,nf4,fp32",
            "--device", "cpu", "--batch-sizes", "2", "--new-tokens", "2", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    got = {(m["label"], m["task"], m["metric"]): m["value"] for m in metrics}
    for prec in ("bf16", "nf4", "fp32"):
        assert got[(prec, "speed", "load_s")] > 0
        assert got[(prec, "speed", "tiles_per_s@2")] > 0
        assert got[(prec, "memory", "peak_gib")] > got[(prec, "memory", "weights_gib")] > 0
        # On the CPU the private part of the peak (no memory-mapped checkpoint pages) is given beside it.
        assert got[(prec, "memory", "peak_gib")] >= got[(prec, "memory", "peak_private_gib")] > 0
    # 4-bit weights of the quantized linears take less room than full-precision ones. On the CPU nf4 keeps
    # its unquantized parts (vision tower, embeddings, lm_head) in fp32, so compare with fp32, where only
    # the quantized linears differ (against bf16 the tiny model's fp32 parts outweigh the 4-bit savings).
    weights = {prec: got[(prec, "memory", "weights_gib")] for prec in ("bf16", "nf4", "fp32")}
    assert weights["nf4"] < weights["fp32"] and weights["bf16"] < weights["fp32"]
    assert (out / "tiles_per_second.png").stat().st_size > 1000
    assert "RANDOM WEIGHTS" in (out / "report.md").read_text()


def test_speed_keeps_going_past_a_precision_it_cannot_measure_and_resumes(
    test_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speed"
    args = ["bench", "speed", "--model", str(test_model_dir), "--precisions", "fp8,bf16",
            "--device", "cpu", "--batch-sizes", "1", "--new-tokens", "2", "-o", str(out)]  # fmt: skip
    assert main(args) == 3  # fp8 needs a recent GPU: bf16 is still measured, the exit code says not all were
    captured = capsys.readouterr()
    assert "not measured: fp8" in captured.err
    report = (out / "report.md").read_text()
    assert "| fp8 | cpu | not measured: precision fp8 needs a CUDA GPU" in report
    labels = {m["label"] for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert labels == {"bf16"}  # no made-up numbers for fp8
    first = [json.loads(line) for line in (out / "speed_rows.jsonl").read_text().splitlines()]
    assert [r["row"]["label"] for r in first] == ["fp8", "bf16"]

    # The same command again measures only what is missing: bf16 comes from the rows file.
    assert main(args) == 3
    assert "bf16: measured earlier" in capsys.readouterr().out
    again = [json.loads(line) for line in (out / "speed_rows.jsonl").read_text().splitlines()]
    assert [r["row"]["label"] for r in again] == ["fp8", "bf16", "fp8"]
    assert "taken from an earlier run in this folder" in (out / "report.md").read_text()
    # Other settings measure anew.
    assert main([*args[:-4], "--new-tokens", "3", "-o", str(out)]) == 3
    assert "measuring bf16" in capsys.readouterr().out


def test_a_killed_measuring_process_becomes_a_row_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    from rsvg_desktop.engine.bench import speed

    class DyingPool:
        def __init__(self, *a: object, **k: object) -> None:
            pass

        def __enter__(self) -> DyingPool:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def submit(self, *a: object, **k: object) -> None:
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", DyingPool)
    rows, report = speed.run_speed(["bf16"], tmp_path, model_dir=tmp_path, device="cpu", batch_sizes=(1,))
    assert rows[0].error.startswith("the measuring process died (killed by the system, most likely for lack")
    assert "| bf16 | cpu | not measured: the measuring process died" in report.read_text()


def test_speed_needs_a_model_or_a_shape(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "speed", "--precisions", "bf16", "-o", str(tmp_path)])
    assert "one of the arguments --model --shape-of is required" in capsys.readouterr().err


def test_agreement_metrics_on_hand_made_answer_logs(tmp_path: Path) -> None:
    from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
    from rsvg_desktop.engine.bench.agree import compare_answer_logs

    def write(path: Path, answers: list[str]) -> Path:
        with AnswerLogWriter(path) as w:
            for k, answer in enumerate(answers):
                w.write(
                    AnswerRecord("scene.tif", 100 * k, 0, 100, 100, "refer", "cars", answer, pixel_mode=True)
                )
        return path

    ref = write(tmp_path / "ref.jsonl", ["{<0><0><50><50>|<0>}{<60><60><80><80>|<0>}", "nothing"])
    # Tile 0: one box, half the first reference box (IoU 0.5); the second reference box unmatched.
    # Tile 1: the same answer.
    other = write(tmp_path / "other.jsonl", ["{<0><0><50><25>|<0>}", "nothing"])
    metrics, layers, _ = compare_answer_logs("bf16", [ref], {"bf16": [ref], "nf4": [other]}, "refer")
    got = {m.metric: (m.value, m.n) for m in metrics}
    assert got["tiles"] == (2.0, 2)
    assert got["count_diff_mean"] == (0.5, 2)
    assert got["matched_iou_mean"][0] == pytest.approx(50.0)
    assert got["matched_iou_mean"][1] == 1
    assert got["unmatched_reference"][0] == 1 and got["unmatched_other"][0] == 0
    assert got["identical"][0] == pytest.approx(50.0)
    assert [row["kind"] for row in layers["disagreements"]] == ["only in bf16"]
    assert len(layers["bf16"]) == 2 and len(layers["nf4"]) == 1


def test_agreement_of_a_task_without_boxes_compares_answers_per_tile(tmp_path: Path) -> None:
    from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
    from rsvg_desktop.engine.bench.agree import compare_answer_logs

    def write(path: Path, answers: list[str]) -> Path:
        with AnswerLogWriter(path) as w:
            for k, answer in enumerate(answers):
                w.write(AnswerRecord("s.tif", 100 * k, 0, 100, 50, "classify", "", answer, pixel_mode=True))
        return path

    ref = write(tmp_path / "ref.jsonl", ["forest", "water", "urban"])
    other = write(tmp_path / "other.jsonl", ["forest", "urban", "urban"])
    metrics, layers, _ = compare_answer_logs("bf16", [ref], {"bf16": [ref], "int8": [other]}, "classify")
    got = {m.metric: (m.value, m.n) for m in metrics}
    # No box figures for a task without boxes.
    assert set(got) == {"tiles", "tiles_unanswered", "tiles_unanswered_reference", "identical", "rougeL"}
    assert got["identical"] == (pytest.approx(200 / 3), 3)
    assert got["rougeL"] == (pytest.approx(200 / 3), 3)
    assert [r["answer"] for r in layers["int8"]] == ["forest", "urban", "urban"]
    (diff,) = layers["disagreements"]
    assert (diff["reference_answer"], diff["answer"], diff["kind"]) == ("water", "urban", "different answer")
    assert diff["geometry"].bounds == (100.0, 0.0, 200.0, 50.0)  # the second tile's window


def test_agree_on_a_scene(
    test_model_dir: Path,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pyogrio

    out = tmp_path / "agree"
    args = ["-q", "bench", "agree", str(data_dir / "OSBS_029.tif"), "--model", str(test_model_dir),
            "--reference", "bf16", "--precisions", "nf4", "--query", "trees", "--device", "cpu",
            "--tile-size", "256", "--max-new-tokens", "2", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    tiles = next(m for m in metrics if m["metric"] == "tiles")
    assert tiles["label"] == "nf4" and tiles["task"] == "agree/refer" and tiles["value"] == 4
    layers = {name for name, _ in pyogrio.list_layers(out / "agreement.gpkg")}
    assert layers == {"bf16", "nf4", "disagreements"}
    assert "RANDOM WEIGHTS" in (out / "report.md").read_text()
    assert (out / "runs" / "nf4" / "OSBS_029.done.json").is_file()

    # The same command again reuses the finished runs: no model is loaded, the figures are the same.
    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("a finished run was redone")

    monkeypatch.setattr("rsvg_desktop.core.model.loader.load_model", no_load)
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics
    report = (out / "report.md").read_text()
    assert "2 scene run(s) finished earlier in this folder were reused" in report
    assert "RANDOM WEIGHTS" in report
    monkeypatch.undo()

    # A task without boxes: answers compared per tile; the layers are tile footprints with answers.
    classify = [*args[:-2], "--task", "classify", "-o", str(out)]
    assert main(classify) == 2
    assert "task classify needs the class list (--classes a,b,c)" in capsys.readouterr().err
    # Another question into the same folder replaces the earlier comparison only when asked to.
    assert main([*classify[:-2], "--classes", "forest,water", "-o", str(out)]) == 2
    assert "other settings (--task 'refer', now 'classify'" in capsys.readouterr().err
    assert main([*classify[:-2], "--classes", "forest,water", "-o", str(out), "--overwrite"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {m["metric"] for m in metrics} == {
        "tiles",
        "tiles_unanswered",
        "tiles_unanswered_reference",
        "identical",
        "rougeL",
    }
    assert {m["task"] for m in metrics} == {"agree/classify"}
    import geopandas as gpd

    tiles_layer = gpd.read_file(out / "agreement.gpkg", layer="nf4")
    assert len(tiles_layer) == 4 and tiles_layer.crs is not None
    assert tiles_layer.geometry.area.min() > 0


def test_run_names_a_missing_image_before_loading_any_model(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bench_data / "images" / TILES[1]).unlink()
    args = ["bench", "run", "--data", str(bench_data), "--model", str(tmp_path / "no-model"),
            "--tasks", "vqa", "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    where = bench_data / "vqa.jsonl"
    assert err == f"rsvg: error: {where}:2: image '{TILES[1]}' not found in {bench_data / 'images'}"


def test_run_takes_any_precision_with_its_options(
    bench_data: Path, test_model_dir: Path, tmp_path: Path
) -> None:
    """torchao's int4wo with a group size the tiny model's layers divide (the default 128 does not)."""
    out = tmp_path / "out"
    args = ["-q", "bench", "run", "--data", str(bench_data), "--model", str(test_model_dir),
            "--precisions", "int4wo", "--group-size", "32", "--tasks", "scene", "--device", "cpu",
            "--max-new-tokens", "2", "--limit", "1", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    assert (out / "answers" / "int4wo" / "scene.jsonl").read_text().strip()
    keys = {(m["label"], m["metric"]) for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert ("int4wo", "accuracy") in keys
