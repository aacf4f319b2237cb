"""The batch pipeline: shapes, dtypes, determinism, shards, flip consistency."""

import numpy as np
import pytest

from vglaw.data import RefDataset
from vglaw.data.pipeline import COLUMNS, RefBatches, build_dataset, shard_order
from vglaw.data.tokenizer import load_tokenizer, tokenize
from vglaw.data.transforms import Letterbox, flip_phrase


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture
def train_ds(shapes_root):
    return RefDataset(shapes_root.parent / "cache", "shapes", "unc", "train")


def test_tokenizer_known_ids(tok):
    ids, attn = tokenize(tok, ["The red circle", "x"], 8)
    np.testing.assert_array_equal(ids[0], [101, 1996, 2417, 4418, 102, 0, 0, 0])  # bert-base-uncased
    np.testing.assert_array_equal(attn[1], [1, 1, 1, 0, 0, 0, 0, 0])
    assert ids.dtype == np.int32 and attn.dtype == np.int32


def test_mindspore_batches(train_ds, tok):
    ds = build_dataset(train_ds, tok, img_size=64, max_len=16, batch_size=4, train=True)
    assert ds.get_dataset_size() == len(train_ds) // 4
    batch = next(ds.create_tuple_iterator(output_numpy=True, num_epochs=1))
    expected = [((4, 3, 64, 64), np.float32), ((4, 16), np.int32), ((4, 16), np.int32),
                ((4, 4), np.float32), ((4, 64, 64), np.float32), ((4, 6), np.float32),
                ((4,), np.int32)]
    assert [(a.shape, a.dtype) for a in batch] == expected
    assert len(COLUMNS) == 7
    box, mask = batch[3], batch[4]
    assert ((box > 0) & (box <= 1)).all() and set(np.unique(mask)) <= {0.0, 1.0}


def test_order_depends_on_seed_and_epoch(train_ds, tok):
    make = lambda **k: RefBatches(train_ds, tok, img_size=32, max_len=8, batch_size=2, train=True, **k)
    a, b, c = make(seed=0, epoch=0), make(seed=0, epoch=0), make(seed=0, epoch=1)
    np.testing.assert_array_equal(a.order, b.order)
    assert not np.array_equal(a.order, c.order)
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)  # same offsets and flips too


@pytest.mark.parametrize("n, shards", [(10, 3), (9, 3), (5, 1), (2, 4)])
def test_shards_disjoint_and_cover(n, shards):
    parts = [shard_order(n, train=False, num_shards=shards, shard_id=k) for k in range(shards)]
    joined = np.concatenate(parts)
    assert len(joined) == n and sorted(joined.tolist()) == list(range(n))  # disjoint + cover
    tparts = [shard_order(n, train=True, seed=1, num_shards=shards, shard_id=k) for k in range(shards)]
    assert len({len(p) for p in tparts}) == 1  # equal steps on every rank
    assert set(np.concatenate(tparts).tolist()) == set(range(n))
    with pytest.raises(ValueError):
        shard_order(n, train=False, num_shards=shards, shard_id=shards)


def test_eval_shards_through_pipeline(train_ds, tok):
    seen = []
    for k in range(2):
        src = RefBatches(train_ds, tok, img_size=32, max_len=8, batch_size=3, train=False,
                         num_shards=2, shard_id=k)
        seen += [int(i) for b in range(len(src)) for i in src[b][-1]]
    assert sorted(seen) == list(range(len(train_ds)))


def test_flip_keeps_phrase_box_and_letterbox_consistent(train_ds, tok):
    src = RefBatches(train_ds, tok, img_size=64, max_len=16, batch_size=len(train_ds), train=True)
    img, ids, attn, box, mask, lb, index = src[0]
    flips = 0
    for row in range(len(index)):
        rec = train_ds.record(int(index[row]))
        letterbox = Letterbox.from_array(lb[row])
        back = letterbox.box_to_original(box[row])
        x, y, w, h = rec["bbox"]
        unflipped = np.allclose(back, [x, y, w, h], atol=0.05)
        mirrored = np.allclose(back, [rec["width"] - x - w, y, w, h], atol=0.05)
        assert unflipped or mirrored
        phrase = rec["phrase"]
        if mirrored and not unflipped:
            flips += 1
            phrase = flip_phrase(phrase)
        np.testing.assert_array_equal(ids[row], tokenize(tok, [phrase], 16)[0][0])
    assert flips > 0
