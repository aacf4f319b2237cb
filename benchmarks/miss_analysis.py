"""Where a run's REC misses come from: the wrong object, or a loose box on the right one.

    python benchmarks/miss_analysis.py --predictions runs/train-shapes-tiny-svd/predictions_val.json \
        [--dataset shapes --split_by unc] [--data_root data]
    python benchmarks/miss_analysis.py --predictions reports/ablation_runs/ablation-*-136ff644/predictions_val.json

Each sentence's predicted box is matched to the image's annotated objects (highest IoU) and put in
one of four classes: `hit` (IoU with the referred object >= 0.5), `loose` (the best-matching object
is the referred one, IoU < 0.5), `other` (the best match is another object), `none` (no object
overlaps the box). One row per expression kind of the synthetic generator (`vglaw.data.synthetic.
expression_kind`; "all" only, for a real dataset), then the same sentences scored with the box of
the predicted mask (predictions written with masks) beside the REC head's box. The classes are of
the box the run scored (`pred_box`: the head's, or with box_source "mask" the mask's; such runs
keep the head's as `head_box`).

A second table splits the synthetic set's "base" sentences ("the red circle") by the words the
image makes necessary: `shape` when another object has the referred one's colour (its colour word
alone would fit two objects), `colour` when another has its shape, `both`, or `either` (colour or
shape alone names it). A model that does not read one of the two words fails its rows. Several
prediction files (e.g. the runs of an ablation grid on one split) are pooled: each sentence counts
once per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vglaw.eval.misses import CLASSES, NEEDS, analyse, box_iou, classify, mask_box, needed_words, tables  # noqa: F401


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, type=Path, nargs="+",
                    help="a run's predictions_<split>.json; several (one split) are pooled")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--split_by", default="unc")
    ap.add_argument("--data_root", type=Path, default=None, help="default: vglaw.utils.paths.default_data_root()")
    a = ap.parse_args(argv)
    from vglaw.utils.paths import default_data_root

    preds = [p for f in a.predictions for p in json.loads(f.read_text())]
    res = analyse(preds, a.dataset, a.split_by, a.data_root or default_data_root())
    where = str(a.predictions[0]) if len(a.predictions) == 1 else f"{len(a.predictions)} runs pooled"
    print(f"{where} ({a.dataset}, {a.split_by}); shares of each kind's sentences, %")
    rows = tables(res)

    print("| kind | n | hit | loose box on the referred object | another object | no object "
          "| referred object found | its mean box IoU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows["kinds"]:
        iou = "-" if r["its mean box IoU"] is None else f"{r['its mean box IoU']:.3f}"
        pct = [r[k] for k in ("hit %", "loose box on the referred object %", "another object %", "no object %",
                              "referred object found %")]
        print(f"| {r['kind']} | {r['n']} | " + " | ".join(f"{v:.1f}" for v in pct) + f" | {iou} |")
    if rows["needs"]:
        print(f"\n\"base\" sentences by the words the image makes necessary "
              f"(n: sentences x {len(a.predictions)} run(s)), %")
        print("| needs | n | hit | loose | another object | no object |")
        print("|---|---|---|---|---|---|")
        for r in rows["needs"]:
            print(f"| {r['needs']} | {r['n']} | " + " | ".join(f"{r[c + ' %']:.1f}" for c in CLASSES) + " |")
    m = res["mask_box"]
    if m:
        print(f"\nbox of the predicted mask instead of the REC box: Prec@0.5 {100 * m['prec@0.5']:.1f} "
              f"(REC head {100 * m['head_prec@0.5']:.1f}), box mIoU {100 * m['box_miou']:.1f} "
              f"(REC head {100 * m['head_box_miou']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
