"""Data parallel through MindSpore's own launcher and communication API (DESIGN §5).

    msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --join=True \\
          python -m vglaw.train --preset tiny ...

msrun starts each worker as plain `python` with MS_WORKER_NUM / MS_ROLE / RANK_ID in its
environment (put the venv's bin first on PATH). `init_distributed` then calls
`mindspore.communication.init()` (mccl on CPU, nccl on GPU, hccl on Ascend) and sets
DATA_PARALLEL with gradients_mean; the train step averages gradients with
`nn.DistributedGradReducer`. The seed's `mpirun -n N python src/train.py ...` launch (OpenMPI)
is for GPU/Ascend builds; on CPU `mpirun` fails here, use msrun.

Several machines: the same msrun line on each, with the total --worker_num, that node's
--local_worker_num and --node_rank, and --master_addr = node 0 (which runs the scheduler); rank =
node_rank * local_worker_num + local rank, so nothing here changes (README "More than one machine";
tests/train/test_multinode.py checks two nodes make the updates of one).
"""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = ["launched_by_msrun", "is_msrun_scheduler", "init_distributed", "barrier", "all_reduce_sum"]

log = logging.getLogger("vglaw")


def launched_by_msrun() -> bool:
    """True inside an msrun worker (scheduler env vars present, more than one worker)."""
    return os.environ.get("MS_ROLE") == "MS_WORKER" and int(os.environ.get("MS_WORKER_NUM", "1")) > 1


def is_msrun_scheduler() -> bool:
    """msrun also runs the script as the cluster's scheduler process (MS_ROLE=MS_SCHED)."""
    return os.environ.get("MS_ROLE") == "MS_SCHED"


def init_distributed() -> tuple[int, int]:
    """Initialise communication when launched by msrun; returns (rank, world). (0, 1) alone.

    In msrun's scheduler process `init()` serves the cluster until the workers are done;
    it returns (-1, world) there and the caller must not train.
    """
    if is_msrun_scheduler():
        from mindspore.communication import init
        init()
        return -1, int(os.environ.get("MS_WORKER_NUM", "1"))
    if not launched_by_msrun():
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init
    init()
    rank, world = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=world)
    log.info("data parallel: rank %d of %d", rank, world)
    return rank, world


def all_reduce_sum(values) -> np.ndarray:
    """Sum a small float vector over ranks (identity when alone)."""
    import mindspore as ms
    from mindspore import ops
    x = ms.Tensor(np.asarray(values, dtype=np.float32).reshape(-1))
    if not launched_by_msrun():
        return x.asnumpy()
    return ops.AllReduce()(x).asnumpy()


def barrier() -> None:
    """Wait for every rank (ops.Barrier has no CPU kernel in 2.10: a 1-element AllReduce does)."""
    if launched_by_msrun():
        all_reduce_sum([1.0])
