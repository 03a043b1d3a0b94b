"""Helpers for the web app tests (a module of its own: `conftest` is a name every test folder uses)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

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


def fast_tiny_sd(directory: Path) -> Path:
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


def pick(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def set_slider(page, elem_id: str, value: int, timeout: float = 30.0) -> None:
    """Type a value into a slider's number box and wait until the slider itself shows it. On a loaded machine
    the box can be typed into while an accordion is still mounting, and the value is then lost; retry."""
    box, track = page.locator(f"#{elem_id} input[type=number]"), page.locator(f"#{elem_id} input[type=range]")
    end = time.time() + timeout
    while True:
        box.fill(str(value))
        box.press("Enter")
        box.press("Tab")
        try:
            wait_until(lambda: track.input_value() == str(value), timeout=3)
            return
        except TimeoutError:
            if time.time() > end:
                raise TimeoutError(f"slider {elem_id} never showed {value} (it shows {track.input_value()})")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


VIDEO_SIZE, VIDEO_FRAMES, VIDEO_STEPS = 64, 8, 2  # a tiny clip renders in seconds on a CPU


def add_tiny_video_model(registry, directory: Path, name: str = "tiny-video", kind: str = "animatediff") -> str:
    """Register a tiny random video pipeline (`animatediff`: txt2vid/vid2vid, `svd`: img2vid) under `name`,
    with defaults that render a 64x64, 8-frame clip in 2 steps. Built once per folder."""
    from pipelines import tiny_video

    build = {"animatediff": tiny_video.tiny_animatediff, "svd": tiny_video.tiny_svd}[kind]
    if not (Path(directory) / "model_index.json").exists():
        tiny_video.save_tiny_video(build(), directory)
    registry.add(name, str(directory), None, width=VIDEO_SIZE, height=VIDEO_SIZE, steps=VIDEO_STEPS,
                 guidance=5.0, frames=VIDEO_FRAMES, fps=8)
    return name


MUSIC_SECONDS = 1.0  # a tiny MusicGen renders a 1 s clip in a second or two on a CPU


def add_tiny_music_model(registry, directory: Path, name: str = "tiny-music", melody: bool = False) -> str:
    """Put a tiny random MusicGen (`melody`: MusicGen-Melody, which also does audio2audio) in `registry` under
    `name`, defaulting to 1 s clips. Built once per folder. The entry is added in memory only:
    `Registry.add` takes diffusers folders and .safetensors files, and a MusicGen folder is a transformers one
    (no model_index.json)."""
    from pipelines.tiny_audio import save_tiny_audio, tiny_musicgen, tiny_musicgen_melody
    from studio.registry import ModelEntry

    if not (Path(directory) / "config.json").exists():
        save_tiny_audio((tiny_musicgen_melody if melody else tiny_musicgen)(), directory)
    registry.entries[name] = ModelEntry(name=name, source=str(Path(directory).resolve()), family="musicgen",
                                        guidance=3.0, duration=MUSIC_SECONDS, origin="test")
    return name


def generate_and_wait(page, handlers):
    """Click Generate and wait until the sealed image is in the history and the status says so; its entry."""
    before = len(handlers.history_entries())
    page.locator("#g-go").click()
    wait_until(lambda: len(handlers.history_entries()) > before, timeout=240)
    wait_until(lambda: "sealed image" in page.locator("#g-status").inner_text(), timeout=30)
    return handlers.history_entries()[0]
