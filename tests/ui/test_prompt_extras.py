"""The Generate tab's prompt tools without a browser: form values -> request fields, the counter's text, the
status line's notes (ui.prompt_extras)."""
import pytest

import studio
from studio import RequestError
from ui.prompt_extras import counter_html, status_note, variation_fields


def test_variation_fields_from_the_form():
    assert variation_fields(-1, 0) == {} and variation_fields(None, None) == {}
    assert variation_fields(77, 0.4) == {"variation_seed": 77, "variation_strength": 0.4}
    with pytest.raises(RequestError, match="variation strength given without a variation seed"):
        variation_fields(-1, 0.3)
    with pytest.raises(RequestError, match="variation seed"):
        variation_fields("abc", 0.3)


def test_counter_counts_with_the_models_tokenizer_styles_included(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    from studio.styles import save_style

    engine = studio.Studio()  # nothing loaded: mini's tokenizer files are read, no weights
    assert counter_html(engine, "mini", "a red circle").endswith(">5/32 tokens</span>")
    save_style("long", "{prompt}, " + "blue " * 30)
    over = counter_html(engine, "mini", "a red circle", ["long"])
    assert 'class="ds-tokens over"' in over and "/32 tokens: over the limit" in over
    assert "model is loaded" in counter_html(engine, "no-such-model", "x")
    assert "&lt;b&gt;" not in counter_html(engine, "mini", "<b>")  # the prompt itself is never echoed as HTML


def test_status_note_says_variation_styles_weighting_and_warnings():
    entry = {"request": {"variation_seed": 9, "variation_strength": 0.25, "prompt_weighting": True},
             "styles": {"names": ["warm", "tail"]}, "warnings": ["prompt is 90 tokens but ... reads 77"]}
    note = status_note(entry)
    assert note.startswith(" · variation seed 9 at 0.25 · styles warm, tail · weighted prompt")
    assert note.endswith("⚠ warning: prompt is 90 tokens but ... reads 77")
    assert status_note({"request": {"variation_seed": 9, "variation_strength": 0}}) == ""
