"""vglaw.ablation statistics: per-sentence scores, the hierarchical bootstrap, paired differences vs
`none`, the reading, and the tables/plot built from them. Hand-made run directories only (no training).
"""

import json

import numpy as np
import pandas as pd
import pytest

from vglaw.workbook.ablation import ablation_stats, grid_label, hierarchical_bootstrap, reading, sentence_scores
from vglaw.workbook.reports import ablation_table, plot_ablation, write_ablation_table


def _run(root, law_type, seed, box_iou, mask=None, sent_ids=None, **knobs):
    """A finished-run stand-in: predictions_val.json with the given per-sentence box IoUs (and masks)."""
    name = "-".join([law_type, *(f"{k}{v}" for k, v in knobs.items()), f"s{seed}"])
    d = root / name
    d.mkdir(parents=True)
    sent_ids = list(range(len(box_iou))) if sent_ids is None else sent_ids
    preds = []
    for i, (sid, iou) in enumerate(zip(sent_ids, box_iou)):
        rec = {"sent_id": sid, "pred_box": [0, 0, 1, 1], "box_iou": float(iou)}
        if mask is not None:
            rec.update(mask_inter=int(mask[i][0]), mask_union=int(mask[i][1]))
        preds.append(rec)
    (d / "predictions_val.json").write_text(json.dumps(preds))
    return {"run": name, "run_dir": str(d), "law_type": law_type, "seed": seed, "split": "val", **knobs}


def _hits(n, p, rng):
    """Box IoUs whose hits (IoU >= 0.5) are Bernoulli(p)."""
    return np.where(rng.random(n) < p, 0.8, 0.2)


def test_sentence_scores_by_hand(tmp_path):
    row = _run(tmp_path, "svd", 0, [0.9, 0.5, 0.49], mask=[(3, 4), (1, 2), (0, 0)], sent_ids=[7, 3, 5])
    s = sentence_scores(row["run_dir"])
    assert list(s.index) == [3, 5, 7]                            # sorted by sent_id
    assert list(s["prec@0.5"]) == [1.0, 0.0, 1.0]                # an IoU of exactly 0.5 is a hit
    assert list(s["box_miou"]) == [0.5, 0.49, 0.9]
    assert list(s["miou"]) == [0.5, 0.0, 0.75]                   # empty union scores 0, as in metrics.py
    no_masks = sentence_scores(_run(tmp_path, "none", 0, [0.9])["run_dir"])
    assert no_masks["miou"].isna().all()
    with pytest.raises(FileNotFoundError, match="not evaluated on 'testA'"):
        sentence_scores(row["run_dir"], "testA")


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        iou = rng.random(50)
        mask = [(int(i * 10), 10) for i in rng.random(50)]
        rows += [_run(tmp_path, lt, seed, iou, mask) for lt in ("none", "svd")]
    stats = ablation_stats(pd.DataFrame(rows), n_boot=300)
    st = stats.set_index("law_type")
    for m in ("prec@0.5", "box_miou", "miou"):
        assert st.loc["svd", m] == st.loc["none", m]
        assert st.loc["svd", [f"{m}_diff", f"{m}_diff_lo", f"{m}_diff_hi"]].tolist() == [0.0, 0.0, 0.0]
        assert not st.loc["svd", f"{m}_significant"]
    assert "so no difference from none is beyond noise" in reading(stats)


def test_all_hits_vs_none_all_misses_is_significant(tmp_path):
    rows = [_run(tmp_path, "none", s, [0.1] * 20) for s in (0, 1)] + \
           [_run(tmp_path, "svd", s, [0.9] * 20) for s in (0, 1)]
    st = ablation_stats(pd.DataFrame(rows), n_boot=200)
    svd = st.set_index("law_type").loc["svd"]
    assert svd["prec@0.5"] == 100.0 and svd["prec@0.5_lo"] == 100.0
    assert (svd["prec@0.5_diff"], svd["prec@0.5_diff_lo"], svd["prec@0.5_diff_hi"]) == (100.0, 100.0, 100.0)
    assert svd["prec@0.5_significant"] and svd["box_miou_significant"]
    assert pytest.approx(svd["box_miou_diff"]) == 80.0
    assert np.isnan(svd["miou"]) and not svd["miou_significant"]  # no masks: NaN, never significant
    text = reading(st)
    assert "svd vs none: +100.0 points box Prec@0.5 [+100.0, +100.0] significant" in text
    assert "mask mIoU" not in text and "so only svd on box Prec@0.5, svd on box mIoU differ" in text
    # one setting x two metrics: 0.1 false positives expected, two found: more than chance gives
    assert "of these 2 comparisons about 0.1 would exclude 0 by chance alone at 95%" in text
    assert text.endswith("2 such results are more than chance would give.")


def test_ci_contains_the_mean_and_bootstrap_is_deterministic(tmp_path):
    rng = np.random.default_rng(3)
    rows = [_run(tmp_path, lt, s, rng.random(80), [(int(10 * v), 10) for v in rng.random(80)])
            for lt in ("none", "la", "svd") for s in (0, 1, 2)]
    a = ablation_stats(pd.DataFrame(rows), n_boot=500, rng_seed=1)
    for m in ("prec@0.5", "box_miou", "miou"):
        assert ((a[f"{m}_lo"] <= a[m]) & (a[m] <= a[f"{m}_hi"]) & (a[f"{m}_lo"] < a[f"{m}_hi"])).all()
        d = a[a["law_type"] != "none"]
        assert ((d[f"{m}_diff_lo"] <= d[f"{m}_diff"]) & (d[f"{m}_diff"] <= d[f"{m}_diff_hi"])).all()
    pd.testing.assert_frame_equal(a, ablation_stats(pd.DataFrame(rows), n_boot=500, rng_seed=1))
    assert not a.equals(ablation_stats(pd.DataFrame(rows), n_boot=500, rng_seed=2))


def test_one_seed_leaves_sentence_noise_only():
    # constant within the one seed: nothing to resample
    assert np.all(hierarchical_bootstrap(np.full((1, 1, 30), 0.25), 100) == 0.25)
    # Bernoulli(0.5) hits of 400 sentences: bootstrap sd ~ sqrt(0.25 / 400) = 0.025
    x = (np.arange(400) % 2).astype(float)[None, None]
    boot = hierarchical_bootstrap(x, 2000, rng_seed=0)[0]
    assert abs(boot.mean() - 0.5) < 0.005 and 0.022 < boot.std() < 0.028


def test_seed_level_is_resampled():
    # three seeds, constant within each: a resample is the mean of 3 seeds drawn from {0, .5, 1};
    # P(all three are the 0 seed) = 1/27 > 2.5%, so the 95% interval is exactly [0, 1].
    x = np.repeat(np.array([0.0, 0.5, 1.0])[:, None], 20, axis=1)[None]
    boot = hierarchical_bootstrap(x, 4000, rng_seed=0)[0]
    assert set(np.round(3 * boot, 9)) <= {0, 0.5, 1, 1.5, 2, 2.5, 3}
    assert np.percentile(boot, 2.5) == 0.0 and np.percentile(boot, 97.5) == 1.0


def test_identical_seeds_add_no_sentence_information():
    # Three seeds that scored every sentence alike are one seed's evidence: sentence difficulty shared
    # by all seeds must not be averaged down by sqrt(3) (one sentence draw serves all drawn seeds).
    one = (np.arange(400) % 2).astype(float)[None, None]
    three = np.repeat(one, 3, axis=1)
    sd1 = hierarchical_bootstrap(one, 2000, rng_seed=0)[0].std()
    sd3 = hierarchical_bootstrap(three, 2000, rng_seed=0)[0].std()
    assert abs(sd3 / sd1 - 1.0) < 0.1


def test_a_sign_flip_across_seeds_is_not_significant(tmp_path):
    # svd beats none on every sentence of seeds 0 and 2 but loses on all of seed 1: pooled over
    # sentences the gain (+33 points) would look certain; over seeds it is not.
    rows = []
    for s, win in ((0, True), (1, False), (2, True)):
        rows += [_run(tmp_path, "none", s, [0.1 if win else 0.9] * 40),
                 _run(tmp_path, "svd", s, [0.9 if win else 0.1] * 40)]
    svd = ablation_stats(pd.DataFrame(rows), n_boot=2000).set_index("law_type").loc["svd"]
    assert pytest.approx(svd["prec@0.5_diff"]) == 100 / 3
    assert svd["prec@0.5_diff_lo"] == -100.0 and not svd["prec@0.5_significant"]


def test_extra_knobs_pair_with_none_at_the_same_knob(tmp_path):
    rows = [_run(tmp_path, "none", 0, [0.1] * 10, law_rank=8), _run(tmp_path, "svd", 0, [0.9] * 10, law_rank=8),
            _run(tmp_path, "none", 0, [0.9] * 10, law_rank=16), _run(tmp_path, "svd", 0, [0.9] * 10, law_rank=16)]
    st = ablation_stats(pd.DataFrame(rows), by=("law_type", "law_rank"), n_boot=100)
    diff = dict(zip(zip(st["law_type"], st["law_rank"]), st["prec@0.5_diff"]))
    assert diff == {("none", 8): 0.0, ("svd", 8): 100.0, ("none", 16): 0.0, ("svd", 16): 0.0}
    assert "svd/8 vs none/8: +100.0 points" in reading(st) and "one seed" in reading(st)


def test_bad_grids_fail_with_a_message(tmp_path):
    svd0, svd1 = _run(tmp_path, "svd", 0, [0.9, 0.1]), _run(tmp_path, "svd", 1, [0.9, 0.1])
    with pytest.raises(ValueError, match="no run has law_type 'none'.*law types found: \\['svd'\\]"):
        ablation_stats(pd.DataFrame([svd0, svd1]))
    none0 = _run(tmp_path, "none", 0, [0.9, 0.1])
    with pytest.raises(ValueError, match="svd has seeds \\[0, 1\\] but none has \\[0\\]"):
        ablation_stats(pd.DataFrame([none0, svd0, svd1]))
    other = _run(tmp_path / "x", "svd", 0, [0.9, 0.1], sent_ids=[0, 9])
    with pytest.raises(ValueError, match="other val sentences"):
        ablation_stats(pd.DataFrame([none0, other]))
    with pytest.raises(ValueError, match="lacks column"):
        ablation_stats(pd.DataFrame([none0]).drop(columns="run_dir"))
    with pytest.raises(ValueError, match="shape"):
        hierarchical_bootstrap(np.zeros((2, 0, 3)))


def test_grid_label_says_full_or_reduced():
    six = ["none", "la", "od1", "od2", "od3", "svd"]
    assert grid_label(six, [0, 1, 2], [700] * 18) == "full grid: 6 law types x 3 seeds, 700 updates each"
    assert grid_label(six, [0], [80] * 6) == "reduced grid: 6 law types x 1 seed, 80 updates each"
    assert grid_label(["none", "svd"], [0, 1, 2], [4, 4, 3]) == "reduced grid: 2 law types x 3 seeds, 3-4 updates each"


def test_table_and_plot(tmp_path):
    rows = [_run(tmp_path, lt, 0, [v] * 10, [(5, 10)] * 10) for lt, v in (("none", 0.1), ("la", 0.1), ("svd", 0.9))]
    st = ablation_stats(pd.DataFrame(rows), n_boot=100)
    t = ablation_table(st).set_index("law_type")
    assert t.loc["none", "Δ box Prec@0.5 vs none"] == "reference"
    assert t.loc["svd", "Δ box Prec@0.5 vs none"] == "+100.0 [+100.0, +100.0] *"
    assert t.loc["la", "Δ box Prec@0.5 vs none"] == "+0.0 [+0.0, +0.0]"
    assert t.loc["svd", "mask mIoU (%)"] == "50.0 [50.0, 50.0]"
    md, csv = write_ablation_table(st, "abl", tmp_path / "tables", title="reduced grid: 3 law types x 1 seed")
    assert md.read_text().startswith("## reduced grid") and "* = the CI excludes 0" in md.read_text()
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("law_type,runs,seeds,n_sentences,prec@0.5,prec@0.5_lo") and len(lines) == 4
    assert plot_ablation(st, tmp_path / "abl.png").stat().st_size > 1000


def test_reading_counts_the_comparisons_behind_a_lone_significant_result(tmp_path):
    """15 CIs at 95 %: one that excludes 0 is what chance gives; the reading says so."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in (0, 1, 2):
        base = 0.4 * rng.random(60)  # every box a miss: only od2's box mIoU moves (+0.05)
        for lt in ("none", "la", "od1", "od2", "od3", "svd"):
            iou = base + (0.05 if lt == "od2" else 0.0) + rng.normal(0, 0.002, 60)
            rows.append(_run(tmp_path, lt, seed, iou, [(int(i * 10), 10) for i in base]))
    st = ablation_stats(pd.DataFrame(rows), n_boot=300)
    flagged = st[[f"{m}_significant" for m in ("prec@0.5", "box_miou", "miou")]].to_numpy()
    assert flagged.sum() == 1 and st.set_index("law_type").loc["od2", "box_miou_significant"]
    text = reading(st)
    assert "so only od2 on box mIoU differs from none beyond noise; but of these 15 comparisons about 0.8 " \
           "would exclude 0 by chance alone at 95% with no real difference, so one such result is not " \
           "evidence on its own." in text
