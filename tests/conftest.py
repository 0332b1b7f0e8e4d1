"""Shared fixtures: tiny IDX data sets written by the tests, a loopback HTTP server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_regression.common.config import data_section
from mnist_regression.data.idx import DTYPES

REPO_ROOT = Path(__file__).resolve().parents[1]
# MLflow's usage telemetry stays off in the suite and every process it starts
# (docs/tracking.md): set before any test module imports MLflow.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, the format ``read_idx`` reads."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}
    code = codes[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    big_endian = array.astype(array.dtype.newbyteorder(">"), copy=False)
    Path(path).write_bytes(header + big_endian.tobytes())


@pytest.fixture(autouse=True, scope="session")
def no_process_left_behind():
    """Whatever a test started and did not end (a failed test's sweep, say) is
    killed when the session ends, and named."""
    yield
    import psutil

    left, names = psutil.Process().children(recursive=True), []
    for process in left:
        with contextlib.suppress(psutil.Error):
            names.append(" ".join(process.cmdline())[:80])
            process.kill()
    psutil.wait_procs(left)
    if left:
        listed = "; ".join(names)
        warnings.warn(f"killed {len(left)} processes left: {listed}", stacklevel=1)


def pytest_collection_modifyitems(items: list) -> None:
    """The slow tests first, so that spread over workers the longest start at once
    and the short ones fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """``-m "not integration"`` leaves tests/integration/ unimported: every module
    there is marked integration, and importing them (MLflow, moto, boto3) would
    cost more than the unit tests take to run."""
    markers = config.getoption("markexpr", "").replace(" ", "")
    if markers == "notintegration" and collection_path.name == "integration":
        return True
    return None


TINY_SIDE = 4


def make_raw_dir(path: Path, n_train: int = 100, n_test: int = 40) -> Path:
    """Write a small MNIST-shaped data set: labels cycle 0-9, pixels are noise."""
    rng = np.random.default_rng(123)
    path.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, TINY_SIDE, TINY_SIDE), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(path / f"{prefix}-images-idx3-ubyte", images)
        write_idx(path / f"{prefix}-labels-idx1-ubyte", labels)
    return path


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return make_raw_dir(tmp_path / "raw")


@pytest.fixture
def data_cfg(raw_dir: Path, tmp_path: Path):
    """The project's real ``data`` config, pointed at the tiny data set."""
    params = OmegaConf.load(REPO_ROOT / "params.yaml")
    params.data.raw_dir = str(raw_dir)
    params.data.prepared_dir = str(tmp_path / "prepared")
    params.data.train_size = 50
    params.data.val_fraction = 0.2
    return data_section(params)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    """Serve a fresh directory on 127.0.0.1; yields (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
