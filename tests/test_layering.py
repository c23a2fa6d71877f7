"""The import layering of DESIGN §2, enforced: each room imports only the rooms below it.

compression ← ops ← models ← artifact ← vision_path ← exporter ← trt_plugins ← engines ← jobs ←
runtime ← serving ← cli; config and errors sit under everything. Imports inside functions count
too (they are how heavy packages stay lazy, not a way around the layering).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "earlytom"
LAYERS = ["config", "errors", "compression", "ops", "models", "artifact", "vision_path", "exporter",
          "trt_plugins", "engines", "jobs", "runtime", "serving", "cli"]  # fmt: skip
BASE = {"config", "errors"}


def room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "earlytom" or len(parts) < 2:
        return None
    return parts[1]


def earlytom_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("earlytom.")}


def test_every_room_imports_only_rooms_below_it() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        own = room(".".join(relative.parts))
        if own is None or own == "__init__":
            continue
        assert own in LAYERS, f"{relative}: room '{own}' is not in DESIGN §2's layering"
        for module in earlytom_imports(path):
            other = room(module)
            if other is None or other == own or other in BASE:
                continue
            if own in BASE or LAYERS.index(other) > LAYERS.index(own):
                violations.append(f"{relative} ({own}) imports {module} ({other})")
    assert not violations, "\n".join(violations)


def test_the_algorithm_imports_nothing_of_the_project_but_config_and_errors() -> None:
    for path in (PACKAGE / "compression").rglob("*.py"):
        rooms = {room(m) for m in earlytom_imports(path)} - {"compression", *BASE}
        assert not rooms, f"{path.name} imports {rooms}"
