"""Checkpoint loading and image / video / music generation over diffusers (imports diffusers/transformers/schedulers only)."""
from .audio import (
    AUDIO_FAMILIES,
    AUDIO_MODES,
    DEFAULT_AUDIO2AUDIO_STRENGTH,
    AudioFamily,
    MusicGenPipeline,
    audio_family_for,
    audio_pipeline_for,
    check_audio_request,
    run_audio,
)
from .device import pick_device_dtype, resolve_device, resolve_dtype
from .image import outpaint_canvas, run_image
from .instruct import INSTRUCT_FAMILIES, InstructFamily, run_instruct, run_instruct_frames
from .loading import (
    FAMILIES,
    MODES,
    TOKENIZERS,
    LoadedModel,
    MissingTokenizer,
    ModelLoadError,
    ModelNotAvailable,
    SourceInfo,
    UnsafeCheckpoint,
    content_hash,
    detect_single_file,
    file_sha256,
    find_tokenizer,
    from_pipeline,
    inspect_source,
    load_model,
)
from .lora import apply_loras, check_lora_file, clear_loras, loras_applied
from .memory import apply_memory_options
from .preview import latent_preview
from .video import (
    DEFAULT_VID2VID_STRENGTH,
    VIDEO_FAMILIES,
    VIDEO_MODES,
    VideoFamily,
    check_video_request,
    run_video,
    video_family_for,
    video_pipeline_for,
)

__all__ = [
    "FAMILIES", "MODES", "TOKENIZERS", "LoadedModel", "MissingTokenizer", "ModelLoadError", "ModelNotAvailable",
    "SourceInfo", "UnsafeCheckpoint", "apply_loras", "apply_memory_options", "check_lora_file", "clear_loras",
    "content_hash", "detect_single_file", "file_sha256", "find_tokenizer", "from_pipeline", "inspect_source",
    "latent_preview", "load_model", "loras_applied", "outpaint_canvas", "pick_device_dtype", "resolve_device",
    "resolve_dtype", "run_image",
    "DEFAULT_VID2VID_STRENGTH", "VIDEO_FAMILIES", "VIDEO_MODES", "VideoFamily", "check_video_request", "run_video",
    "video_family_for", "video_pipeline_for",
    "AUDIO_FAMILIES", "AUDIO_MODES", "DEFAULT_AUDIO2AUDIO_STRENGTH", "AudioFamily", "MusicGenPipeline",
    "audio_family_for", "audio_pipeline_for", "check_audio_request", "run_audio",
    "INSTRUCT_FAMILIES", "InstructFamily", "run_instruct", "run_instruct_frames",
]
