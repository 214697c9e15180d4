"""The package's layering (gantrain.LAYERS): every import in gantrain/, those inside functions included, goes to the
importer's own layer or a lower one, and no two parts of the package import each other."""

import ast
from pathlib import Path

import gantrain

PACKAGE = Path(gantrain.__file__).parent
LAYER = {part: i for i, layer in enumerate(gantrain.LAYERS) for part in layer}


def part_of(module: str) -> str | None:
    """The part of gantrain a dotted module name belongs to (`gantrain.training.trainer` -> `training`)."""
    names = module.split(".")
    return names[1] if names[0] == "gantrain" and len(names) > 1 and names[1] in LAYER else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth; `from gantrain import x` counts as gantrain.x."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def part_graph() -> dict[tuple[str, str], list[str]]:
    """(importer part, imported part) -> where: every import between two different parts of the package."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        importer = relative.parts[0].removesuffix(".py")
        if importer not in LAYER:  # __init__.py and __main__.py of the package itself sit above everything
            continue
        for line, module in imports_of(path):
            imported = part_of(module)
            if imported and imported != importer:
                edges.setdefault((importer, imported), []).append(f"{relative}:{line} imports {module}")
    return edges


def test_every_part_of_the_package_has_a_layer():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name not in ("__init__.py", "__main__.py")}
    parts.discard("configs")  # the YAML config groups, installed as gantrain.configs: no code
    assert parts == set(LAYER), f"parts without a layer: {parts - set(LAYER)}; layers without a part: {set(LAYER) - parts}"


def test_no_import_runs_up_the_layers():
    upward = [where for (importer, imported), wheres in part_graph().items() if LAYER[imported] > LAYER[importer]
              for where in wheres]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_two_parts_import_each_other():
    edges = part_graph()
    cycles = [wheres[0] + " / " + edges[(b, a)][0] for (a, b), wheres in edges.items() if (b, a) in edges and a < b]
    assert not cycles, "parts that import each other:\n" + "\n".join(cycles)


def test_imports_inside_functions_and_from_the_package_are_seen(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("from gantrain import data\n\n\ndef f():\n    from gantrain.cli import train\n")
    assert [part_of(module) for _, module in imports_of(source)] == ["data", "cli"]
