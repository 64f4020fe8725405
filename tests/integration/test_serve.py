"""``nflab serve`` over a store filled by real runs (real local Ray, MLflow, Optuna, SQLite), once per module: every
page and API route, the API's numbers against ``nflab leaderboard --json``, 404s, the token off loopback, hostile
input, and a real browser (Debian's headless Chromium driven by Selenium) against a real uvicorn server."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from nflab.cli import app as cli_app
from nflab.serve import BindRefused, check_bind, create_app, is_loopback
from nflab.serve.app import session_value
from nflab.settings import Settings, load_settings
from nflab.store import Store
from tests.loopback import free_port as _free_port

TOY = """\
name: serve-toy
dataset: {name: 8gaussians, test_samples: 300, validation_samples: 300}
model: {family: realnvp, preset: small}
train: {steps: 30, batch_size: 64, eval_every: 15, checkpoint_every: 30, log_every: 5, seed: 0, device: cpu}
eval: {batch_size: 300, samples: 300, exact: true}
resources: {cpu: 1, gpu: 0, retries: 0}
matrix:
  model.family: [nice, realnvp]
  train.seed: [0, 1]
"""
NAN = (
    TOY.replace("name: serve-toy", "name: serve-nan")
    .replace("train: {steps: 30,", "train: {lr: 1.0e+30, steps: 30,")
    .replace("matrix:\n  model.family: [nice, realnvp]\n  train.seed: [0, 1]\n", "")
)
TUNE = """\
name: serve-study
dataset: {name: moons, test_samples: 200, validation_samples: 200}
model: {family: realnvp, preset: small}
train: {steps: 20, batch_size: 32, eval_every: 10, checkpoint_every: 20, log_every: 10, device: cpu}
eval: {batch_size: 200, samples: 200, average_last: 0}
resources: {cpu: 1, gpu: 0, retries: 0}
tune:
  space: {train.lr: {choices: [3.0e-3, 1.0e-3]}}
  sampler: {kind: grid, seed: 1}
  trials: 2
  parallel: 2
"""
SCRIPT = "<script>alert(1)</script>"
QUOTED = "cpila\" onmouseover=\"alert('x')"
HOSTILE_ERROR = "diverged <img src=x onerror=alert(2)> at step 3"
HOSTILE_HASH = "f" * 64
TOKEN = "serve-test-token-0123456789abcdef"
ENV_VARS = ("NFLAB_DB_URL", "MLFLOW_TRACKING_URI", "NFLAB_OPTUNA_URL", "NFLAB_DATA", "RAY_ADDRESS", "NFLAB_STORAGE")


@dataclass
class Served:
    home: Path
    settings: Settings
    store: Store
    client: TestClient
    toy_campaign: str
    nan_campaign: str
    hostile_campaign: str
    live_campaign: str
    configs: list[str]
    study: str


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


def _fill_hostile(store: Store) -> tuple[str, str]:
    """What another writer may leave in the store: a campaign named like a script, an option value with quotes, an
    error message with markup; and a campaign still running (the page must refresh itself)."""
    hostile = store.create_campaign(SCRIPT, "fp-hostile", "name: hostile", status="finished")
    config = {"dataset": {"name": "8gaussians"}, "model": {"family": "monotone", "activation": QUOTED}}
    specs = [{"run_key": f"hostile-r{s}", "config_hash": HOSTILE_HASH, "seed": s, "config": config} for s in (0, 1)]
    ids = store.add_runs(hostile, specs)
    result = {"split": "test", "metric": "nats", "value": 9.5, "budget": "exact", "kind": "best", "step": 3}
    store.record_result(ids["hostile-r0"], {"status": "finished", "results": [result]})
    store.record_result(ids["hostile-r1"], {"status": "failed", "error": HOSTILE_ERROR})
    live = store.create_campaign("live-campaign", "fp-live", "name: live", status="running")
    live_ids = store.add_runs(live, [{**specs[0], "run_key": "live-r0"}, {**specs[1], "run_key": "live-r1"}])
    store.mark_running(live_ids["live-r0"])
    return hostile, live


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        for var in (*ENV_VARS, "NFLAB_SERVE_TOKEN", "MLFLOW_UI_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("NFLAB_HOME", str(home))
        for name, text in (("toy", TOY), ("nan", NAN), ("tune", TUNE)):
            (root / f"{name}.yaml").write_text(text)
        toy = _cli("run", str(root / "toy.yaml"), "--json")
        assert toy.exit_code == 0, toy.output
        nan = _cli("run", str(root / "nan.yaml"), "--json")
        assert nan.exit_code == 1, nan.output
        tuned = _cli("tune", str(root / "tune.yaml"), "--json")
        assert tuned.exit_code == 0, tuned.output
        settings = load_settings()
    store = Store(settings.db_url)
    hostile, live = _fill_hostile(store)
    toy_runs = json.loads(toy.stdout)["runs"]
    client = TestClient(create_app(settings, store, mlflow_ui_url="http://mlflow.example:5000/"))
    yield Served(
        home=home,
        settings=settings,
        store=store,
        client=client,
        toy_campaign=json.loads(toy.stdout)["campaign_id"],
        nan_campaign=json.loads(nan.stdout)["campaign_id"],
        hostile_campaign=hostile,
        live_campaign=live,
        configs=sorted({r["config_hash"] for r in toy_runs}),
        study=json.loads(tuned.stdout)["name"],
    )
    client.close()
    store.close()


@pytest.fixture
def home_env(served: Served, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of the filled home, for the CLI."""
    for var in (*ENV_VARS, "NFLAB_SERVE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NFLAB_HOME", str(served.home))
    return served.home


def _urls(s: Served) -> list[str]:
    config = s.configs[0]
    return [
        "/",
        "/leaderboard",
        "/leaderboard?dataset=8gaussians",
        "/leaderboard?dataset=moons&select=final&sort=mean&order=desc",
        "/leaderboard?family=nice&reference=no",
        f"/configs/{config}",
        f"/configs/{HOSTILE_HASH}",
        "/campaigns",
        f"/campaigns/{s.toy_campaign}",
        f"/campaigns/{s.nan_campaign}",
        f"/campaigns/{s.hostile_campaign}",
        "/studies",
        f"/studies/{s.study}",
        "/static/style.css",
        "/health",
        "/api/leaderboard",
        "/api/facets",
        f"/api/configs/{config}",
        "/api/campaigns",
        f"/api/campaigns/{s.toy_campaign}",
        "/api/studies",
        f"/api/studies/{s.study}",
    ]


def test_every_page_and_api_route_answers(served: Served) -> None:
    for url in _urls(served):
        response = served.client.get(url)
        assert response.status_code == 200, (url, response.text[:500])
        kind = response.headers["content-type"]
        if url.startswith("/api/") or url == "/health":
            assert kind.startswith("application/json"), url
            json.loads(response.text)
        elif not url.startswith("/static"):
            assert kind.startswith("text/html") and "<html" in response.text, url
        assert "content-security-policy" in response.headers and response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("query", "cli_args"),
    [
        ("", []),
        ("?dataset=8gaussians", ["--dataset", "8gaussians"]),
        ("?dataset=8gaussians&select=final", ["--dataset", "8gaussians", "--select", "final"]),
        ("?reference=no&metric=nats", ["--no-reference", "--metric", "nats"]),
    ],
)
def test_api_numbers_equal_the_cli(served: Served, home_env: Path, query: str, cli_args: list[str]) -> None:
    cli = _cli("leaderboard", "--json", *cli_args)
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    api = served.client.get(f"/api/leaderboard{query}").json()
    assert api == expected
    assert any(r["source"] == "ours" for r in api)


def test_study_trials_equal_the_cli(served: Served, home_env: Path) -> None:
    cli = _cli("leaderboard", "--json", "--study", served.study, "--no-reference")
    assert cli.exit_code == 0, cli.output
    api = served.client.get(f"/api/leaderboard?study={served.study}&reference=no").json()
    assert api == json.loads(cli.stdout) and len(api) == 2  # its two trials, left out of the default leaderboard
    default = served.client.get("/api/leaderboard?dataset=moons&reference=no").json()
    assert not {r["config_hash"] for r in default} & {r["config_hash"] for r in api}


def test_leaderboard_page_shows_the_api_rows(served: Served) -> None:
    rows = served.client.get("/api/leaderboard?dataset=8gaussians").json()
    page = served.client.get("/leaderboard?dataset=8gaussians").text
    assert page.count('<tr class="row ') == len(rows)
    for row in rows:
        score = f"{row['mean']:.4f}" if row["std"] is None else f"{row['mean']:.4f} ± {row['std']:.4f}"
        assert score in page
        if row["source"] == "ours":
            assert f'href="/configs/{row["config_hash"]}"' in page
    paper = [r for r in rows if r["source"] == "paper"]
    assert paper and 'class="row paper"' in page and all(html.escape(r["citation"]) in page for r in paper[:3])
    assert 'class="thumb" src="/runs/' in page  # density plots of the real runs


def test_filters_and_sorting(served: Served) -> None:
    get = served.client.get
    nice = get("/api/leaderboard?family=nice&reference=no").json()
    assert nice and {r["family"] for r in nice} == {"nice"}
    study = get(f"/api/leaderboard?study={served.study}&reference=no").json()
    assert study and {r["dataset"] for r in study} == {"moons"}
    campaign = get("/api/leaderboard?campaign=serve-toy&reference=no").json()
    assert {r["family"] for r in campaign} == {"nice", "realnvp"}
    ordered = get("/api/leaderboard?dataset=8gaussians&reference=no&sort=mean&order=desc").json()
    means = [r["mean"] for r in ordered if r["quantity"] == ordered[0]["quantity"]]
    assert means == sorted(means, reverse=True) and len(means) >= 2


def test_configuration_page(served: Served) -> None:
    config = served.configs[0]
    data = served.client.get(f"/api/configs/{config}").json()
    assert len({r["seed"] for r in data["runs"]}) == 2 and {r["status"] for r in data["runs"]} == {"finished"}
    assert data["rows"] and data["rows"][0]["config_hash"] == config and data["rows"][0]["n_seeds"] == 2
    assert data["curves"] and all("train_loss" in h for h in data["curves"].values())
    assert any(o["differs"] for o in data["options"])  # the small preset is not the published default
    assert all(r["images"] for r in data["runs"])
    assert all(r["mlflow_url"].startswith("http://mlflow.example:5000/#/experiments/") for r in data["runs"])
    from nflab.workers.environment import code_version_label

    assert data["code_versions"] == [code_version_label()]  # what ran: package version (+ git commit here)
    import torch

    assert all(r["environment"]["torch"] == torch.__version__ and r["environment"]["cuda"] for r in data["runs"])
    page = served.client.get(f"/configs/{config}").text
    assert 'id="curve-train_loss"' in page and "<svg" in page and 'class="differs"' in page
    for image in data["runs"][0]["images"]:
        png = served.client.get(image)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


def test_campaign_pages(served: Served) -> None:
    get = served.client.get
    listing = get("/api/campaigns").json()
    names = {c["name"]: c for c in listing["campaigns"]}
    assert names["serve-toy"]["status"] == "finished" and names["serve-toy"]["done"] == 4
    assert listing["refresh"] and names["live-campaign"]["active"]
    assert '<meta http-equiv="refresh"' in get("/campaigns").text
    failed = get(f"/api/campaigns/{served.nan_campaign}").json()["failed"]
    assert failed and "non-finite" in failed[0]["error"] and "failed: non-finite" in failed[0]["log_tail"]
    page = get(f"/campaigns/{served.nan_campaign}").text
    assert "log tail" in page and "non-finite" in page and '<meta http-equiv="refresh"' not in page


def test_study_pages(served: Served) -> None:
    data = served.client.get(f"/api/studies/{served.study}").json()
    assert len(data["trials"]) == 2 and {t["state"] for t in data["trials"]} == {"complete"}
    assert data["best"] and "history" in data["charts"]
    assert all(t["config_href"] for t in [*data["trials"], *data["best"]])
    page = served.client.get(f"/studies/{served.study}").text
    assert 'id="study-history"' in page
    for plot in data["plots"]:
        assert served.client.get(plot).status_code == 200
    listing = served.client.get("/api/studies").json()["studies"]
    assert [s["name"] for s in listing] == [served.study]


def test_unknown_ids_are_404(served: Served) -> None:
    get = served.client.get
    unknown = [
        "/configs/" + "0" * 64,
        "/configs/not-a-hash",
        "/api/configs/" + "0" * 64,
        "/campaigns/00000000-0000-0000-0000-000000000000",
        "/api/campaigns/00000000-0000-0000-0000-000000000000",
        "/campaigns/..%2F..%2Fetc",
        "/studies/no-such-study",
        "/api/studies/no-such-study",
        f"/studies/{served.study}/plots/nothing.png",
        "/runs/00000000-0000-0000-0000-000000000000/files/density.png",
        "/no/such/page",
    ]
    run_id = served.client.get(f"/api/configs/{served.configs[0]}").json()["runs"][0]["id"]
    unknown += [f"/runs/{run_id}/files/..%2Fnflab.db", f"/runs/{run_id}/files/train.log", f"/runs/{run_id}/files/x.png"]
    for url in unknown:
        response = get(url)
        assert response.status_code == 404, (url, response.status_code)
        if url.startswith("/api/"):
            assert response.json()["status"] == 404


def test_only_get(served: Served) -> None:
    for method in ("post", "put", "delete", "patch"):
        for url in ("/", "/leaderboard", "/api/leaderboard", f"/api/campaigns/{served.toy_campaign}"):
            assert served.client.request(method, url).status_code == 405, (method, url)


def test_hostile_strings_render_as_text(served: Served) -> None:
    get = served.client.get
    pages = [
        get("/leaderboard").text,
        get("/campaigns").text,
        get(f"/campaigns/{served.hostile_campaign}").text,
        get(f"/configs/{HOSTILE_HASH}").text,
    ]
    for page in pages:
        assert "<script" not in page and "<img src=x" not in page and '" onmouseover="alert' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0] and "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
    assert "&lt;img src=x onerror=alert(2)&gt;" in pages[2]
    assert "cpila&#34; onmouseover=&#34;alert(&#39;x&#39;)" in pages[3]
    assert get(f"/api/configs/{HOSTILE_HASH}").json()["options"][-1]["value"] == QUOTED  # the JSON keeps the value
    # user input echoed in an error is text too
    echoed = get("/leaderboard", params={"dataset": SCRIPT})
    assert echoed.status_code == 400 and "<script>" not in echoed.text and "&lt;script&gt;" in echoed.text


def _db_digest(served: Served) -> str:
    return hashlib.sha256(Path(served.settings.db_url.removeprefix("sqlite:///")).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "params",
    [
        {"dataset": "8gaussians' OR '1'='1"},
        {"dataset": "8gaussians'; DROP TABLE nflab_runs; --"},
        {"family": 'nice" OR 1=1 --'},
        {"campaign": "x' UNION SELECT password FROM users --"},
        {"metric": "nats; DELETE FROM nflab_results"},
        {"sort": "mean; DROP TABLE nflab_results"},
        {"select": "best' OR 'a'='a"},
        {"study": "serve-study' OR 1=1 --"},
        {"order": "desc)--"},
        {"datasets": "8gaussians"},
    ],
)
def test_sql_injection_in_filters_is_400_and_changes_nothing(served: Served, params: dict[str, str]) -> None:
    before_marker, before_file = served.store.change_marker(), _db_digest(served)
    before_rows = served.client.get("/api/leaderboard?reference=no").json()
    for url in ("/leaderboard", "/api/leaderboard"):
        response = served.client.get(url, params=params)
        assert response.status_code == 400, (url, params, response.status_code)
    assert served.store.change_marker() == before_marker and _db_digest(served) == before_file
    assert served.client.get("/api/leaderboard?reference=no").json() == before_rows and len(before_rows) >= 3


def test_no_secret_in_any_response(served: Served) -> None:
    settings = replace(served.settings, db_url="postgresql+psycopg://nflab:hunter2-secret@db:5432/nflab")
    client = TestClient(create_app(settings, served.store, token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for url in _urls(served):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        blob = response.text + json.dumps(dict(response.headers))
        assert "hunter2-secret" not in blob and TOKEN not in blob, url
    assert "postgresql+psycopg://nflab:***@db:5432/nflab" in client.get("/", headers=headers).text


def test_token_checked_on_every_request(served: Served) -> None:
    client = TestClient(create_app(served.settings, served.store, token=TOKEN))
    for url in ("/", "/api/leaderboard", "/static/style.css", f"/configs/{served.configs[0]}", "/no/such/page"):
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(url, params={"token": TOKEN[:-1]}).status_code == 401
    assert client.get("/api/leaderboard", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = client.get("/leaderboard", params={"token": TOKEN})
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert TOKEN not in cookie and session_value(TOKEN) in cookie and "HttpOnly" in cookie
    assert client.get("/campaigns").status_code == 200  # the browser's session cookie from then on
    client.cookies.clear()
    assert client.get("/campaigns").status_code == 401


def test_non_loopback_needs_a_token(home_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(BindRefused, match="NFLAB_SERVE_TOKEN"):
        check_bind("0.0.0.0", None)
    refused = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "NFLAB_SERVE_TOKEN" in lines[0] and "0.0.0.0" in lines[0]


# ------------------------------------------------------------------------------------------- a real browser


def _browser() -> tuple[str, str] | None:
    names = ("chromium", "chromium-browser", "chromium-headless-shell")
    chromium = next((shutil.which(b) for b in names if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    return None if chromium is None or driver is None else (chromium, driver)


@pytest.fixture
def server(served: Served) -> Iterator[str]:
    """``nflab serve`` as a subprocess on 127.0.0.1 and a free port: its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in (*ENV_VARS, "NFLAB_SERVE_TOKEN")}
    env["NFLAB_HOME"] = str(served.home)
    cmd = [sys.executable, "-c", "from nflab.cli import main; main()", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"nflab serve did not start: {out[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_real_browser(served: Served, server: str, tmp_path: Path) -> None:
    found = _browser()
    if found is None:
        pytest.skip("no chromium/chromedriver: scripts/ensure-browser.sh installs Debian's (run as root with apt)")
    chromium, driver_path = found
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    artifacts = Path(os.environ.get("NFLAB_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        browser.set_page_load_timeout(60)
        browser.get(f"{server}/leaderboard")
        api = served.client.get("/api/leaderboard").json()
        rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tr.row")
        assert len(rows) == len(api) and browser.title.startswith("leaderboard")
        assert len(browser.find_elements(By.CSS_SELECTOR, "tr.row.paper")) == sum(r["source"] == "paper" for r in api)
        images = browser.find_elements(By.TAG_NAME, "img")
        assert images
        _all_loaded(browser, images)
        browser.save_screenshot(str(artifacts / "leaderboard.png"))

        Select(browser.find_element(By.ID, "filter-dataset")).select_by_visible_text("8gaussians")
        old = browser.find_element(By.TAG_NAME, "html")
        browser.find_element(By.ID, "apply").click()
        wait = WebDriverWait(browser, 60)
        wait.until(expected_conditions.staleness_of(old))
        wait.until(
            lambda d: (
                "dataset=8gaussians" in d.current_url and d.execute_script("return document.readyState") == "complete"
            )
        )
        shown = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tr.row")
        assert shown and {r.get_attribute("data-dataset") for r in shown} == {"8gaussians"}
        assert len(shown) == len(served.client.get("/api/leaderboard?dataset=8gaussians").json())

        old = browser.find_element(By.TAG_NAME, "html")
        browser.find_element(By.CSS_SELECTOR, "a.config-link").click()
        wait.until(expected_conditions.staleness_of(old))
        wait.until(
            lambda d: "/configs/" in d.current_url and d.execute_script("return document.readyState") == "complete"
        )
        assert browser.find_element(By.ID, "config-title").text
        assert browser.find_elements(By.CSS_SELECTOR, "#curve-train_loss svg")
        images = browser.find_elements(By.CSS_SELECTOR, "img.plot")
        assert images
        _all_loaded(browser, images)
        browser.save_screenshot(str(artifacts / "configuration.png"))
        assert (artifacts / "configuration.png").stat().st_size > 1000
    finally:
        browser.quit()


def _all_loaded(browser: Any, images: list[Any]) -> None:
    for image in images:
        ok = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", image)
        assert ok, f"image did not load: {image.get_attribute('src')}"
    assert not [i for i in images if not re.match(r"^http://127\.0\.0\.1:\d+/", i.get_attribute("src") or "")]


def test_pages_are_live(served: Served) -> None:
    """A result recorded after the page was rendered shows within seconds, with no regeneration step (runs last:
    it adds a row)."""
    before = served.client.get("/api/leaderboard?dataset=8gaussians&reference=no").json()
    assert served.client.get("/leaderboard?dataset=8gaussians").status_code == 200
    late = served.store.create_campaign("late-campaign", "fp-late", "name: late", status="finished")
    config = {"dataset": {"name": "8gaussians"}, "model": {"family": "maf"}}
    ids = served.store.add_runs(late, [{"run_key": "late-r0", "config_hash": "e" * 64, "seed": 0, "config": config}])
    result = {"split": "test", "metric": "nats", "value": 1.25, "budget": "exact", "kind": "best", "step": 1}
    served.store.record_result(ids["late-r0"], {"status": "finished", "results": [result]})
    # the first request after the change may get the previous value while the new one is computed
    deadline = time.monotonic() + 30
    while True:
        after = served.client.get("/api/leaderboard?dataset=8gaussians&reference=no").json()
        page = served.client.get("/leaderboard?dataset=8gaussians").text
        if (len(after) > len(before) and "late-campaign" in page) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(after) == len(before) + 1 and after[0]["config_hash"] == "e" * 64 and after[0]["mean"] == 1.25
    assert "late-campaign" in page


def test_repro_badge_and_history(served: Served, home_env: Path) -> None:
    """A configuration pinned by a schedule shows its newest verdict — the CLI leaderboard's own ``repro`` cell — in
    the leaderboard and configuration pages and API, and the schedule's checks on the configuration page (runs last
    with the live test: it adds rows; the verdicts themselves are judged in test_repro.py)."""
    config = served.configs[0]
    sched = served.store.add_schedule(
        "<b>weekly</b>", served.toy_campaign, cron="@weekly", target_kind="campaign",
        pin={"specs": [{"config_hash": config, "run_key": "k", "seed": 0}]},
    )  # fmt: skip
    check = served.store.claim_check(sched, None, trigger="manual", host="test", pid=os.getpid())
    assert check is not None
    worst = {"metric": "nats", "delta": 0.12, "sigmas": 4.1}
    served.store.finish_check(
        check["id"], status="drift", reason="nats drifted", details={"worst": worst}, finished_at=check["created_at"]
    )
    from nflab.repro import config_badges

    expected = config_badges(served.store)[config]  # what `nflab leaderboard` puts in its repro column
    assert expected.startswith("✘ drift +0.12 nats (4.1σ)")
    deadline = time.monotonic() + 30
    while True:  # the first request after the change may get the previous value while the new one is computed
        api = served.client.get("/api/leaderboard?dataset=8gaussians&reference=no").json()
        api_row = next(r for r in api if r["config_hash"] == config)
        page = served.client.get("/leaderboard?dataset=8gaussians").text
        if (api_row["repro"] and "badge repro drift" in page) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert api_row["repro"] == expected
    assert f'<span class="badge repro drift">{html.escape(expected)}</span>' in page
    data = served.client.get(f"/api/configs/{config}").json()
    assert [(c["schedule"], c["status"]) for c in data["repro"]] == [("<b>weekly</b>", "drift")]
    config_page = served.client.get(f"/configs/{config}").text
    assert "&lt;b&gt;weekly&lt;/b&gt;" in config_page and "<b>weekly</b>" not in config_page
