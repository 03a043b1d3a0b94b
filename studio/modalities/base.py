"""The contract every modality module fills in."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

StepFn = Callable[[int, int, Any], None]


def family_rules(families: dict, name: str, medium: str):
    """The rules of model family `name` from a pipelines table (`VIDEO_FAMILIES`, `AUDIO_FAMILIES`), or a
    one-line RequestError naming the families that make `medium`."""
    from ..errors import RequestError

    spec = families.get(name)
    if spec is None:
        raise RequestError(f"model family {name!r} does not make {medium} ({medium} families: "
                           f"{', '.join(families)})")
    return spec


@dataclass
class Inputs:
    """The request's source media, read and checked before any model loads. `parent` is the source's original
    bytes: it becomes the output's C2PA ingredient."""

    image: Any = None  # PIL init image
    mask: Any = None  # PIL mask
    frames: Optional[list] = None  # PIL frames of an init video
    fps: Optional[float] = None  # the init video's rate
    audio: Optional[tuple] = None  # (samples float32, sample rate) of an init audio clip
    parent: Optional[bytes] = None
    parent_format: Optional[str] = None
    hashes: dict = field(default_factory=dict)  # input name -> sha256 of its bytes
    size: Optional[tuple[int, int]] = None  # the source's (width, height), when a default size follows it
    upscale: Optional[str] = None  # hires refine pass: "latent" starts from the init's interpolated latents
    controls: list = field(default_factory=list)  # each ControlNet unit's source image (studio.inputs.SourceImage)
    control_maps: list = field(default_factory=list)  # studio.control.ControlMap, made by the run
    guidance: Any = None  # pipelines.reward_guidance.GuidanceSpec (reward_guidance), made by the engine


@dataclass
class SealedMedia:
    """What `seal` hands back to the writer: the sealed bytes plus what the output record says about them."""

    data: bytes
    manifest: dict
    watermark_id: Optional[str]
    watermark_status: str
    pixel_sha256: str  # of the decoded delivered media
    generated_sha256: str  # of the media before the seal
    width: Optional[int] = None
    height: Optional[int] = None
    frames: Optional[int] = None
    fps: Optional[float] = None
    duration_s: Optional[float] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None


class MediaModality(ABC):
    name: str
    extensions: dict[str, str]  # output format -> file extension
    suffixes: dict[str, str]  # file suffix a user may write -> output format
    noun: str  # "image", "clip": what one output is called in messages
    folder: str  # where a front door files this modality's outputs ("images", "clips", "music")
    working: str = "denoising"  # what a progress line says the model is doing step by step
    sized = True  # has a width and height (images, clips); audio has a duration instead
    # the modalities of models, besides this one's own, that run its requests (an image instruction editor
    # edits a clip frame by frame: `instruct_video`)
    runs_on: tuple[str, ...] = ()

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.extensions)

    @abstractmethod
    def read_inputs(self, request, *, init_value=None, mask_value=None, video_value=None, audio_value=None) -> Inputs:
        """Read and bound the request's source media (one-line RequestError on anything wrong)."""

    def decide(self, request, family: Optional[str], base_source: Optional[str] = None):
        """The request with what the model's family (and its folder, `base_source`) decides (e.g. an image
        instruct edit, which ControlNet); as is by default."""
        return request

    def adopts(self, request, family: Optional[str] = None) -> bool:
        """For a capability (`CAPABILITIES`): whether a model of `family` runs `request`, of this module's
        modality in another mode, as this capability (an instruction editor given a clip edits it, as it edits an
        image it is given); `family` None: whether some model of a medium in `runs_on` could. No by default."""
        return False

    def adopt(self, request):
        """`request` (one `adopts` takes) in this capability's mode."""
        raise NotImplementedError(f"{type(self).__name__} adopts no requests")

    def check(self, request, entry, source, inputs: Inputs, *, scale: int) -> None:
        """Checks that need the model's family (from disk, before loading): frames, sizes, modes."""

    def sampler_family(self, family: Optional[str]) -> Optional[str]:
        """The `schedulers` family whose catalog samplers drive a model of `family`; None when the model runs
        only its own scheduler (the pipeline then judges a named sampler)."""
        return family

    def pixels(self, request, width: int, height: int) -> int:
        """What one request costs against the device's pixel budget."""
        return width * height * request.batch

    @abstractmethod
    def resolve(self, fields: dict, request, entry, family: str, inputs: Inputs) -> None:
        """Fill this modality's defaults into the request `fields` (in place), so the record replays."""

    @abstractmethod
    def run(self, model, request, inputs: Inputs, seeds: Sequence[int], callback: Optional[StepFn]) -> list:
        """Generate one output (an image, a clip) per seed."""

    @abstractmethod
    def seal(self, media, *, fmt: str, params: dict, claim_generator: str, parent: Optional[bytes],
             parent_format: Optional[str], png_text: Optional[dict], config, watermark_id: str) -> SealedMedia:
        """Watermark, encode and sign one output (the safety layer does the work)."""

    @abstractmethod
    def decode(self, data: bytes):
        """The delivered output decoded from its sealed bytes (a PIL image, a list of frames)."""
