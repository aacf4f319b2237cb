"""How much the text vectors the model reads depend on the sentence (issue 8's text_pool probe).

    python benchmarks/probe_sentence_vectors.py [--run_dir runs/train-shapes-tiny-svd ...]

For 80 val expressions of the synthetic `shapes` set, prints for an untrained tiny model and for
each run's best.ckpt: the mean pairwise cosine and the between-expression RMS / RMS of the [CLS]
output, the mean of the token outputs, the LAW generator's pooled input of the first adaptive block
and the generated weights of that block. A vector that is nearly the same for every expression
(cosine near 1, ratio near 0) tells the heads little about which object is meant.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GLOG_v", "4")

import numpy as np  # noqa: E402


def spread(x: np.ndarray) -> tuple[float, float]:
    """(mean pairwise cosine, RMS of the deviation from the mean vector / RMS) over rows of x."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    iu = np.triu_indices(len(x), 1)
    centred = x - x.mean(0)
    return float(cos[iu].mean()), float(np.sqrt((centred ** 2).mean() / max((x ** 2).mean(), 1e-30)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", nargs="*", default=[], help="runs whose best.ckpt to probe")
    ap.add_argument("--cache_dir", default=None, help="refer cache (default: .cache/refer of the repository)")
    ap.add_argument("--n", type=int, default=80)
    a = ap.parse_args()
    import mindspore as ms
    from mindspore import Tensor

    from vglaw.data import RefDataset
    from vglaw.data.tokenizer import load_tokenizer, tokenize
    from vglaw.eval.evaluate import load_model_from_checkpoint
    from vglaw.models import build_model
    from vglaw.utils.paths import repo_root

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    tok = load_tokenizer()
    ds = RefDataset(a.cache_dir or repo_root() / ".cache" / "refer", "shapes", "unc", "val")
    phrases = [ds.record(i)["phrase"] for i in range(0, len(ds), 3)][:a.n]
    models = [("untrained tiny", build_model("tiny", "svd"))]
    models += [(d, load_model_from_checkpoint(os.path.join(d, "best.ckpt"))) for d in a.run_dir]
    print(f"{len(phrases)} val expressions; cells: mean pairwise cosine / between-expression RMS ratio")
    print("| model | [CLS] | token mean | LAW input, block 0 | generated weights, block 0 |")
    print("|---|---|---|---|---|")
    for label, model in models:
        model.set_train(False)
        ids, mask = tokenize(tok, phrases, model.config.max_len)
        feats = model.text_encoder(Tensor(ids), Tensor(mask)).asnumpy()
        m = mask[..., None].astype(np.float32)
        cells = [spread(feats[:, 0]), spread((feats * m).sum(1) / m.sum(1))]
        if model.law_type != "none":
            cells.append(spread(model.law.aggregate(Tensor(feats), Tensor(mask)).asnumpy()[:, 0]))
            gen = model.generated_weights(Tensor(ids), Tensor(mask)).asnumpy()
            g0 = gen[:, 0].reshape(len(phrases), -1)
            cells.append(spread(g0) if np.abs(g0).max() > 0 else (float("nan"), 0.0))
        print(f"| {label} | " + " | ".join(f"{c:.3f} / {r:.3f}" for c, r in cells) + " |")


if __name__ == "__main__":
    main()
