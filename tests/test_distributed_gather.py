"""Evaluation results gathered across 2 CPU processes (gloo): every image once,
even when the distributed sampler repeated one to even out the shards."""

import torch.distributed as dist
import torch.multiprocessing as mp

from detector.training.module import gather_results

SHARDS = {0: [1, 2, 3], 1: [4, 5, 1]}  # image 1 repeated on rank 1 (sampler padding)


def _worker(rank, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results, image_ids = gather_results(
            [{"image_id": i, "rank": rank} for i in SHARDS[rank]], list(SHARDS[rank]))
        if rank == 0:
            with open(out_file, "w") as f:
                f.write(repr((results, image_ids)))
    finally:
        dist.destroy_process_group()


def test_each_image_counted_once_across_processes(tmp_path):
    out_file = tmp_path / "out.txt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=2)
    results, image_ids = eval(out_file.read_text())
    assert image_ids == [1, 2, 3, 4, 5]
    assert sorted(r["image_id"] for r in results) == [1, 2, 3, 4, 5]
    assert [r["rank"] for r in results if r["image_id"] == 1] == [0]
