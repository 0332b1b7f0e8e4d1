"""A run is named after its model and every setting it trains with that differs
from conf/, so that no two runs of different settings share a name."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from mnist_regression.common.config import train_config
from mnist_regression.tracking.provenance import CONF, run_name


def name(*overrides: str) -> str:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return run_name(train_config(compose("config", overrides=list(overrides))))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), "logistic"),
        (("optimizer.average=none",), "logistic average=none"),
        (
            ("optimizer.lr=0.1", "optimizer.average=none"),
            "logistic lr=0.1 average=none",
        ),
        (("optimizer.batch_size=null",), "logistic batch=full"),
        (("model=softmax", "model.l2=0.01", "seed=3"), "softmax l2=0.01 seed=3"),
        (("data.digits=[1,7]",), "logistic digits=1,7"),
        # where the data lives is not a setting of the run
        (("data.prepared_dir=elsewhere", "data.download.timeout=5"), "logistic"),
    ],
)
def test_a_run_is_named_by_every_setting_it_changes(overrides, expected):
    assert name(*overrides) == expected
