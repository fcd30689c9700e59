"""Dependencies point one way: each room imports only the rooms above it in LAYERS, at module level.

(A function may import a lower room lazily where the layout says so: chat.actions._enqueue
is the one place the web side names the generation tasks.)
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["live", "catalog", "accounts", "quotas", "chat", "api", "generation"]


def module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_each_room_imports_only_the_rooms_above_it():
    wrong = []
    for depth, room in enumerate(LAYERS):
        for path in (ROOT / room).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for imported in module_level_imports(path) & set(LAYERS):
                if LAYERS.index(imported) > depth:
                    wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def test_the_simulator_is_not_part_of_the_product():
    for room in LAYERS:
        for path in (ROOT / room).rglob("*.py"):
            assert "simulator" not in module_level_imports(path), path
