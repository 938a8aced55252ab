"""Evaluation across 2 CPU processes (gloo): results gathered with every image
once, even when the distributed sampler repeated one to even out the shards;
COCOeval run once, on rank 0, its numbers shared. One spawn for both (starting
the processes is most of the time)."""

import torch.distributed as dist
import torch.multiprocessing as mp

from detector.training.gathering import gather_results, on_rank_zero

SHARDS = {0: [1, 2, 3], 1: [4, 5, 1]}


class Stop(BaseException):
    """What a second Ctrl+C raises (a BaseException, not an Exception)."""  # image 1 repeated on rank 1 (sampler padding)


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        everywhere = gather_results(
            [{"image_id": i, "rank": rank} for i in SHARDS[rank]], list(SHARDS[rank]))
        calls = []
        gathered = gather_results([{"image_id": i} for i in SHARDS[rank]], list(SHARDS[rank]),
                                  everywhere=False)

        def evaluate():
            calls.append(rank)
            return {"bbox": {"AP": 0.25 + len(gathered[1])}}

        metrics = on_rank_zero(evaluate)
        try:
            on_rank_zero(lambda: 1 / 0)
            failed = None
        except (ZeroDivisionError, RuntimeError) as error:
            failed = type(error).__name__, str(error)
        try:  # an interrupt on rank 0 (a BaseException) reaches the others too
            on_rank_zero(lambda: (_ for _ in ()).throw(Stop("second Ctrl+C")))
            stopped = None
        except (Stop, RuntimeError) as error:
            stopped = type(error).__name__, str(error)
        (out_dir / f"rank{rank}.txt").write_text(repr(
            (everywhere, calls, metrics, gathered is None, failed, stopped)))
    finally:
        dist.destroy_process_group()


def test_evaluation_across_processes(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), tmp_path), nprocs=2)
    zero = eval((tmp_path / "rank0.txt").read_text())
    one = eval((tmp_path / "rank1.txt").read_text())
    # every image once, its results from the first process that has it
    results, image_ids = zero[0]
    assert image_ids == [1, 2, 3, 4, 5]
    assert sorted(r["image_id"] for r in results) == [1, 2, 3, 4, 5]
    assert [r["rank"] for r in results if r["image_id"] == 1] == [0]
    assert one[0] == zero[0]
    # COCOeval once, by rank 0, on the 5 images gathered there; every process
    # gets its numbers, and an error in it reaches every process (none waits)
    assert zero[1] == [0] and one[1] == []
    assert zero[2] == one[2] == {"bbox": {"AP": 5.25}}
    assert (zero[3], one[3]) == (False, True)
    assert zero[4][0] == "ZeroDivisionError"  # rank 0 raises its own error
    assert one[4] == ("RuntimeError", "evaluation failed on rank 0: ZeroDivisionError: "
                      "division by zero")
    assert zero[5] == ("Stop", "second Ctrl+C")
    assert one[5] == ("RuntimeError", "evaluation failed on rank 0: Stop: second Ctrl+C")
