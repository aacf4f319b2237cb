"""Pretraining the tiny backbone on the train-split instances (DESIGN §4.2b), as the paper's is.

VG-LAW starts from a ViTDet-B trained for Mask R-CNN on COCO instances; the `tiny` preset has no
such checkpoint, and from random init its backbone never learns to localise in a CPU budget
(issue 8: mask mIoU levels off near 0.54, the box head stays at the mean box). The faithful
analogue: train the tiny ViTDet, with a light throw-away dense head, on the COCO-style instances
(`instances.json`: every object's polygon and category) of the **train-split images** only, with
no expression. The head predicts, at stride 4, every pixel's category (background or one of the
dataset's categories) and the box of the instance it belongs to (FCOS-style distances to the four
sides): a detection/segmentation task, like the paper's, that names nothing a test expression says.

The result is a folder `<runs>/pretrain/<dataset>-<fingerprint>/` with `backbone.ckpt` (backbone
parameters under their model names, its backbone config and data fingerprint in the metadata),
`config.json`, `log.jsonl` and `status.json` (`wall_s`). It is built in a temporary folder and
renamed into place, so it is never half-written; `ensure_pretrained` reuses a finished one with the
same settings and data. Grounding runs load it with `--vit_model shapes_pretrained`
(`load_pretrained_backbone`: strict names, refused when the backbone config differs).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vglaw.config import MODES

__all__ = ["PretrainConfig", "BACKBONE_FIELDS", "PretrainData", "ensure_pretrained", "pretrain_backbone",
           "load_pretrained_backbone", "backbone_config", "PretrainedBackboneError", "CKPT_KIND"]

log = logging.getLogger("vglaw")

CKPT_KIND = "vglaw-pretrained-backbone"
# ModelConfig fields that shape the backbone's parameters or its forward pass: a pretrained
# backbone loads only into a model whose values are equal (law_* only adds cells outside it).
BACKBONE_FIELDS = ("img_size", "patch_size", "vit_dim", "vit_depth", "vit_heads", "vit_mlp_ratio",
                   "window_size", "global_blocks", "pretrain_grid", "vit_ln_eps")
_FORMAT = 1  # bump when the task or the checkpoint layout changes: old folders are then not reused


class PretrainedBackboneError(ValueError):
    """A pretrained-backbone checkpoint does not fit the model (or is not one)."""


@dataclass
class PretrainConfig:
    preset: str = "tiny"          # model preset whose backbone is pretrained
    dataset: str = "shapes"       # instances of this dataset's train-split images
    split_by: str | None = None   # None: the dataset's usual split
    updates: int = 500            # optimiser updates
    batch_size: int = 32
    lr: float = 1e-3              # AdamW peak LR (linear warmup, cosine to 1% at the end)
    warmup: int = 100
    weight_decay: float = 0.05
    translate: bool = True        # random-offset padding, as the grounding recipe
    flip: bool = True             # horizontal flip (categories are flip-invariant)
    box_weight: float = 5.0       # weight of the L1 box-distance loss against the class CE
    head_dim: int = 64            # channels of the throw-away dense head
    seed: int = 0
    model_overrides: dict = dataclasses.field(default_factory=dict)  # backbone fields, e.g. img_size


def backbone_config(model_cfg) -> dict:
    """The backbone-shaping fields of a ModelConfig, JSON-friendly (tuples as lists)."""
    d = dataclasses.asdict(model_cfg)
    return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in BACKBONE_FIELDS}


# ----------------------------------------------------------------------------- data
class PretrainData:
    """Letterboxed train-split images with per-pixel targets, held in memory.

    Reads `instances.json` with pycocotools (polygons or RLE -> binary masks) for the images of
    the split's refs; an image of any other split is never read. Targets at stride 4 of the canvas:
    `cls` (0 background, 1..C category index) and `ltrb` (distances from the pixel to its instance
    box's left, top, right, bottom side, normalised by the canvas side).
    """

    def __init__(self, data_root, dataset: str, split_by: str, cache_dir, img_size: int,
                 split: str = "train"):
        from PIL import Image
        from pycocotools import mask as mask_utils
        from vglaw.data.cache import RefDataset, load_rgb, read_manifest
        from vglaw.data.refer import dataset_paths
        ref_train = RefDataset(cache_dir, dataset, split_by, split)
        self.image_ids = sorted(set(int(i) for i in ref_train.image_ids.tolist()))
        manifest = read_manifest(ref_train.folder) or {}
        paths = dataset_paths(data_root, dataset, split_by)
        coco = json.loads(Path(paths["instances"]).read_text())
        cats = sorted(c["id"] for c in coco["categories"])
        self.categories = {cid: i + 1 for i, cid in enumerate(cats)}
        self.category_names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
        wanted = set(self.image_ids)
        images = {im["id"]: im for im in coco["images"] if im["id"] in wanted}
        missing = wanted - set(images)
        if missing:
            raise ValueError(f"{paths['instances']}: {len(missing)} {split} images of the refs are not "
                             f"in instances.json (e.g. {sorted(missing)[:3]})")
        anns: dict[int, list] = {i: [] for i in self.image_ids}
        for a in coco["annotations"]:
            if a["image_id"] in wanted:
                anns[a["image_id"]].append(a)
        self.img_size = s = img_size
        self.items = []  # (resized image (h, w, 3) uint8, instance map (h, w) int16, cats, boxes)
        for iid in self.image_ids:
            im = images[iid]
            rgb = load_rgb(ref_train.image_dir / im["file_name"])
            h0, w0 = rgb.shape[:2]
            scale = s / max(h0, w0)
            w, h = max(1, min(s, round(w0 * scale))), max(1, min(s, round(h0 * scale)))
            small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
            inst = np.zeros((h, w), np.int16)
            cat_of, boxes = [0], [np.zeros(4, np.float32)]
            for k, a in enumerate(sorted(anns[iid], key=lambda a: -a["area"]), 1):  # small on top
                seg = a["segmentation"]
                rle = (mask_utils.merge(mask_utils.frPyObjects(seg, h0, w0)) if isinstance(seg, list)
                       else seg if isinstance(seg["counts"], (str, bytes))
                       else mask_utils.frPyObjects(seg, h0, w0))
                m = mask_utils.decode(rle) > 0
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)) >= 128
                inst[m] = k
                x, y, bw, bh = a["bbox"]
                boxes.append(np.array([x, y, x + bw, y + bh], np.float32) * scale)
                cat_of.append(self.categories[a["category_id"]])
            self.items.append((small, inst, np.asarray(cat_of, np.int32), np.stack(boxes)))
        self.fingerprint = {"dataset": dataset, "split_by": split_by, "split": split,
                            "images": len(self.image_ids),
                            "image_ids_sha256": hashlib.sha256(
                                json.dumps(self.image_ids).encode()).hexdigest(),
                            "sources": manifest.get("sources", {})}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_classes(self) -> int:
        return len(self.categories) + 1

    def batch(self, idx, rng: np.random.Generator | None, translate: bool, flip: bool):
        """Images (B, 3, S, S) normalised, cls (B, S/4, S/4) int32, ltrb (B, S/4, S/4, 4) float32."""
        from vglaw.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        s, r = self.img_size, 4
        g = s // r
        n = len(idx)
        images = np.zeros((n, 3, s, s), np.float32)
        cls = np.zeros((n, g, g), np.int32)
        ltrb = np.zeros((n, g, g, 4), np.float32)
        centres = (np.arange(g, dtype=np.float32) + 0.5) * r  # stride-4 sample points on the canvas
        for j, i in enumerate(idx):
            small, inst, cat_of, boxes = self.items[int(i)]
            h, w = inst.shape
            boxes = boxes.copy()
            if flip and rng is not None and rng.random() < 0.5:
                small, inst = small[:, ::-1], inst[:, ::-1]
                boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            if translate and rng is not None:
                x0, y0 = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
            else:
                x0, y0 = (s - w) // 2, (s - h) // 2
            images[j, :, y0:y0 + h, x0:x0 + w] = (
                (small.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
            canvas = np.zeros((s, s), np.int16)
            canvas[y0:y0 + h, x0:x0 + w] = inst
            k = canvas[r // 2::r, r // 2::r]  # instance index at each sample point (g, g)
            cls[j] = cat_of[k]
            b = boxes[k] + np.array([x0, y0, x0, y0], np.float32)  # (g, g, 4) canvas xyxy
            px, py = centres[None, :], centres[:, None]
            d = np.stack([px - b[..., 0], py - b[..., 1], b[..., 2] - px, b[..., 3] - py], -1) / s
            ltrb[j] = np.where((k > 0)[..., None], np.clip(d, 0.0, 1.0), 0.0)
        return images, cls, ltrb


# ----------------------------------------------------------------------------- model
def _dense_head(vis_dim: int, hidden: int, n_out: int):
    from mindspore import nn
    from vglaw.models.heads import _ConvT2x2

    class DenseHead(nn.Cell):
        """Throw-away head: ConvT 2x2 s2 -> LN -> GELU -> ConvT 2x2 s2 -> GELU -> per-pixel linear."""

        def __init__(self):
            super().__init__()
            self.up1 = _ConvT2x2(vis_dim, hidden)
            self.norm = nn.LayerNorm((hidden,), epsilon=1e-6)
            self.up2 = _ConvT2x2(hidden, hidden)
            self.act = nn.GELU(approximate=False)
            self.out = nn.Dense(hidden, n_out)

        def construct(self, fmap):
            x = self.act(self.norm(self.up1(fmap.transpose(0, 2, 3, 1))))  # (B, 2g, 2g, hid)
            x = self.act(self.up2(x))  # (B, 4g, 4g, hid)
            return self.out(x)  # (B, 4g, 4g, n_out)

    return DenseHead()


def _build(cfg: PretrainConfig, n_classes: int):
    from mindspore import nn, ops
    from vglaw.config import make_model_config
    from vglaw.models.vit import ViTDet

    mcfg = make_model_config(cfg.preset, **dict(cfg.model_overrides, law_type="none"))
    backbone = ViTDet(mcfg)
    head = _dense_head(mcfg.vit_dim, cfg.head_dim, n_classes + 4)
    box_weight, n_cls = float(cfg.box_weight), n_classes

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def construct(self, images, cls, ltrb):
            out = self.head(self.backbone(images))  # (B, G, G, n_cls + 4)
            logits, dist = out[..., :n_cls], ops.sigmoid(out[..., n_cls:])
            onehot = ops.one_hot(cls, n_cls, ops.ones((), logits.dtype), ops.zeros((), logits.dtype))
            ce = -(onehot * ops.log_softmax(logits, -1)).sum(-1).mean()
            fg = (cls > 0).astype(logits.dtype).expand_dims(-1)  # (B, G, G, 1)
            l1 = (ops.abs(dist - ltrb) * fg).sum() / ops.maximum(fg.sum(), 1.0)
            acc = ((ops.argmax(logits, -1) == cls).astype(logits.dtype)).mean()
            return ce + box_weight * l1, ce, l1, acc

    return mcfg, Net()


# ----------------------------------------------------------------------------- training
def _lr_at(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (0.01 + 0.99 * step / max(cfg.warmup, 1))
    t = (step - cfg.warmup) / max(cfg.updates - cfg.warmup, 1)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def pretrain_backbone(cfg: PretrainConfig, data: PretrainData, out_dir: str | Path, *,
                      use_jit: bool = True, progress: bool = True) -> Path:
    """Train the backbone + dense head on `data`; write `out_dir` (atomically); return it."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops
    from vglaw.models.checkpoint import save_checkpoint
    from vglaw.train.optim import no_weight_decay

    out_dir = Path(out_dir)
    t0 = time.time()
    ms.set_seed(cfg.seed)
    np.random.seed(cfg.seed)
    mcfg, net = _build(cfg, data.n_classes)
    params = net.trainable_params()
    decay = [p for p in params if not no_weight_decay(p.name, p.shape)]
    no_decay = [p for p in params if no_weight_decay(p.name, p.shape)]
    lrs = Tensor(np.array([_lr_at(cfg, i) for i in range(cfg.updates)], np.float32))
    opt = nn.AdamWeightDecay([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             learning_rate=lrs)  # per-update LR table (warmup + cosine)
    grad_fn = ms.value_and_grad(net, None, opt.parameters, has_aux=True)

    def train_step(images, cls, ltrb):
        (loss, ce, l1, acc), grads = grad_fn(images, cls, ltrb)
        grads = ops.clip_by_global_norm(grads, 1.0)
        loss = ops.depend(loss, opt(grads))
        return loss, ce, l1, acc

    step_fn = ms.jit(train_step) if use_jit else train_step
    net.set_train(True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=_mkparent(out_dir)))
    try:
        rows, sums, n = [], np.zeros(4), 0
        order, pos, epoch = None, len(data), -1
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=cfg.updates, desc="pretrain", leave=False, dynamic_ncols=True)
        for step in range(cfg.updates):
            if pos + cfg.batch_size > len(data):
                epoch += 1
                order, pos = np.random.default_rng([cfg.seed, epoch]).permutation(len(data)), 0
            idx = order[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            rng = np.random.default_rng([cfg.seed, epoch, step])
            images, cls, ltrb = data.batch(idx, rng, cfg.translate, cfg.flip)
            out = step_fn(Tensor(images), Tensor(cls), Tensor(ltrb))
            vals = np.array([float(v.asnumpy()) for v in out])
            if not np.all(np.isfinite(vals)):
                raise FloatingPointError(f"pretraining loss is not finite at update {step}: {vals}")
            sums += vals
            n += 1
            if bar is not None:
                bar.update(1)
            if (step + 1) % 50 == 0 or step + 1 == cfg.updates:
                m = sums / n
                rows.append({"step": step + 1, "epoch": epoch, "loss": m[0], "ce": m[1], "l1": m[2],
                             "pixel_acc": m[3], "lr": _lr_at(cfg, step), "time": round(time.time() - t0, 2)})
                log.info("pretrain %d/%d: loss %.4f ce %.4f l1 %.4f pixel acc %.4f", step + 1,
                         cfg.updates, *m)
                sums, n = np.zeros(4), 0
        if bar is not None:
            bar.close()
        bb = {name[len("backbone."):]: p for name, p in net.parameters_and_names()
              if name.startswith("backbone.")}
        meta = {"kind": CKPT_KIND, "format": _FORMAT, "backbone_config": backbone_config(mcfg),
                "data": data.fingerprint, "pretrain": dataclasses.asdict(cfg),
                "final": rows[-1] if rows else {}}
        save_checkpoint(tmp / "backbone.ckpt", bb, meta)
        with open(tmp / "log.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        (tmp / "config.json").write_text(json.dumps(
            {"pretrain": dataclasses.asdict(cfg), "backbone_config": backbone_config(mcfg),
             "data": data.fingerprint, "n_classes": data.n_classes,
             "categories": data.category_names, "format": _FORMAT}, indent=1))
        (tmp / "status.json").write_text(json.dumps(
            {"state": "finished", "updates": cfg.updates, "wall_s": round(time.time() - t0, 1),
             "final": rows[-1] if rows else {}}, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("pretrained backbone written to %s in %.0f s", out_dir, time.time() - t0)
    return out_dir


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _folder_name(cfg: PretrainConfig, bcfg: dict, fingerprint: dict) -> str:
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "model_overrides"}
    key = json.dumps({"cfg": settings, "backbone": bcfg, "data": fingerprint,  # overrides: via bcfg
                      "format": _FORMAT}, sort_keys=True, default=str)
    return f"{cfg.dataset}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def ensure_pretrained(cfg: PretrainConfig, *, data_root, cache_dir, runs_dir, use_jit: bool = True,
                      progress: bool = True) -> Path:
    """The `backbone.ckpt` for `cfg` on this data: reused when a finished folder with the same
    settings and data fingerprint exists under `<runs_dir>/pretrain/`, trained otherwise."""
    from vglaw.config import make_model_config
    from vglaw.data.refer import DEFAULT_SPLIT_BY
    split_by = cfg.split_by or DEFAULT_SPLIT_BY[cfg.dataset]
    cfg = dataclasses.replace(cfg, split_by=split_by)
    mcfg = make_model_config(cfg.preset, **dict(cfg.model_overrides, law_type="none"))
    data = PretrainData(data_root, cfg.dataset, split_by, cache_dir, mcfg.img_size)
    folder = Path(runs_dir) / "pretrain" / _folder_name(cfg, backbone_config(mcfg), data.fingerprint)
    ckpt = folder / "backbone.ckpt"
    status = folder / "status.json"
    if ckpt.is_file() and status.is_file() and json.loads(status.read_text()).get("state") == "finished":
        log.info("reusing pretrained backbone %s", ckpt)
        return ckpt
    log.info("pretraining the %s backbone on %d %s train images (%d updates) -> %s", cfg.preset,
             len(data), cfg.dataset, cfg.updates, folder)
    pretrain_backbone(cfg, data, folder, use_jit=use_jit, progress=progress)
    return ckpt


# ----------------------------------------------------------------------------- loading
def load_pretrained_backbone(model, path: str | Path) -> dict:
    """Load a `backbone.ckpt` into `model.backbone` strictly; returns the checkpoint's metadata.

    Raises PretrainedBackboneError when the file is not a pretrained backbone, when its backbone
    config differs from the model's (fields BACKBONE_FIELDS), or when a parameter is missing,
    extra or of another shape. FileNotFoundError / CheckpointError for a missing or corrupt file.
    """
    from mindspore import Tensor
    from vglaw.models.checkpoint import read_checkpoint
    arrays, meta = read_checkpoint(path)
    if meta.get("kind") != CKPT_KIND:
        raise PretrainedBackboneError(
            f"{path} is not a pretrained backbone (metadata kind {meta.get('kind')!r}, expected "
            f"{CKPT_KIND!r}); write one with `python -m vglaw.train.pretrain`, or use --pretrained_path for "
            "a full VG-LAW checkpoint")
    want = backbone_config(model.config)
    found = meta.get("backbone_config", {})
    diff = [f"{k}: checkpoint {found.get(k)!r} vs model {want[k]!r}" for k in BACKBONE_FIELDS
            if found.get(k) != want[k]]
    if diff:
        raise PretrainedBackboneError(f"{path} was pretrained for another backbone: {'; '.join(diff)}")
    params = {name: p for name, p in model.backbone.parameters_and_names()}
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing or extra:
        raise PretrainedBackboneError(f"{path} does not match the backbone: missing {missing[:5]}, "
                                      f"unexpected {extra[:5]}")
    for name, p in params.items():
        if tuple(arrays[name].shape) != tuple(p.shape):
            raise PretrainedBackboneError(f"{path}: {name} has shape {arrays[name].shape}, the "
                                          f"backbone's is {tuple(p.shape)}")
    for name, p in params.items():
        p.set_data(Tensor(arrays[name].astype(np.float32)))
    return meta


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vglaw.train.pretrain",
                                description="Pretrain the tiny backbone on train-split instances.")
    defaults = PretrainConfig()
    for f in dataclasses.fields(PretrainConfig):
        if f.name in ("model_overrides",):
            continue
        v = getattr(defaults, f.name)
        if isinstance(v, bool):
            p.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=v)
        else:
            p.add_argument(f"--{f.name}", type=type(v) if v is not None else str, default=v)
    p.add_argument("--data_root", default=None)
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--runs_dir", default=None)
    p.add_argument("--mode_name", choices=MODES, default="GRAPH")
    p.add_argument("--debug", action="store_true", help="print the traceback of an error (also VGLAW_DEBUG=1)")
    args = vars(p.parse_args(argv))
    debug = args.pop("debug")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vglaw.utils import paths
    from vglaw.data.refer import DATASETS
    if args["dataset"] not in DATASETS:
        p.error(f"--dataset {args['dataset']!r} is not allowed; expected one of {sorted(DATASETS)}")
    data_root = Path(args.pop("data_root") or paths.default_data_root())
    cache_dir = Path(args.pop("cache_dir") or paths.default_cache_dir())
    runs_dir = Path(args.pop("runs_dir") or paths.default_runs_dir())
    mode = args.pop("mode_name")
    cfg = PretrainConfig(**args)

    def body() -> int:  # known errors: one line, exit 2 (vglaw.utils.errors)
        _prepare(cfg.dataset, cfg.split_by, data_root, cache_dir)
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
        print(ensure_pretrained(cfg, data_root=data_root, cache_dir=cache_dir, runs_dir=runs_dir,
                                use_jit=mode == "GRAPH"))
        return 0
    from vglaw.utils.errors import run_main
    return run_main(p.prog, body, debug)


def _prepare(dataset: str, split_by: str | None, data_root: Path, cache_dir: Path) -> None:
    """Generate the synthetic set if it is the dataset and absent; build/reuse the cache."""
    from vglaw.data import preprocess
    from vglaw.data.refer import DEFAULT_SPLIT_BY
    if dataset in ("shapes", "shapes_rle"):
        from vglaw.data import ensure_shapes
        ensure_shapes(data_root, dataset=dataset)
    preprocess(data_root, dataset, split_by or DEFAULT_SPLIT_BY[dataset], cache_dir)


if __name__ == "__main__":
    sys.exit(main())
