from mnist_regression.params import compose_params

from ..conftest import REPO_ROOT


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    """params.yaml must never drift from conf/: `make params` rewrites it."""
    fresh = tmp_path / "params.yaml"
    compose_params(REPO_ROOT, fresh)
    assert (REPO_ROOT / "params.yaml").read_text() == fresh.read_text()
