"""The MindSpore input pipeline: fixed-shape batches of letterboxed samples, sharded.

`RefBatches` assembles whole batches in NumPy (one Python call per batch rather than per sample,
phrases tokenised once up front; `set_epoch` re-orders it for the next epoch without reading or
tokenising again), and `as_dataset` wraps it in a `GeneratorDataset` (`build_dataset`: both). MindSpore
is imported here only, lazily, so `import vglaw.data` stays light.
"""

from __future__ import annotations

import numpy as np

from vglaw.data.cache import open_rgb
from vglaw.data.refer import decode_rle
from vglaw.data.tokenizer import tokenize
from vglaw.data.transforms import flip_phrase, transform_sample

__all__ = ["COLUMNS", "RefBatches", "as_dataset", "build_dataset", "shard_order"]

COLUMNS = ["image", "input_ids", "attention_mask", "box", "mask", "letterbox", "index"]


def shard_order(n: int, *, train: bool, seed: int = 0, epoch: int = 0, num_shards: int | None = None,
                shard_id: int | None = None) -> np.ndarray:
    """Sample indices of one shard, a deterministic function of (seed, epoch).

    Train: a permutation; with shards it is padded by wrapping around so every shard has the same
    length (data-parallel ranks must run the same number of steps). Eval: 0..n-1 in order and
    shards are disjoint and cover the data exactly.
    """
    if (num_shards is None) != (shard_id is None):
        raise ValueError("give both num_shards and shard_id, or neither")
    order = (np.random.default_rng([seed, epoch]).permutation(n) if train else np.arange(n))
    if num_shards is None:
        return order
    if not (num_shards >= 1 and 0 <= shard_id < num_shards):
        raise ValueError(f"need num_shards >= 1 and 0 <= shard_id < num_shards, got "
                         f"{num_shards}, {shard_id}")
    if train and n % num_shards:
        order = np.concatenate([order, order[:num_shards - n % num_shards]])
    return order[shard_id::num_shards]


class RefBatches:
    """Random-access source of batches (tuples in COLUMNS order) over a RefDataset.

    Each sample's randomness (offset, flip) is drawn from a generator seeded by
    (seed, epoch, sample index), so results do not depend on worker scheduling.
    """

    def __init__(self, ref_ds, tokenizer, *, img_size: int, max_len: int, batch_size: int,
                 train: bool, translate: bool = True, seed: int = 0, epoch: int = 0,
                 num_shards: int | None = None, shard_id: int | None = None,
                 drop_remainder: bool | None = None):
        if batch_size < 1 or img_size < 8 or max_len < 2:
            raise ValueError(f"bad batch_size/img_size/max_len: {batch_size}, {img_size}, {max_len}")
        self.ds, self.img_size, self.batch_size = ref_ds, img_size, batch_size
        self.train, self.translate, self.seed = train, translate, seed
        self.num_shards, self.shard_id = num_shards, shard_id
        self.drop_remainder = train if drop_remainder is None else drop_remainder
        self.set_epoch(epoch)
        self.records = [ref_ds.record(i) for i in range(len(ref_ds))]
        phrases = [r["phrase"] for r in self.records]
        self.ids, self.attn = tokenize(tokenizer, phrases, max_len)
        # flipped phrases tokenised up front too: no tokenizer calls from worker threads
        self.flipped = [flip_phrase(p) for p in phrases] if train else phrases
        self.ids_f, self.attn_f = (tokenize(tokenizer, self.flipped, max_len) if train
                                   else (self.ids, self.attn))

    def set_epoch(self, epoch: int, *, start: int = 0, stop: int | None = None) -> "RefBatches":
        """Serve batches [start, stop) of epoch `epoch`'s order (a resume starts inside an epoch; the
        train loop stops at whole accumulations). Records and tokenised phrases are kept. Returns self."""
        self.epoch = epoch
        self.order = shard_order(len(self.ds), train=self.train, seed=self.seed, epoch=epoch,
                                 num_shards=self.num_shards, shard_id=self.shard_id)
        n = len(self.order)
        whole = n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)
        self.start, self.stop = start, whole if stop is None else min(stop, whole)
        return self

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def sample(self, i: int):
        """Model inputs of dataset sample i (one row of a batch)."""
        rec = self.records[i]
        image = open_rgb(rec["image_path"])  # a PIL image: resized and flipped without NumPy copies
        mask = decode_rle(rec["rle"])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        img, box, mask_c, phrase, lb = transform_sample(
            image, rec["bbox"], mask, rec["phrase"], self.img_size, train=self.train,
            translate=self.translate, rng=rng)
        flipped = self.train and phrase != rec["phrase"]
        ids, attn = (self.ids_f, self.attn_f) if flipped else (self.ids, self.attn)
        # a flip of a phrase without left/right leaves it unchanged: either tokenisation is right
        return img, ids[i], attn[i], box, mask_c, lb.to_array()

    def __getitem__(self, b: int):
        if not 0 <= b < len(self):
            raise IndexError(b)
        b += self.start
        idx = self.order[b * self.batch_size:(b + 1) * self.batch_size]
        rows = [self.sample(int(i)) for i in idx]
        return (np.stack([r[0] for r in rows]),                       # image (B, 3, S, S) f32
                np.stack([r[1] for r in rows]).astype(np.int32),      # input_ids (B, L)
                np.stack([r[2] for r in rows]).astype(np.int32),      # attention_mask (B, L)
                np.stack([r[3] for r in rows]).astype(np.float32),    # box (B, 4) cxcywh canvas-norm
                np.stack([r[4] for r in rows]).astype(np.float32),    # mask (B, S, S) {0, 1}
                np.stack([r[5] for r in rows]).astype(np.float32),    # letterbox (B, 6)
                np.asarray(idx, dtype=np.int32))                      # index (B,) into ref_ds


def build_dataset(ref_ds, tokenizer, *, img_size: int, max_len: int, batch_size: int, train: bool,
                  translate: bool = True, seed: int = 0, epoch: int = 0,
                  num_shards: int | None = None, shard_id: int | None = None,
                  drop_remainder: bool | None = None, num_parallel_workers: int = 1,
                  python_multiprocessing: bool = False):
    """A `mindspore.dataset.GeneratorDataset` of batches with columns COLUMNS (see RefBatches).

    The order is a function of (seed, epoch): build one dataset per epoch for a new shuffle.
    drop_remainder defaults to `train` (fixed shapes for the compiled train step).
    num_parallel_workers: threads that each assemble whole batches (JPEG decode and resize run
    without the GIL); with python_multiprocessing, processes instead (MindSpore forks them and
    returns batches through shared memory). Either way the batches are the same, in order.
    """
    source = RefBatches(ref_ds, tokenizer, img_size=img_size, max_len=max_len,
                        batch_size=batch_size, train=train, translate=translate, seed=seed,
                        epoch=epoch, num_shards=num_shards, shard_id=shard_id,
                        drop_remainder=drop_remainder)
    return as_dataset(source, num_parallel_workers=num_parallel_workers,
                      python_multiprocessing=python_multiprocessing)


def as_dataset(source: RefBatches, *, num_parallel_workers: int = 1, python_multiprocessing: bool = False):
    """A `mindspore.dataset.GeneratorDataset` (columns COLUMNS) over `source` as it stands now
    (its epoch and batch window); the one place the pipeline builds a GeneratorDataset."""
    import mindspore.dataset as msds

    # Batches come pre-assembled; threads (the default) avoid copying the source per worker.
    return msds.GeneratorDataset(source, column_names=COLUMNS, shuffle=False,
                                 num_parallel_workers=num_parallel_workers,
                                 python_multiprocessing=python_multiprocessing)
