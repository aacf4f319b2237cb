"""Flags: the seed's command parses with the same meanings; every bad flag/value/path exits 2 with a
message naming what is allowed; preset recipes fill only what the user left out."""

from __future__ import annotations

import pytest

from vglaw.train import RECIPES, TrainConfig, resolve_config
from vglaw.train.cli import parse_config
from vglaw.train.config import ConfigError

from _train_helpers import run_cli

SEED_COMMAND = """--batch_size=1 --batch_sum=256 --dataset=refcoco --splitBy=unc
--experiment_name=mindspore_vglaw_refcoco --short_comment=mindspore_vglaw_refcoco --law_type=svd
--img_size=448 --vit_model=vitdet_b_mrcnn --pretrained_path=x.ckpt --translate --lr_lang=1e-6
--lr_visual=1e-6 --lr_base=1e-5 --lr_scheduler=step --max_epochs=20 --drop_epochs=10 --log_freq=10
--use_mask --mode_name=PYNATIVE --save_ckpt_dir=/tmp/logdir""".split()


def test_seed_command_parses_with_its_meaning():
    cfg = parse_config(SEED_COMMAND)
    assert (cfg.batch_size, cfg.batch_sum, cfg.dataset, cfg.split_by) == (1, 256, "refcoco", "unc")
    assert cfg.law_type == "svd" and cfg.img_size == 448 and cfg.translate and cfg.use_mask
    assert (cfg.lr_lang, cfg.lr_visual, cfg.lr_base) == (1e-6, 1e-6, 1e-5)
    assert cfg.drop_epochs == (10,) and cfg.max_epochs == 20 and cfg.mode_name == "PYNATIVE"
    assert cfg.eval_splits == ("val", "testA", "testB")  # best.ckpt is chosen on val only
    assert cfg.short_comment == "mindspore_vglaw_refcoco" and cfg.save_ckpt_dir == "/tmp/logdir"


def test_store_true_flags_default_off_like_the_seed():
    cfg = parse_config(["--preset", "tiny"])
    assert not cfg.translate and not cfg.use_mask and not cfg.resume


def test_recipe_fills_only_unset_fields():
    tiny = resolve_config(TrainConfig(preset="tiny"))
    assert tiny.lr_base == RECIPES["tiny"]["lr_base"] and tiny.vit_model == "scratch"
    assert resolve_config(TrainConfig(preset="tiny", vit_model="shapes_pretrained")).vit_model == "shapes_pretrained"
    assert tiny.img_size == 128 and tiny.max_len == 20  # from the model preset
    mine = resolve_config(TrainConfig(preset="tiny", lr_base=3e-3, warmup_epochs=0.5))
    assert mine.lr_base == 3e-3 and mine.warmup_epochs == 0.5 and mine.warmup_steps is None
    paper = resolve_config(TrainConfig(preset="paper", vit_model_path="x.pkl"))
    assert (paper.lr_lang, paper.lr_visual, paper.lr_base) == (1e-5, 1e-5, 1e-4)
    assert paper.batch_sum == 256 and paper.weight_decay == 1e-4 and paper.clip_norm == 0.15
    assert resolve_config(TrainConfig(preset="tiny", dataset="refcocog")).split_by == "umd"
    assert resolve_config(TrainConfig(preset="tiny", dataset="shapes_rle")).eval_splits == ("val", "test")


def test_deterministic_is_the_recipes_unless_the_flag_says_otherwise():
    """tiny (the CPU workbook) reruns bit-identically by default; paper keeps MindSpore's threads."""
    assert resolve_config(parse_config(["--preset", "tiny"])).deterministic is True
    assert resolve_config(parse_config(["--preset", "tiny", "--no-deterministic"])).deterministic is False
    assert resolve_config(parse_config(["--preset", "paper", "--vit_model_path", "x.pkl"])).deterministic is False
    assert resolve_config(parse_config(["--preset", "paper", "--vit_model_path", "x.pkl",
                                        "--deterministic"])).deterministic is True


@pytest.mark.parametrize("argv, needle", [
    (["--law_type", "lora"], "invalid choice: 'lora' (choose from 'none', 'la', 'od1', 'od2', 'od3', 'svd')"),
    (["--dataset", "unc+"], "choose from 'refcoco', 'refcoco+', 'refcocog', 'refclef', 'shapes', 'shapes_rle'"),
    (["--mode_name", "graph"], "choose from 'GRAPH', 'PYNATIVE'"),
    (["--lr_scheduler", "noam"], "choose from 'step', 'cosine'"),
    (["--device_target", "TPU"], "choose from 'CPU', 'GPU', 'Ascend'"),
    (["--bogus_flag", "1"], "unrecognized arguments: --bogus_flag"),
    (["--batch_size", "eight"], "invalid int value: 'eight'"),
    (["--preset", "tiny", "--batch_size", "0"], "batch_size must be > 0"),
    (["--preset", "tiny", "--batch_sum", "20"], "batch_sum 20 must be a multiple of batch_size 16"),
    (["--preset", "tiny", "--dataset", "refcoco", "--splitBy", "umd"], "expected one of ['unc', 'google']"),
    (["--preset", "tiny", "--dataset", "refcoco", "--split_by", "umd"], "split_by 'umd' is not allowed for refcoco"),
    (["--preset", "tiny", "--split_by", "unk"], "--split_by/--splitBy: invalid choice: 'unk' (choose from 'berkeley'"),
    (["--preset", "tiny", "--eval_splits", "testC"], "eval split 'testC' is not allowed"),
    (["--preset", "tiny", "--model_overrides", "vit_dimm=3"], "unknown model config field(s) ['vit_dimm']"),
    (["--preset", "tiny", "--model_overrides", "vit_dim"], "expected KEY=VALUE"),
    (["--preset", "tiny", "--drop_rate", "2"], "drop_rate must lie in (0, 1]"),
    (["--preset", "paper"], "needs --vit_model_path"),
])
def test_bad_values_exit_2_with_allowed_values(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_resolve_config_raises_config_error():
    with pytest.raises(ConfigError, match="law_type 'x' is not allowed"):
        resolve_config(TrainConfig(preset="tiny", law_type="x"))


def test_missing_paths_exit_2_from_the_cli(tmp_path):
    cases = [
        (["--preset", "tiny", "--pretrained_path", str(tmp_path / "nope.ckpt")], "nope.ckpt does not exist"),
        (["--preset", "tiny", "--text_encoder_path", str(tmp_path)], "not a Hugging Face BERT folder"),
        (["--preset", "tiny", "--dataset", "refcoco", "--data_root", str(tmp_path / "none")], "does not exist"),
        (["--preset", "tiny", "--dataset", "refcoco", "--data_root", str(tmp_path),
          "--cache_dir", str(tmp_path / "c"), "--save_ckpt_dir", str(tmp_path / "runs")], "not found"),
    ]
    for argv, needle in cases:
        r = run_cli(argv, timeout=120)
        assert r.returncode == 2, (argv, r.stderr[-2000:])
        assert needle in r.stderr, (argv, r.stderr[-2000:])


def test_split_by_is_one_name_and_old_run_configs_still_compare_equal():
    """Issue 11: the field is `split_by` everywhere; `--splitBy` (the seed's flag) is an alias, and
    a config.json written while the field was `splitBy` is the same run, not a changed one."""
    import dataclasses
    import json

    from vglaw.train.bookkeeping import changed_fields
    from vglaw.train.config import RENAMED_FIELDS
    assert "splitBy" not in {f.name for f in dataclasses.fields(TrainConfig)}
    assert parse_config(["--preset", "tiny", "--splitBy", "unc"]) == parse_config(["--preset", "tiny", "--split_by", "unc"])
    now = json.loads(json.dumps(dataclasses.asdict(parse_config(["--preset", "tiny", "--dataset", "refcoco"]))))
    old = {("splitBy" if k == "split_by" else k): v for k, v in now.items()}
    assert RENAMED_FIELDS == {"splitBy": "split_by"} and changed_fields(old, now) == {}
    old["splitBy"] = "google"  # a real difference under the old name is still one
    assert changed_fields(old, now) == {"split_by": ["google", "unc"]}
