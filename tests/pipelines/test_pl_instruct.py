"""Instruction editing on tiny random-weight editors built in code: InstructPix2Pix (SD1.5, SDXL), Flux Kontext."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import pipelines
from pipelines.instruct import INSTRUCT_FAMILIES, run_instruct
from pipelines.loading import folder_family
from pipelines.tiny import save_tiny
from pipelines.tiny_control import tiny_ip2p, tiny_ip2p_sdxl, tiny_kontext

BUILDERS = {"ip2p": tiny_ip2p, "ip2p-sdxl": tiny_ip2p_sdxl, "flux-kontext": tiny_kontext}


def _image():
    im = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(im).ellipse((4, 4, 20, 20), fill="red")
    return im


@pytest.fixture(scope="module", params=list(BUILDERS))
def editor(request):
    return request.param, pipelines.from_pipeline(BUILDERS[request.param]())


def test_family_detected_and_only_instruct_mode_supported(editor):
    family, model = editor
    assert model.family == family
    assert model.supports("instruct") and not model.supports("txt2img") and not model.supports("img2img")
    assert model.pipeline_for("instruct") is model.pipe


def test_edit_is_seeded_one_image_per_seed_and_reports_steps(editor):
    family, model = editor
    steps = []
    kw = dict(prompt="make the circle blue", init_image=_image(), width=32, height=32, steps=2, guidance=4.0)
    a, b = run_instruct(model, seeds=[1, 2], callback=lambda s, t, lat: steps.append((s, t)), **kw)
    again = run_instruct(model, seeds=[1], **kw)[0]
    assert a.size == (32, 32) and steps[-1][0] == steps[-1][1] in (2, 4)  # one call of 2, or 2 calls of 2 steps
    assert [t for _, t in steps] == [steps[-1][1]] * len(steps)
    assert np.array_equal(np.asarray(a), np.asarray(again))
    assert not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("family", ["ip2p", "ip2p-sdxl"])
def test_image_guidance_changes_the_edit(family):
    model = pipelines.from_pipeline(BUILDERS[family]())
    kw = dict(prompt="make it blue", init_image=_image(), width=32, height=32, steps=2, guidance=4.0, seeds=[3])
    low = np.asarray(run_instruct(model, image_guidance=1.0, **kw)[0]).astype(int)
    high = np.asarray(run_instruct(model, image_guidance=3.0, **kw)[0]).astype(int)
    assert np.abs(low - high).mean() > 0.5


def test_image_guidance_refused_where_the_model_has_none():
    model = pipelines.from_pipeline(tiny_kontext())
    with pytest.raises(ValueError, match="FLUX.1 Kontext has no image guidance"):
        run_instruct(model, prompt="x", init_image=_image(), width=32, height=32, steps=1, guidance=2.5,
                     image_guidance=1.5)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_saved_folder_is_detected_as_its_family(family, tmp_path):
    folder = save_tiny(BUILDERS[family](), tmp_path / family)
    assert folder_family(folder) == family
    assert pipelines.inspect_source(folder).family == family


def test_family_tables_agree_across_layers():
    import pipelines.controlnet as cn
    from studio import control
    from studio.registry import IMAGE_FAMILIES, builtin_entries

    assert set(control.INSTRUCT_FAMILIES) == set(INSTRUCT_FAMILIES) <= set(IMAGE_FAMILIES)
    assert control.INSTRUCT_BASE == {f.name: f.base for f in INSTRUCT_FAMILIES.values()}
    assert control.IMAGE_GUIDANCE_FAMILIES == {f.name: f.image_guidance for f in INSTRUCT_FAMILIES.values()
                                               if f.image_guidance is not None}
    assert set(control.CONTROL_FAMILIES) == set(cn.CONTROL_PIPELINES)
    entries = builtin_entries()
    assert {entries[n].family for n in control.EDIT_MODEL_FOR_FAMILY.values()} <= set(INSTRUCT_FAMILIES)
    assert {e.source for e in entries.values() if e.family in INSTRUCT_FAMILIES} == {
        "timbrooks/instruct-pix2pix", "diffusers/sdxl-instructpix2pix-768", "black-forest-labs/FLUX.1-Kontext-dev",
        "Qwen/Qwen-Image-Edit", entries["mini-instruct"].source}
    assert all(fam in cn.CONTROL_PIPELINES for _, fam, _ in control.CONTROLNETS.values())
    from pipelines.control_preprocess import ANNOTATORS_ENV

    assert control.ANNOTATORS_ENV == ANNOTATORS_ENV


def test_qwen_edit_call_uses_only_arguments_the_pipeline_takes():
    """No tiny Qwen2.5-VL encoder + processor can be built offline here: check the call against diffusers'
    signature instead (true CFG: the guidance goes to true_cfg_scale with a negative prompt)."""
    import inspect
    from types import SimpleNamespace

    from diffusers import QwenImageEditPipeline

    seen = {}

    class Stub:
        def __call__(self, **kw):
            seen.update(kw)
            return SimpleNamespace(images=[_image()])

    Stub.__call__.__signature__ = inspect.signature(QwenImageEditPipeline.__call__)  # what run_instruct inspects
    model = SimpleNamespace(family="qwen-edit", pipe=Stub(), base_scheduler_config={})
    run_instruct(model, prompt="make it blue", init_image=_image(), width=32, height=32, steps=2, guidance=4.0,
                 seeds=[0], callback=lambda *a: None)
    accepted = set(inspect.signature(QwenImageEditPipeline.__call__).parameters)
    assert set(seen) <= accepted and "callback_on_step_end" in seen
    assert seen["true_cfg_scale"] == 4.0 and seen["negative_prompt"] == " " and "guidance_scale" not in seen
