"""Imports point one way: ui -> studio -> pipelines -> schedulers, fused_ops; studio -> safety.
A package importing one it may not (even lazily, inside a function) fails here."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"studio", "pipelines", "schedulers", "fused_ops", "ui", "safety"}
ALLOWED = {
    "ui": {"ui", "studio"},
    "studio": {"studio", "pipelines", "schedulers", "safety", "fused_ops"},
    "pipelines": {"pipelines", "schedulers", "fused_ops"},
    "schedulers": {"schedulers"},
    "fused_ops": {"fused_ops"},
    "safety": {"safety"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = imported_packages(path) - ALLOWED[package]
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"


def test_checker_catches_a_violation(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import studio.engine\n    from ui import app\n")
    assert imported_packages(f) == {"studio", "ui"}
