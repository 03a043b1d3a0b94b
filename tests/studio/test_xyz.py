"""X/Y/Z plot on a tiny random-weight SD model: every cell is a sealed output that replays on its own, the grid
is sealed with the cells as componentOf ingredients and labelled, bad plots fail in one line before any load,
and the CLI writes grid + cells."""
from __future__ import annotations

import numpy as np
import pytest

import studio
from studio import GenerationRequest, RequestError
from studio.cli import main
from studio.xyz import MAX_CELLS, parse_axis, plan, plot

SIZE = 256  # the image watermark needs >= 256 px


def base(model, **kw):
    return GenerationRequest.build(**{"prompt": "a red circle", "model": model, "width": SIZE, "height": SIZE,
                                      "steps": 2, **kw})


def test_axes_parse_and_plan_in_order(tmp_path):
    assert parse_axis("seed=1-3").values == (1, 2, 3)
    assert parse_axis("cfg=3, 7.5").name == "guidance" and parse_axis("cfg=3,7.5").values == (3.0, 7.5)
    assert parse_axis("sampler=euler a,DPM++ 2M Karras").values == ("Euler a", "DPM++ 2M Karras")
    assert parse_axis("lora:style=0,1").target == "style"
    req = GenerationRequest.build(prompt="a red circle on grey", seed=5, loras=[{"path": "/l/style.safetensors"}])
    axes, cells = plan(req, ["prompt=red,blue", "lora=0,0.5", "steps=2,3"])
    assert len(cells) == 8
    assert [c.prompt for c in cells[:2]] == ["a red circle on grey", "a blue circle on grey"]  # x fastest
    assert [c.loras[0].weight for c in cells[:4]] == [0.0, 0.0, 0.5, 0.5]
    assert [c.steps for c in (cells[0], cells[4])] == [2, 3] and {c.seed for c in cells} == {5}
    # no seed and no seed axis: one random seed shared by every cell
    _, cells = plan(GenerationRequest.build(prompt="x"), ["cfg=1,2"])
    assert cells[0].seed is not None and cells[0].seed == cells[1].seed


@pytest.mark.parametrize("axes, needle", [
    ([], "at least one axis"),
    (["seed=1", "steps=1", "cfg=1", "sampler=Euler"], "at most 3 axes"),
    (["seed=1-9", "steps=1-8"], f"72 cells; at most {MAX_CELLS}"),
    (["seed=1,2", "seed=3"], "given twice"),
    (["colour=red"], "NAME=V1,V2"),
    (["steps=a,b"], "whole numbers"),
    (["sampler=Nope"], "unknown sampler"),
    (["lora=0,1"], "add one"),
    (["prompt=green,blue"], "does not occur in the prompt"),
])
def test_bad_plots_fail_in_one_line_before_any_load(axes, needle, no_load):
    with pytest.raises(RequestError, match=needle) as info:
        plan(GenerationRequest.build(prompt="a red circle"), axes)
    assert "\n" not in str(info.value)


def test_plot_cells_sealed_grid_sealed_with_cells_as_ingredients(engine, tiny_model, tmp_path):
    from PIL import Image

    result = plot(engine, base(tiny_model, seed=3), ["seed=3,4", "guidance=2,6"], out=tmp_path / "grid.png")
    assert result.shape == (2, 2, 1) and len(result.cells) == 4
    cells_dir = tmp_path / "grid-cells"
    assert sorted(p.name for p in cells_dir.iterdir()) == ["x0-y0-z0.png", "x0-y1-z0.png", "x1-y0-z0.png",
                                                          "x1-y1-z0.png"]
    for cell in result.cells:
        report = studio.verify(cell.path)
        assert report.state in ("trusted", "valid") and report.watermark_found, report.render()
    seeds_cfg = [(c.record.seed, r.guidance) for c, r in zip(result.cells, result.requests)]
    assert seeds_cfg == [(3, 2.0), (4, 2.0), (3, 6.0), (4, 6.0)]
    # a cell is an ordinary output: its request replays to the same pixels on its own
    again = engine.generate(result.requests[3]).outputs[0]
    assert again.record.pixel_sha256 == result.cells[3].record.pixel_sha256
    # the grid: sealed, every cell an ingredient, and it shows the cells under their labels
    report = studio.verify(tmp_path / "grid.png")
    assert report.state in ("trusted", "valid") and report.watermark_found, report.render()
    ingredients = report.manifest["ingredients"]
    assert len(ingredients) == 4 and all(i["relationship"] == "componentOf" and i["has_manifest"]
                                         for i in ingredients)
    xyz = report.manifest["params"]["xyz"]
    assert [a["name"] for a in xyz["axes"]] == ["seed", "guidance"]
    assert [c["sha256"] for c in xyz["cells"]] == [c.record.sha256 for c in result.cells]
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width > 2 * SIZE and grid.height > 2 * SIZE  # cells plus label margins
        g = np.asarray(grid.convert("RGB")).astype(int)
    corner = g[-SIZE:, -SIZE:]
    own, other = (np.abs(corner - np.asarray(result.cells[i].image.convert("RGB")).astype(int)).mean()
                  for i in (3, 0))
    # the bottom-right cell sits in the bottom-right corner (the grid's own watermark moves pixels a little)
    assert own < 8 and own < other / 2, (own, other)
    assert (g[:20, -SIZE:] < 100).any()  # an X label (dark text) above the last column


def test_cli_xyz_writes_grid_and_cells(tiny_model, tmp_path, capsys):
    out = tmp_path / "cli-grid.png"
    code = main(["xyz", "a red circle", "--model", tiny_model, "-W", str(SIZE), "-H", str(SIZE), "--steps", "2",
                 "--seed", "1", "--x", "steps=1,2", "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert out.is_file() and len(list((tmp_path / "cli-grid-cells").iterdir())) == 2
    assert "grid 2x1" in printed.out and "2 cells as C2PA ingredients" in printed.out
    assert studio.verify(out).state in ("trusted", "valid")
    # an existing grid is not replaced without --overwrite; a bad axis is one line
    assert main(["xyz", "a", "--model", tiny_model, "--x", "steps=1,2", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["xyz", "a", "--x", "seed=1-100", "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "at most 64" in err and err.count("\n") == 1
