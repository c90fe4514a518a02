"""`hbehavemae pretrain` flag handling (in process): the published multi-value forms and the
per-dataset defaults. A run killed with SIGKILL and resumed, its outputs, and invalid flags:
tests/faults/test_training_faults.py."""

import pytest
from helpers import parse_pretrain_flags as parse
from helpers import pretrain_script

pytestmark = pytest.mark.backend_independent


def test_published_multi_value_forms_are_joined():
    join = pretrain_script().join_multi_value_flags
    assert join(["--input_size", "400", "1", "72", "--stages=2,3,4"]) == [
        "--input_size=400 1 72", "--stages=2,3,4"]
    assert join(["--mask_unit_attn", "True", "False", "False", "--norm_loss", "--seed", "1"]) \
        == ["--mask_unit_attn=True False False", "--norm_loss", "--seed", "1"]
    assert join(["--fill_holes", "False", "--data_augment", "True"]) == [
        "--fill_holes=False", "--data_augment=True"]


def test_default_flags_describe_a_valid_small_synthetic_run():
    flag_values = parse()
    config = pretrain_script().model_config(flag_values)
    training = pretrain_script().training_config(flag_values)
    assert config.input_size == (300, 3, 24) and not config.non_hierarchical
    assert training.epochs >= 5 and training.batch_size == 32


def test_published_dataset_defaults_and_the_baseline():
    shot = pretrain_script().model_config(parse("--dataset=shot7m2"))
    assert shot.q_strides == ((2, 1, 4), (2, 1, 6)) and shot.decoding_strategy == "single"
    assert shot.mask_ratio == 0.70
    mice = pretrain_script().training_config(parse("--dataset=mabe_mice"))
    assert (mice.batch_size, mice.epochs, mice.warmup_epochs) == (768, 200, 40)
    baseline = pretrain_script().model_config(parse("--dataset=hbabel", "--model=behavemae"))
    assert baseline.non_hierarchical and set(baseline.out_embed_dims) == {64}

