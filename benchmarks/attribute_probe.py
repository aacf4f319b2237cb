"""Does the backbone know what each object is? A linear probe of its tokens, object by object.

    python benchmarks/attribute_probe.py --checkpoint runs/train-shapes-tiny-svd/best.ckpt
    python benchmarks/attribute_probe.py --backbone runs/pretrain/shapes-<fp>/backbone.ckpt
    python benchmarks/attribute_probe.py --random svd          # an untrained tiny model: the floor

For sentences of the train split (`--n_train`) and of val (all), the backbone runs on the image
(with a LAW model, adapted to the sentence, as in grounding); every annotated object of the image
(`instances.json`, the referred one and the others) gets one feature, the mean of the backbone
tokens weighted by how much of each token its mask covers on the canvas. A ridge classifier (one
vs rest, standardised features) is fitted on the train objects and scored on the val objects, for
the object's category (the shape, on the synthetic set) and, where the annotations carry one, its
colour. Chance is the share of the most frequent class. Shape accuracy is also split by object
size (terciles of the object's area on the canvas).

It measures what the tokens carry linearly, not what the model can compute from them: a low score
says the information is not laid out for the heads' dot products (DESIGN §3.4), not that no
network could recover it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                n_classes: int, lam: float = 1.0) -> tuple[float, float, np.ndarray]:
    """(test accuracy, train accuracy, per-test-row correct) of a one-vs-rest ridge classifier
    on standardised features with a bias; targets +-1."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    targets = np.eye(n_classes)[y_train] * 2.0 - 1.0
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)
    ok = np.argmax(b @ w, 1) == y_test
    return float(ok.mean()), float((np.argmax(a @ w, 1) == y_train).mean()), ok


def token_weights(canvas_mask: np.ndarray, grid: int) -> np.ndarray:
    """(S, S) {0,1} object mask on the canvas -> (grid*grid,) share of the object in each token
    (row-major, sums to 1); all zeros when the object is not on the canvas."""
    s = canvas_mask.shape[0]
    cov = canvas_mask.reshape(grid, s // grid, grid, s // grid).mean((1, 3)).ravel()
    total = cov.sum()
    return cov / total if total > 0 else cov


def load_model(args):
    """The model to probe: a grounding checkpoint, a pretrained backbone in a `none` model, or random."""
    import vglaw
    from vglaw.eval.evaluate import load_model_from_checkpoint

    if args.checkpoint:
        return load_model_from_checkpoint(args.checkpoint)
    if args.backbone:
        from vglaw.train.pretrain import load_pretrained_backbone
        model = vglaw.build_model(args.preset, "none")
        load_pretrained_backbone(model, args.backbone)
        return model
    return vglaw.build_model(args.preset, args.random)


def object_rows(model, ds, objects: dict, indices) -> list[dict]:
    """One row per (sentence, annotated object of its image): feature, category, colour, area."""
    from mindspore import Tensor
    from pycocotools import mask as mask_utils

    from vglaw.data.refer import to_rle
    from vglaw.data.tokenizer import load_tokenizer, tokenize
    from vglaw.data.transforms import letterbox_mask, prepare_image

    cfg, tok = model.config, load_tokenizer()
    rows = []
    for i in indices:
        rec = ds.record(int(i))
        image = ds.load_image(int(i))
        x, lb = prepare_image(image, cfg.img_size)
        ids, attn = (Tensor(a) for a in tokenize(tok, [rec["phrase"]], cfg.max_len))
        if model.law_type == "none":
            fmap, _ = model.backbone.features(Tensor(x[None]))
        else:
            gen = model.law(model.text_encoder(ids, attn), attn)
            fmap, _ = model.backbone.features(Tensor(x[None]), gen, model.law.P, model.law.Q)
        tokens = fmap.asnumpy()[0].reshape(fmap.shape[1], -1).T  # (g*g, C)
        h, w = image.shape[:2]
        for a in objects[rec["image_id"]]:
            canvas = letterbox_mask(mask_utils.decode(to_rle(a["segmentation"], h, w)), lb)
            weights = token_weights(canvas, cfg.grid)
            if weights.sum() == 0:
                continue
            rows.append({"feature": weights @ tokens, "category": a["category_id"],
                         "colour": a.get("colour"), "area": float(canvas.sum()), "phrase": rec["phrase"]})
    return rows


def probe_table(train_rows: list[dict], val_rows: list[dict], *, match: bool = True) -> list[dict]:
    """Rows {attribute, objects, classes, val, train, chance} (+ category by size terciles, + with
    `match` the rows of `match_rows`: leave it off for a `none` model, whose tokens never see the
    sentence)."""
    x_tr = np.stack([r["feature"] for r in train_rows])
    x_va = np.stack([r["feature"] for r in val_rows])
    out = []
    attrs = ["category"] + (["colour"] if all(r["colour"] is not None for r in train_rows + val_rows) else [])
    for attr in attrs:
        names = sorted({r[attr] for r in train_rows + val_rows})
        y_tr = np.array([names.index(r[attr]) for r in train_rows])
        y_va = np.array([names.index(r[attr]) for r in val_rows])
        acc, tr_acc, ok = ridge_probe(x_tr, y_tr, x_va, y_va, len(names))
        chance = float(np.bincount(y_va, minlength=len(names)).max() / len(y_va))
        out.append({"attribute": attr, "objects": len(y_va), "classes": len(names), "val": acc,
                    "train": tr_acc, "chance": chance})
        if attr == "category":
            area = np.array([r["area"] for r in val_rows])
            q1, q2 = np.quantile(area, [1 / 3, 2 / 3])
            for name, sel in (("small", area < q1), ("mid", (area >= q1) & (area < q2)), ("large", area >= q2)):
                out.append({"attribute": f"category, {name} objects ({area[sel].min():.0f}-{area[sel].max():.0f} px)",
                            "objects": int(sel.sum()), "classes": len(names), "val": float(ok[sel].mean()),
                            "train": float("nan"), "chance": float("nan")})
    if match:
        out.extend(match_rows(train_rows, val_rows))
    return out


def named(phrase: str, words) -> str | None:
    """The one word of `words` the phrase names, or None (none, or more than one)."""
    found = {w for w in phrase.lower().replace(",", " ").split() if w in words}
    return found.pop() if len(found) == 1 else None


def match_rows(train_rows: list[dict], val_rows: list[dict]) -> list[dict]:
    """Synthetic set only: does the object have the shape / colour the sentence names? Over the
    sentences that name exactly one colour and one shape; a binary probe, chance = majority share.
    With LAW the tokens are adapted to the sentence, so this is what the heads can read."""
    from vglaw.data.synthetic import COLOURS, SHAPES

    def labelled(rows, attr):
        keep = []
        for r in rows:
            colour, shape = named(r["phrase"], COLOURS), named(r["phrase"], SHAPES)
            if colour is None or shape is None or r["colour"] is None:
                continue
            want = colour if attr == "colour" else shape
            have = r["colour"] if attr == "colour" else SHAPES[r["category"] - 1]
            keep.append((r["feature"], int(want == have)))
        return keep

    out = []
    for attr in ("shape", "colour"):
        tr, va = labelled(train_rows, attr), labelled(val_rows, attr)
        if len(tr) < 20 or len(va) < 20:
            continue
        y_va = np.array([y for _, y in va])
        acc, tr_acc, _ = ridge_probe(np.stack([f for f, _ in tr]), np.array([y for _, y in tr]),
                                     np.stack([f for f, _ in va]), y_va, 2)
        out.append({"attribute": f"has the {attr} the sentence names", "objects": len(va), "classes": 2,
                    "val": acc, "train": tr_acc, "chance": float(max(y_va.mean(), 1 - y_va.mean()))})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a grounding run's .ckpt")
    src.add_argument("--backbone", help="a pretrained backbone.ckpt (vglaw.train.pretrain)")
    src.add_argument("--random", metavar="LAW_TYPE", help="an untrained model of this law_type")
    p.add_argument("--preset", default="tiny", help="preset of --backbone / --random")
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--split_by", default="unc")
    p.add_argument("--data_root", default=None)
    p.add_argument("--n_train", type=int, default=600, help="train sentences (their images' objects)")
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_v", "4")
    import mindspore as ms

    from vglaw.data.refer import dataset_paths
    from vglaw.eval.cli import open_split
    from vglaw.utils import paths

    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = load_model(args)
    model.set_train(False)
    root = Path(args.data_root) if args.data_root else paths.default_data_root()
    coco = json.loads(dataset_paths(root, args.dataset, args.split_by)["instances"].read_text())
    objects = defaultdict(list)
    for a in coco["annotations"]:
        objects[a["image_id"]].append(a)
    train = open_split(args.dataset, args.split_by, "train", root)
    val = open_split(args.dataset, args.split_by, "val", root)
    pick = np.random.default_rng(0).permutation(len(train))[:args.n_train]
    table = probe_table(object_rows(model, train, objects, pick), object_rows(model, val, objects, range(len(val))),
                        match=model.law_type != "none")
    what = args.checkpoint or args.backbone or f"random {args.preset} {args.random}"
    print(f"# Linear probe of the backbone tokens per object: {what}")
    print(f"`python benchmarks/attribute_probe.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("| attribute | val objects | classes | val acc | train acc | chance |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['attribute']} | {r['objects']} | {r['classes']} | {r['val']:.3f} | "
              f"{'' if np.isnan(r['train']) else format(r['train'], '.3f')} | "
              f"{'' if np.isnan(r['chance']) else format(r['chance'], '.3f')} |")


if __name__ == "__main__":
    main()
