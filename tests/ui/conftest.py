"""Fixtures for the web app: a studio with a small model in a throw-away home, the app served on a free
loopback port in a thread, and Debian's chromium driven by Playwright (sync API)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM = os.environ.get("STUDIO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
SIZE = 256  # the watermark needs >= 256 px
STEPS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast_tiny_sd(directory: Path) -> Path:
    """A tiny random SD1 pipeline whose VAE downsamples 8x like the real one (pipelines.tiny's VAE downsamples
    2x, so 256 px would denoise 128x128 latents: seconds per step on a shared CPU)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    import torch

    from pipelines.tiny import save_tiny, tiny_sd

    base = tiny_sd(seed=0)
    torch.manual_seed(1)
    vae = AutoencoderKL(block_out_channels=[8, 8, 8, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        latent_channels=4, norm_num_groups=2, sample_size=SIZE).eval()
    pipe = StableDiffusionPipeline(unet=base.unet, vae=vae, text_encoder=base.text_encoder,
                                   tokenizer=base.tokenizer, scheduler=base.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False, image_encoder=None)
    return save_tiny(pipe, directory)


@pytest.fixture(scope="session")
def test_model(tmp_path_factory, _studio_home):
    """(registry, model name): the bundled `mini` when its weights are there (STUDIO_UI_TEST_MODEL=mini), else a
    tiny random SD pipeline registered in the test home."""
    from studio import Registry

    registry = Registry(user_file=Path(_studio_home) / "models.toml")
    wanted = os.environ.get("STUDIO_UI_TEST_MODEL", "tiny")
    if wanted == "mini" and registry.entries["mini"].available_locally():
        return registry, "mini"
    folder = tmp_path_factory.mktemp("ui-model") / "tiny-ui"
    _fast_tiny_sd(folder)
    registry.add("tiny-ui", str(folder), "sd1", width=SIZE, height=SIZE, steps=STEPS, guidance=5.0,
                 sampler="Euler")
    return registry, "tiny-ui"


@pytest.fixture(scope="session")
def test_studio(test_model):
    import studio

    registry, _ = test_model
    return studio.Studio(registry)


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
    pg.goto(ui_server[0])
    pg.wait_for_selector("#g-go", timeout=60_000)
    yield pg
    ctx.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_until(fn, timeout=60.0, interval=0.25):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("condition not met")
