import pytest

from studio import GenerationRequest, LoraRef, Outpaint, RequestError


def build(**kw):
    kw.setdefault("prompt", "a red circle")
    return GenerationRequest.build(**kw)


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"width": 250}, "width 250 is not a multiple of 8"),
        ({"height": 100}, "height 100 is not a multiple of 8"),
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"strength": 1.5, "init_image": "x.png"}, "strength"),
        ({"strength": -0.1, "init_image": "x.png"}, "strength"),
        ({"sampler": "Euler z"}, "unknown sampler"),
        ({"mask": "m.png"}, "mask given without init_image"),
        ({"outpaint": {"left": 64}}, "outpaint given without init_image"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"batch": 0}, "batch"),
        ({"bogus": 1}, "bogus: unknown field"),
        ({"strength": 0.5}, "strength given without init_image"),
    ],
)
def test_invalid_requests_name_the_problem_in_one_line(fields, needle):
    with pytest.raises(RequestError) as err:
        build(**fields)
    msg = str(err.value)
    assert needle.lower() in msg.lower()
    assert "\n" not in msg and msg.startswith("invalid request:")


def test_mode_follows_inputs():
    assert build().mode == "txt2img"
    assert build(init_image="a.png").mode == "img2img"
    assert build(init_image="a.png", mask="m.png").mode == "inpaint"
    assert build(init_image="a.png", outpaint={"left": 64}).mode == "outpaint"


def test_sampler_names_are_canonicalised():
    assert build(sampler="euler_a").sampler == "Euler a"
    assert build(sampler="dpm++ 2m karras").sampler == "DPM++ 2M Karras"


def test_outpaint_margins_must_be_multiples_of_8_and_nonzero():
    assert Outpaint.parse("0,8,16,0").as_tuple() == (0, 8, 16, 0)
    with pytest.raises(ValueError, match="multiple of 8"):
        Outpaint(left=5)
    with pytest.raises(ValueError, match="at least one side"):
        Outpaint()
    with pytest.raises(RequestError, match="4 numbers"):
        Outpaint.parse("8,8")


def test_lora_cli_form():
    assert LoraRef.parse("style.safetensors:0.6") == LoraRef(path="style.safetensors", weight=0.6)
    assert LoraRef.parse("style.safetensors") == LoraRef(path="style.safetensors", weight=1.0)
    assert LoraRef.parse("C:\\loras\\x.safetensors").weight == 1.0


def test_request_round_trips_through_json():
    req = build(seed=3, loras=[{"path": "a.safetensors", "weight": 0.5}], init_image="a.png",
                outpaint={"right": 64})
    again = GenerationRequest.model_validate_json(req.model_dump_json())
    assert again == req


def test_control_units_and_styles_are_bounded_in_one_line():
    from studio.schema import MAX_CONTROLS, MAX_STYLES

    unit = {"image": "a.png", "preprocessor": "canny"}
    GenerationRequest.build(prompt="a", controls=[unit] * MAX_CONTROLS)
    with pytest.raises(RequestError, match=r"^invalid request: controls: .*at most 8"):
        GenerationRequest.build(prompt="a", controls=[unit] * (MAX_CONTROLS + 1))
    with pytest.raises(RequestError, match=r"^invalid request: styles: .*at most 16"):
        GenerationRequest.build(prompt="a", styles=["x"] * (MAX_STYLES + 1))
