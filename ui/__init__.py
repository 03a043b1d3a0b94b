"""diffusion-studio's Gradio web app (`studio ui`). Imports point one way: ui -> studio.

    from ui.app import build_app, launch
"""
import os as _os

# No internet and no telemetry: set before gradio is imported anywhere in the process.
_os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
