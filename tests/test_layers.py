"""The house rules of STYLE.md: each lclib module sits on a floor and imports only its own floor
or the ones below; no import cycles; the bottom two floors import without torch or numpy."""

import ast
from pathlib import Path

LCLIB = Path(__file__).resolve().parents[1] / "lclib"

# Bottom to top. A new top-level module or package of lclib goes on one of these floors.
FLOORS = [
    ("foundation", {"units", "hardware", "models", "stats", "static", "svg"}),
    ("cost model", {"__init__", "cost", "derive", "kv_wall", "context_parallel", "amortize",
                    "scheduler", "prefix", "recipe", "compression", "measurements"}),
    # rag's costs are torch-free, but its retriever runs TinyLM (imported inside functions)
    ("torch", {"rope", "fp8", "fp8_cache", "ring", "tinylm", "torch_env", "triton_decode",
               "pretrained", "engine", "rag"}),
    ("bench", {"bench"}),
    ("book", {"explorer", "picture", "pictures", "quiz", "plots", "explorers", "page", "grading",
              "execute"}),
]
TORCH_FREE_FLOORS = 2
HEAVY = {"torch", "numpy"}


def module_name(path: Path, root: Path = LCLIB) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = LCLIB) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in `path`, relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[:len(package) - node.level + 1]) if node.level else "")
            module = ".".join(p for p in (base, node.module) if p)
            # `from . import x` may name a submodule x
            names = [f"{module}.{a.name}" for a in node.names] if node.module is None else [module]
        else:
            continue
        found += [(n, id(node) in top) for n in names]
    return found


def floor_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    for i, (_, members) in enumerate(FLOORS):
        if part in members:
            return i
    raise AssertionError(f"lclib.{part} is on no floor: add it to FLOORS in tests/test_layers.py "
                         "and to the placement table of STYLE.md")


SOURCES = sorted(LCLIB.rglob("*.py"))


def upward_imports(paths: list[Path], root: Path = LCLIB) -> list[str]:
    """Each import of a module on a higher floor than the importing one."""
    wrong = []
    for path in paths:
        me = module_name(path, root)
        for target, _ in imports(path, root):
            if target.startswith("lclib.") and floor_of(target) > floor_of(me):
                wrong.append(f"{me} ({FLOORS[floor_of(me)][0]}) imports {target} "
                             f"({FLOORS[floor_of(target)][0]})")
    return wrong


def test_every_module_is_on_a_floor():
    assert len(SOURCES) > 20, f"found only {len(SOURCES)} modules under {LCLIB}"
    for path in SOURCES:
        floor_of(module_name(path))


def test_no_module_imports_a_floor_above_it():
    wrong = upward_imports(SOURCES)
    assert not wrong, "move the code down, or let the higher module call the lower one:\n" + \
        "\n".join(wrong)


def test_the_checker_catches_an_upward_import(tmp_path):
    fake = tmp_path / "lclib" / "cost.py"
    fake.parent.mkdir()
    fake.write_text("import math\n\ndef f():\n    from .bench import core\n")
    assert upward_imports([fake], tmp_path / "lclib") == [
        "lclib.cost (cost model) imports lclib.bench (bench)"]


def test_the_bottom_floors_import_without_torch_or_numpy():
    wrong = [f"{module_name(p)} imports {t}" for p in SOURCES
             if floor_of(module_name(p)) < TORCH_FREE_FLOORS
             for t, top_level in imports(p) if top_level and t.split(".")[0] in HEAVY]
    assert not wrong, "import it inside the function that needs it:\n" + "\n".join(wrong)


def test_no_import_cycles():
    known = {module_name(p) for p in SOURCES}
    graph = {module_name(p): {t for t, _ in imports(p) if t in known} for p in SOURCES}
    for name in graph:  # a package imports what its __init__ imports; ignore self-edges
        graph[name].discard(name)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
