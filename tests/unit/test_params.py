import shutil
import subprocess
import sys

import pytest

from mnist_regression.params import compose_params, differences

from ..conftest import REPO_ROOT

TRACKED = ["conf", "params.yaml", ".dvc/config"]


def committed_tree(tmp_path):
    """The files that define params.yaml as last committed (the workspace may hold
    an applied `dvc exp run -S` value, which is not drift)."""
    tree = tmp_path / "committed"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", "HEAD", *TRACKED],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    subprocess.run(["git", "init", "-q", str(tree)], check=True)  # DVC needs git
    if archive.returncode != 0:  # not a git checkout: the files as they are
        for name in TRACKED:
            source = REPO_ROOT / name
            if source.is_dir():
                shutil.copytree(source, tree / name)
            else:
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, tree / name)
        return tree
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def test_committed_params_yaml_is_the_composition_of_conf(tmp_path):
    """params.yaml must never drift from conf/ in git: `make params` rewrites it."""
    tree = committed_tree(tmp_path)
    fresh = tmp_path / "params.yaml"
    compose_params(tree, fresh)
    assert (tree / "params.yaml").read_text() == fresh.read_text()


def test_differences_name_each_changed_value(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("model:\n  l2: 0.01\n  name: logistic\nseed: 0\n")
    new.write_text("model:\n  l2: 0.0\n  name: logistic\nseed: 0\nextra: 1\n")
    assert differences(old, new) == [("extra", None, 1), ("model.l2", 0.01, 0.0)]


@pytest.mark.integration  # the command in a process of its own, DVC's composer
@pytest.mark.parametrize("check", [True, False])
def test_an_edit_of_conf_is_never_silent(tmp_path, check):
    tree = committed_tree(tmp_path)
    (tree / ".dvc").mkdir(exist_ok=True)
    path = tree / "conf" / "model" / "logistic.yaml"
    path.write_text(path.read_text().replace("l2: 0.0 ", "l2: 0.25 "))
    command = [sys.executable, "-m", "mnist_regression.params"] + (
        ["--check"] if check else []
    )
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if check:
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert (
            "model.l2 (params.yaml 0.0, conf/ 0.25)" in line and "make params" in line
        )
    else:
        assert result.returncode == 0
        assert "params.yaml: model.l2: 0.0 -> 0.25 (from conf/)" in result.stdout
        assert "l2: 0.25" in (tree / "params.yaml").read_text()
