"""Where the studio keeps per-user state (signing keys, ledger, user model registry, history)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "DIFFUSION_STUDIO_HOME"


def config_dir() -> Path:
    """The user config dir; `DIFFUSION_STUDIO_HOME` overrides it (tests and render farms point it elsewhere)."""
    env = os.environ.get(ENV_HOME)
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_config_dir

        path = Path(user_config_dir("diffusion-studio", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
