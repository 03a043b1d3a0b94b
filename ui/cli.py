"""`studio ui`: plugged into the `studio` CLI through the `diffusion_studio.commands` entry point."""
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui_command(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
        port: int = typer.Option(7860, "--port"),
        auth: Optional[str] = typer.Option(None, "--auth", help="USER:PASS required to open the app."),
        out: Optional[Path] = typer.Option(None, "-o", "--out",
                                           help="Output folder (default: ./studio-outputs or "
                                                "$DIFFUSION_STUDIO_UI_OUT); the only folder the server serves."),
        max_file_size: str = typer.Option("50mb", "--max-file-size", help="Upload size limit, e.g. 20mb."),
        models_dir: Optional[Path] = typer.Option(None, "--models-dir",
                                                  help="The only folder the Models tab may add models from "
                                                       "(default: $DIFFUSION_STUDIO_MODELS_DIR or models/ in "
                                                       "the config dir)."),
        loras_dir: Optional[Path] = typer.Option(None, "--loras-dir",
                                                 help="The only folder the LoRA picker lists and loads LoRAs from "
                                                      "(default: $DIFFUSION_STUDIO_LORAS_DIR or loras/ in the "
                                                      "config dir)."),
    ) -> None:
        """Start the web app (Gradio). Every output is sealed; the server serves only its output folder."""
        from ui.app import launch, parse_auth

        try:
            credentials = parse_auth(auth)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"diffusion-studio UI on http://{host}:{port}  (outputs: {out or 'studio-outputs'})")
        launch(out_dir=out, host=host, port=port, auth=credentials, max_file_size=max_file_size, block=True,
               models_dir=models_dir, loras_dir=loras_dir)
