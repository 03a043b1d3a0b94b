"""Fixtures for the web app: a studio with a small model in a throw-away home, the app served on a free
loopback port in a thread, and Debian's chromium driven by Playwright (sync API)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ui_testutil import CHROMIUM, CHROMIUM_ARGS, SIZE, STEPS, fast_tiny_sd, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def test_model(tmp_path_factory, _studio_home):
    """(registry, model name): the bundled `mini` (the default), or with STUDIO_UI_TEST_MODEL=tiny or without
    mini's weights a tiny random SD pipeline registered in the test home."""
    from studio import Registry

    registry = Registry(user_file=Path(_studio_home) / "models.toml")
    wanted = os.environ.get("STUDIO_UI_TEST_MODEL", "mini")
    if wanted == "mini" and registry.entries["mini"].available_locally():
        return registry, "mini"
    folder = tmp_path_factory.mktemp("ui-model") / "tiny-ui"
    fast_tiny_sd(folder)
    registry.add("tiny-ui", str(folder), "sd1", width=SIZE, height=SIZE, steps=STEPS, guidance=5.0,
                 sampler="Euler")
    return registry, "tiny-ui"


@pytest.fixture(scope="session")
def test_studio(test_model):
    import studio

    registry, _ = test_model
    return studio.Studio(registry, quiet=True)


@pytest.fixture(scope="session")
def ui_server(test_studio, test_model, tmp_path_factory):
    """The app on a free loopback port; yields (base url, handlers, model name)."""
    from ui.app import build_app, launch

    out = tmp_path_factory.mktemp("ui-out")
    demo = build_app(test_studio, out)
    port = free_port()
    launch(demo=demo, host="127.0.0.1", port=port, block=False, quiet=True, max_file_size="5mb")
    url = f"http://127.0.0.1:{port}"
    yield url, demo.ui_handlers, test_model[1]
    demo.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, ui_server):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    external = []
    pg.on("request", lambda req: external.append(req.url)
          if not req.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    pg.external_requests = external  # the app must work offline: nothing is fetched from elsewhere
    pg.goto(ui_server[0])
    pg.wait_for_selector("#g-go", timeout=60_000)
    yield pg
    ctx.close()


@pytest.fixture()
def registry(tmp_path):
    """A registry in `tmp_path` with one model, `fake` (a folder the FakeStudio never loads)."""
    from studio import Registry

    reg = Registry(user_file=tmp_path / "models.toml")
    model_dir = tmp_path / "fake-model"
    model_dir.mkdir()
    (model_dir / "model_index.json").write_text("{}")
    reg.add("fake", str(model_dir), "sd1", width=64, height=64, steps=2)
    return reg


@pytest.fixture(scope="session", autouse=True)
def _patient_launch():
    """Gradio's launch() gives up on the server when its own HEAD / takes over 3 s, which it does on a machine
    busy with training: wait up to a minute instead (session-scoped and autouse, so it is in place before any
    served app of the UI tests is launched)."""
    import httpx
    from gradio import networking

    def url_ok(url: str) -> bool:
        try:
            return httpx.head(url, timeout=60, verify=False).status_code in (200, 401, 301, 302, 303, 307, 308)
        except httpx.HTTPError:
            return False

    mp = pytest.MonkeyPatch()
    mp.setattr(networking, "url_ok", url_ok)
    yield
    mp.undo()
