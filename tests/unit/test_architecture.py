"""docs/ARCHITECTURE.md holds: imports run down its layer table, and every cited invariant is in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = ROOT / "trafficshift"


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _layer_table() -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Rank of each module and of each folder (0 = the bottom row), and the layer names, from the doc."""
    rows = [line for line in _section("Layers").splitlines() if line.startswith("| ") and "`" in line]
    modules: dict[str, int] = {}
    folders: dict[str, int] = {}
    names: list[str] = []
    for rank, row in enumerate(reversed(rows)):
        layer, cell = (part.strip() for part in row.strip("|").split("|")[:2])
        names.append(layer)
        for part in cell.split(";"):
            prefix = ""
            for token in re.findall(r"`([^`]+)`", part):
                if token.endswith("/"):
                    prefix = token.rstrip("/") + "."
                    folders[prefix.rstrip(".")] = rank
                else:
                    modules[f"trafficshift.{prefix}{token.replace('/', '.')}"] = rank
    return modules, folders, names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every trafficshift module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                # `from trafficshift import plan` names a module, `from trafficshift import __version__` not.
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / (sub.replace(".", "/") + ".py")).exists()
                found.add(sub if is_module else node.module)
    return {name for name in found if name == "trafficshift" or name.startswith("trafficshift.")}


MODULES, FOLDERS, LAYERS = _layer_table()


def _rank(module: str) -> int:
    if module in MODULES:
        return MODULES[module]
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in FOLDERS):
        return 0  # a package's __init__: they define nothing
    if len(parts) == 3 and parts[1] in FOLDERS:
        return FOLDERS[parts[1]]  # a new module of a folder: the folder's row until the table names it
    raise AssertionError(f"{module} is in no row of the layer table of {DOC.name}: add it to one")


def test_the_table_names_the_modules_that_exist() -> None:
    assert len(LAYERS) >= 8  # the table was read
    for module in MODULES:
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{DOC.name} names {module}: no such file"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downward(path: Path) -> None:
    module = _module_name(path)
    rank = _rank(module)
    for imported in sorted(_imports(path)):
        assert _rank(imported) <= rank, (
            f"{module} ({LAYERS[rank]}) imports {imported} ({LAYERS[_rank(imported)]}), a row above it"
            f" in {DOC.name}"
        )


CITATION = re.compile(r"invariants? (\d+(?:(?:, | and )\d+)*)( \(docs/ARCHITECTURE\.md\))?", re.IGNORECASE)


def _citations() -> list[tuple[str, list[int], bool]]:
    """(file:line, the invariants named, whether the doc is named) of each mention in code and tests."""
    out = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        for mention in re.finditer(r"invariants?[\s#]+\d", text, re.IGNORECASE):
            # A citation may wrap onto the next comment or docstring line: read it as one line.
            tail = re.sub(r"\s*\n\s*(?:#\s*)?", " ", text[mention.start() : mention.start() + 200])
            cited = CITATION.match(tail)
            assert cited is not None
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, mention.start()) + 1}"
            out.append((where, [int(n) for n in re.findall(r"\d+", cited[1])], cited[2] is not None))
    return out


def test_every_cited_invariant_is_in_the_doc() -> None:
    listed = {int(n) for n in re.findall(r"^(\d+)\. ", _section("Invariants"), re.MULTILINE)}
    assert {1, 2, 3, 4} <= listed  # the contract's four, and the list was read
    citations = _citations()
    assert citations  # the code does cite them: a search that finds nothing proves nothing
    for where, numbers, names_doc in citations:
        for n in numbers:
            assert n in listed, f"{where} cites invariant {n}, which {DOC.name} does not list"
        # One form, so that a reader knows where to look.
        assert names_doc, f"{where}: cite it as 'invariant N (docs/ARCHITECTURE.md)'"


def test_the_readme_links_the_architecture() -> None:
    assert "(docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
