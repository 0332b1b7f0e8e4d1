"""A run is named after its model and every setting it trains with that differs
from conf/, so that no two runs of different settings share a name."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from mnist_regression.common.config import train_config
from mnist_regression.tracking.provenance import CONF, run_name, sweep_name


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


def test_a_sweep_is_named_by_its_stage_and_what_varies(monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    grid = {"model.name": "logistic", "model.l2": "0,0.1", "seed": "0,1"}
    monkeypatch.setenv("DVC_STAGE", "train@logistic_l2")
    assert sweep_name(grid) == "train@logistic_l2: model.l2=0,0.1 seed=0,1"
    monkeypatch.setenv("DVC_STAGE", "l2_plain")
    both = {**grid, "model.name": "logistic,softmax"}
    named = "l2_plain: model.name=logistic,softmax model.l2=0,0.1 seed=0,1"
    assert sweep_name(both) == named
    monkeypatch.setenv("DVC_EXP_NAME", "pudgy-clog")
    monkeypatch.delenv("DVC_STAGE")
    assert sweep_name({"seed": "3"}) == "sweep (pudgy-clog): seed=3"
