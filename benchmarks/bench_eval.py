"""COCO evaluation time, faster-coco-eval's COCOeval_faster against pycocotools'
COCOeval, side by side, on the same ground truth and detections, through
detector.evaluation.evaluate (what every validation runs).

    python benchmarks/bench_eval.py [--images 50] [--size 256 320] [--repeats 5]

Ground truth: the synthetic validation set (six classes, objects of every COCO
size). Detections: that ground truth made into an imperfect detector's (boxes
jittered, masks shifted, a fifth missed, false positives, random scores; see
tests/test_evaluation.py's noisy_results) plus ``--extra`` low-scoring random
boxes per image, as a detector's 100 detections per image would be. Reported:
seconds per evaluation (bbox + segm), median of the repeats after one warm-up,
the ratio, and the largest metric difference between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO

from detector.data.builders.synthetic import make_synthetic_coco
from detector.evaluation import METRICS, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_evaluation import noisy_results  # noqa: E402


def _padding(coco: COCO, per_image: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    extra = []
    for image in coco.dataset["images"]:
        height, width = image["height"], image["width"]
        for _ in range(per_image):
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[int(y):int(y + h) + 1, int(x):int(x + w) + 1] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            extra.append({"image_id": image["id"], "category_id": int(rng.choice(coco.getCatIds())),
                          "bbox": [x, y, w, h], "score": float(rng.uniform(0, 0.3)),
                          "segmentation": rle})
    return extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--extra", type=int, default=90, help="low-score boxes added per image")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, annotations = make_synthetic_coco(tmp, "val", args.images, tuple(args.size), seed=1)
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(annotations))
    results = noisy_results(coco) + _padding(coco, args.extra, seed=2)
    times, metrics = {}, {}
    for backend in ("pycocotools", "faster_coco_eval"):
        metrics[backend] = evaluate(coco, results, backend=backend)  # warm-up
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            evaluate(coco, results, backend=backend)
            runs.append(time.perf_counter() - started)
        times[backend] = statistics.median(runs)
    worst = max(abs(metrics["pycocotools"][t][m] - metrics["faster_coco_eval"][t][m])
                for t in ("bbox", "segm") for m in METRICS)
    print(f"{args.images} images of {args.size[0]}x{args.size[1]}, {len(results)} detections, "
          f"bbox + segm, median of {args.repeats}")
    print("| backend | s per evaluation | speed-up |")
    print("|---|---|---|")
    for backend in ("pycocotools", "faster_coco_eval"):
        print(f"| {backend} | {times[backend]:.3f} | "
              f"{times['pycocotools'] / times[backend]:.2f}x |")
    print(f"largest metric difference: {worst:.2e} (box AP {metrics['pycocotools']['bbox']['AP']:.4f}"
          f", mask AP {metrics['pycocotools']['segm']['AP']:.4f})")


if __name__ == "__main__":
    main()
