"""`mlflow ui`, as a user sees it in a real browser (Debian's Chromium).

The suite fills a store with a small sweep, starts the project's own UI command
(``python -m mnist_regression.tracking.store ui``) on 127.0.0.1 and follows the
address it prints: the runs are listed there, named apart, the sweep as a parent
with its jobs as children; a run's weight image and its logged model render.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import HANG, end_group, free_port, healthy, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.services,
]

CHROMIUM = Path("/usr/bin/chromium")
# Chromium on a machine with no route out: no background connections at all.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's waits end on a condition; its timeout only stops a hang (HANG).
TIMEOUT_MS = HANG * 1000


def _line(lines: queue.Queue) -> str | None:
    try:
        return lines.get_nowait()
    except queue.Empty:
        return None


@pytest.fixture
def serve(app, tmp_path):
    """The project's UI command on the app's store: ``serve()`` starts it and
    returns the address it printed."""
    servers = []

    def start() -> str:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mnist_regression.tracking.store"]
            + ["--uri", app.uri, "ui", "--port", str(port)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        servers.append(server)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in server.stdout], daemon=True
        ).start()
        first = wait_for(lambda: _line(lines), "the first line", server)
        assert first.startswith("starting mlflow ui on "), first

        def address_line() -> str | None:  # after mlflow's own lines
            line = _line(lines)
            return line if line is None or line.startswith("runs of ") else ""

        address = wait_for(address_line, "the address", server)
        assert address.startswith("runs of mnist-regression: http://127.0.0.1:")
        # printed only once the server answers
        assert healthy(f"http://127.0.0.1:{port}"), address
        return address.split(": ", 1)[1].strip()

    yield start
    for server in servers:
        end_group(server)


@pytest.fixture
def ui(app, serve):
    """A small sweep in the store and the UI serving it: its address."""
    app.launch("-m", "model.l2=0,0.01")
    return serve()


@pytest.fixture
def page(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        browser.close()


def test_the_ui_opens_on_named_runs_grouped_by_sweep(app, ui, page, tmp_path):
    (parent,) = [r for r in app.runs() if "sweep_grid" in r.data.tags]
    names = sorted(r.info.run_name for r in app.jobs())
    assert len(set(names)) == 2, names

    page.goto(ui)
    rows = page.locator(".ag-pinned-left-cols-container [role=row]")
    parent_row = rows.filter(has_text=parent.info.run_name)
    parent_row.wait_for()
    page.screenshot(path=tmp_path / "runs.png")
    # the model-training view, not MLflow's GenAI overview of traces and tokens
    assert "Token Usage" not in page.inner_text("body")
    # the jobs are folded under their sweep until it is expanded
    assert rows.count() == 1
    parent_row.locator("button[data-component-id*=runnamecellrenderer]").click()
    for name in names:
        rows.filter(has_text=name).wait_for()
    assert rows.count() == 3
    page.screenshot(path=tmp_path / "sweep.png")


def test_a_run_shows_its_weight_image_and_model(app, ui, page, tmp_path):
    (run,) = [r for r in app.jobs() if r.data.params["model.l2"] == "0.01"]
    run_id = run.info.run_id
    (image,) = app.client.list_artifacts(run_id, "weights")
    base, view = ui.split("/runs?")

    page.goto(f"{base}/runs/{run_id}/artifacts?{view}")
    page.get_by_text(run.info.run_name, exact=True).first.wait_for()
    page.get_by_text("weights", exact=True).click()
    page.get_by_text(Path(image.path).name, exact=True).click()
    # the viewer fetches the file and shows it from a blob
    shown = page.locator("img[src^='blob:']").first
    shown.wait_for()
    wait_for(lambda: shown.evaluate("i => i.complete && i.naturalWidth"), "image")
    width, height = shown.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert min(width, height) >= 224, (width, height)
    page.screenshot(path=tmp_path / "weights.png")

    # the per-epoch curves first, the run's single values after them
    page.goto(f"{base}/runs/{run_id}/model-metrics?{view}")
    page.get_by_text("weight_norm", exact=True).wait_for()
    curves = page.locator("div", has_text=re.compile("^epoch$")).last
    # the section's title, not the tab's
    singles = page.locator("div", has_text=re.compile("^Model metrics$")).last
    assert curves.bounding_box()["y"] < singles.bounding_box()["y"]
    page.screenshot(path=tmp_path / "metrics.png")

    (model,) = app.client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    page.goto(f"{base}/models/{model.model_id}?{view}")
    source = page.get_by_test_id("key-value-Source run")
    source.get_by_role("link", name=run.info.run_name, exact=True).wait_for()
    page.get_by_text("Ready", exact=True).wait_for()
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("MLmodel").first.wait_for()
    page.screenshot(path=tmp_path / "model.png")


def test_experiments_stay_apart_and_the_champion_is_in_the_registry(
    app, serve, page, tmp_path, monkeypatch
):
    """Two DVC experiments sweep the same stage: their parent runs carry the
    experiments' names. The registry page shows the champion's alias."""
    from mnist_regression.study.champion import candidates, choose_per_task
    from mnist_regression.tracking.serving import ALIAS, register_champions

    monkeypatch.setenv("DVC_STAGE", "train@models")
    for experiment in ("lucid-lamb", "brave-bison"):
        monkeypatch.setenv("DVC_EXP_NAME", experiment)
        app.launch("-m", "model.l2=0,0.01", f"output_dir={tmp_path / experiment}")
    parents = sorted(r.info.run_name for r in app.runs() if "sweep_grid" in r.data.tags)
    assert parents == [
        "train@models (brave-bison): model.l2=0,0.01",
        "train@models (lucid-lamb): model.l2=0,0.01",
    ]
    jobs = candidates(tmp_path, ["brave-bison"])
    experiment_id = app.jobs()[0].info.experiment_id
    picks = choose_per_task(jobs)
    (name,) = register_champions(app.client, experiment_id, picks, [2, 3], ALIAS)
    address = serve()

    page.goto(address)
    rows = page.locator(".ag-pinned-left-cols-container [role=row]")
    for parent in parents:
        rows.filter(has_text=parent).wait_for()
    page.screenshot(path=tmp_path / "experiments.png")

    base = address.split("#/")[0]
    page.goto(f"{base}#/models/{name}")
    page.get_by_text(name).first.wait_for()
    page.get_by_text(f"@ {ALIAS}").first.wait_for()
    page.screenshot(path=tmp_path / "registry.png")


def test_plain_mlflow_ui_leads_from_the_experiments_to_the_training_runs(
    app, page, tmp_path
):
    """Plain `mlflow ui` on the study's store, as the README says: from the
    experiments list, the sidebar's "Model training" (MLflow 3 opens every
    experiment on its GenAI overview until it is picked, whatever the
    experiment's kind) and a click on the study's experiment: its runs, the
    sweep among them."""
    app.launch("-m", "model.l2=0,0.01")
    (parent,) = [r for r in app.runs() if "sweep_grid" in r.data.tags]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui"]
        + ["--backend-store-uri", app.uri, "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        root = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(root), "mlflow ui to answer", server)
        page.goto(root)
        page.get_by_text("Model training", exact=True).first.click()
        page.get_by_text("mnist-regression", exact=True).first.click()
        rows = page.locator(".ag-pinned-left-cols-container [role=row]")
        rows.filter(has_text=parent.info.run_name).wait_for()
        assert "/runs" in page.url
        assert "Token Usage" not in page.inner_text("body")
        page.screenshot(path=tmp_path / "plain-ui.png")
    finally:
        end_group(server)
