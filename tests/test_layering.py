"""Dependencies point one way: adapters -> core; capture.vcon is pure; adapters never import each other."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("capture"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_an_adapter(path):
    assert not [m for m in imports(path) if m.split(".")[0] == "adapters"]


@pytest.mark.parametrize("path", modules("capture/vcon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_vcon_model_uses_only_the_stdlib_and_itself(path):
    for module in imports(path):
        top = module.split(".")[0]
        assert top in STDLIB or module.startswith(("capture.vcon", "capture.events")), module


@pytest.mark.parametrize("path", modules("capture/vcon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_vcon_model_does_no_io(path):
    tree = ast.parse(path.read_text())
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "open" not in calls
    assert not {"read_bytes", "read_text", "write_bytes", "write_text", "socket"} & attrs


@pytest.mark.parametrize("path", modules("adapters"), ids=lambda p: str(p.relative_to(ROOT)))
def test_adapters_never_import_each_other(path):
    own = path.relative_to(ROOT / "adapters").parts[0]
    for module in imports(path):
        parts = module.split(".")
        if parts[0] == "adapters" and len(parts) > 1:
            assert parts[1] == own, f"{path} imports {module}"
