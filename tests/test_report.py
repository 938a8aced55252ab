"""rcnn-report: grouping by overrides, mean ± std over seeds,
paired differences to ROI Pooling, the chart; all against hand-computed
numbers from results.json files written here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.visualization.report import find_runs, group, markdown, report

ROOT = Path(__file__).resolve().parents[1]
REPORT = str(Path(sys.executable).parent / "rcnn-report")  # the installed command


def write_run(folder: Path, roi_op: str, seed: int, mask_ap: float, box_ap: float,
              extra: tuple = (), with_overrides: bool = True) -> None:
    """A results.json like train.py's, every metric but AP fixed."""
    run = folder / f"roi_op={roi_op},seed={seed}"
    run.mkdir(parents=True)
    metrics = {t: {"AP": ap, "AP50": 0.5, "AP75": 0.25, "APs": 0.1, "APm": 0.2, "APl": -1.0}
               for t, ap in (("segm", mask_ap), ("bbox", box_ap))}
    overrides = ["experiment=roi_ops_c5", f"roi_op={roi_op}", f"seed={seed}", *extra]
    data = {"metrics": metrics, "checkpoint": None, "seed": seed, "wall_time_s": 60.0}
    if with_overrides:
        data["overrides"] = overrides
    else:  # an older results.json: the overrides are in Hydra's folder beside it
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in overrides))
    (run / "results.json").write_text(json.dumps(data))


@pytest.fixture
def study(tmp_path):
    # align - pool per seed: mask +0.10, +0.20, +0.30 -> +20.0 ± 10.0 points;
    # box +0.05 each -> +5.0 ± 0.0.
    for seed, (pool, align) in enumerate([(0.20, 0.30), (0.10, 0.30), (0.30, 0.60)]):
        write_run(tmp_path, "pool", seed, pool, 0.40, extra=("trainer=cpu",))
        write_run(tmp_path, "align_avg", seed, align, 0.45, extra=("trainer=cpu",),
                  with_overrides=seed != 1)
    return tmp_path


def test_groups_by_what_differs(study):
    variants = group(find_runs([study]))
    assert [v.settings for v in variants] == [{"roi_op": "pool"}, {"roi_op": "align_avg"}]
    assert [sorted(v.seeds) for v in variants] == [[0, 1, 2], [0, 1, 2]]


def test_table_means_stds_and_paired_differences(study):
    text = markdown(group(find_runs([study])))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    # pool mask AP 20, 10, 30 -> 20.0 ± 10.0; align 30, 30, 60 -> 40.0 ± 17.3
    assert "| RoIPool (max) | 0,1,2 | 20.0 ± 10.0 | 50.0 ± 0.0 | 25.0 ± 0.0 | 40.0 ± 0.0" \
        in rows["RoIPool (max)"]
    assert "| 40.0 ± 17.3 |" in text
    # APl is -1 (no such objects): shown as '-', not averaged as -100
    assert rows["RoIPool (max)"].rstrip(" |").endswith("| 10.0 ± 0.0 | 20.0 ± 0.0 | -")
    diff_rows = text.split("Difference to the baseline")[1]
    assert "| RoIAlign (avg) | +20.0 ± 10.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +5.0 ± 0.0 |" \
        in diff_rows
    assert "6 runs; wall time per run 1.0-1.0 min, 0.10 h in all." in text


def test_runs_without_a_whole_wall_time_are_left_out_of_it(study):
    # resumed from a checkpoint that did not count its time: results.json's is None
    path = study / "roi_op=pool,seed=0" / "results.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "wall_time_s": None, "resumed_at_step": 3}))
    text = markdown(group(find_runs([study])))
    assert ("6 runs; wall time per run 1.0-1.0 min, 0.08 h in all; runs without a whole-run "
            "wall time left out: 1.") in text


def test_unpaired_difference_is_difference_of_means(tmp_path):
    write_run(tmp_path, "pool", 0, 0.2, 0.4)
    write_run(tmp_path, "pool", 1, 0.4, 0.4)
    write_run(tmp_path, "align_avg", 7, 0.5, 0.4)
    text = markdown(group(find_runs([tmp_path])))
    assert "| RoIAlign (avg) | +20.0 | +0.0 |" in text  # 50 - mean(20, 40); no std claimed


def test_baseline_within_each_object_size(tmp_path):
    for size, gain in (("small", 0.2), ("large", 0.05)):
        for seed in range(2):
            write_run(tmp_path / size, "pool", seed, 0.3, 0.3, extra=(f"data.object_size={size}",))
            write_run(tmp_path / size, "align_avg", seed, 0.3 + gain, 0.3,
                      extra=(f"data.object_size={size}",))
    text = markdown(group(find_runs([tmp_path])))
    diffs = text.split("Difference to the baseline")[1]
    assert "| large objects, RoIAlign (avg) | +5.0 ± 0.0 |" in diffs
    assert "| small objects, RoIAlign (avg) | +20.0 ± 0.0 |" in diffs


def test_report_writes_markdown_and_chart(study, tmp_path):
    out = tmp_path / "report"
    report([study], out)
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert text.startswith("# roi_ops_c5\n") and "![roi_ops_c5](report.png)" in text


def test_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        find_runs([tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_runs([tmp_path])
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="results.json: not a results.json"):
        find_runs([tmp_path])


def test_command_line(study):
    done = subprocess.run([REPORT, str(study)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| RoIAlign (avg) | +20.0 ± 10.0 |" in done.stdout
    bad = subprocess.run([REPORT, str(study / "nope")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope: no such folder" in bad.stderr
    bad = subprocess.run([REPORT, str(study), "--baseline",
                          "pool"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--baseline 'pool': expected KEY=VALUE" in bad.stderr


def test_update_puts_the_table_between_the_markers(study, tmp_path):
    doc = tmp_path / "docs" / "ablation.md"
    doc.parent.mkdir()
    doc.write_text("intro\n<!-- report: roi_ops_c5 -->\nold table\n<!-- end report -->\noutro\n")
    from detector.cli.report import main
    assert main([str(study), "-o", str(tmp_path / "docs" / "c5"), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n<!-- report: roi_ops_c5 -->\n| variant |")
    assert "old table" not in text and text.endswith("<!-- end report -->\noutro\n")
    assert "![roi_ops_c5](c5/report.png)" in text
    doc.write_text("no markers")
    with pytest.raises(SystemExit):
        main([str(study), "-o", str(tmp_path / "docs" / "c5"), "--update", str(doc)])


def test_difference_pairs_the_seeds_both_have(tmp_path):
    for seed, ap in enumerate([0.2, 0.4, 0.9]):
        write_run(tmp_path, "pool", seed, ap, 0.4)
    write_run(tmp_path, "align_avg", 0, 0.3, 0.4)  # +10 over seed 0
    write_run(tmp_path, "align_avg", 1, 0.7, 0.4)  # +30 over seed 1; pool's seed 2 unpaired
    text = markdown(group(find_runs([tmp_path])))
    assert "| RoIAlign (avg) | +20.0 ± 14.1 |" in text  # mean(10, 30), std sqrt(200)


def test_output_keeps_the_runs_so_the_report_can_be_made_again(study, tmp_path):
    out = tmp_path / "docs" / "c5"
    first = report([study], out)
    copies = sorted((out / "runs").rglob("results.json"))
    assert len(copies) == 6
    # seed 1 of align_avg kept its overrides only in .hydra/: the copy carries them itself
    copy = json.loads((out / "runs" / study.name / "roi_op=align_avg,seed=1" / "results.json")
                      .read_text())
    assert copy["overrides"] == ["experiment=roi_ops_c5", "roi_op=align_avg", "seed=1",
                                 "trainer=cpu"]
    # the original runs gone, the copies give the same table; reporting into the same
    # folder again copies nothing more
    again = report([out / "runs"], out)
    assert again == first
    assert len(list((out / "runs").rglob("results.json"))) == 6


def test_the_same_run_twice_counts_once(study, tmp_path):
    out = tmp_path / "docs" / "c5"
    first = report([study], out)
    assert report([study, out / "runs"], tmp_path / "elsewhere") == first


def test_two_results_for_one_variant_and_seed_are_an_error(study, tmp_path):
    write_run(tmp_path / "rerun", "pool", 0, 0.9, 0.4, extra=("trainer=cpu",))
    expected = r"two different results for RoIPool \(max\), trainer=cpu, seed 0"
    with pytest.raises(ValueError, match=expected):
        find_runs([study, tmp_path / "rerun"])
