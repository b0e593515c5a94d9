"""The import graph of portnn: no cycles, and lower rooms never import upper ones.

The graph is read from the source with :mod:`ast`, so it sees every import statement: at module
level, inside functions (a function-level import that closes a loop is a cycle all the same),
under ``if TYPE_CHECKING:`` and in ``try`` blocks. ``from . import x`` is an edge to the
submodule ``x`` when there is one, else to the package. Importing ``a.b.c`` also runs the
``__init__`` of ``a`` and ``a.b``; those implicit edges are not counted, as no import tool counts
them (every submodule would otherwise be in a cycle with its package).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import portnn

PACKAGE = Path(portnn.__file__).parent

#: The lower rooms and, for each, the only other rooms it may import. A room is a top-level
#: module or subpackage of portnn (``portnn.layers.dense`` is in ``layers``; ``portnn`` itself, the
#: package's ``__init__``, is the room ``portnn``). Upper rooms are never allowed here.
LOWER_MAY_IMPORT: dict[str, set[str]] = {
    "_version": set(),
    "fileformat": set(),
    "_array": set(),
    "_checks": set(),
    "backends": {"_array"},
    "_inputs": {"_array", "backends"},
    "init": {"_checks"},
    "functional": {"_array", "backends"},
    "layers": {"_array", "_checks", "backends", "functional", "init"},
}
UPPER = {
    "model", "training", "serialization", "callbacks", "plot", "report", "diagnostics", "_resume", "_records", "transfer",
    "distributed", "cli", "onnx", "testing", "models",
}  # fmt: skip


@dataclass(frozen=True)
class Site:
    """Where an import statement is: file, line, and in what (module level, a function, TYPE_CHECKING)."""

    path: str
    line: int
    scope: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.scope}): {self.text}"


def modules_of(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    """The portnn modules one file imports, each with the sites of its import statements."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path], path: str, lines: list[str]) -> None:
        self.module, self.modules, self.path, self.lines = module, modules, path, lines
        self.package = module if is_package else module.rpartition(".")[0]
        self.root = module.split(".")[0]
        self.scopes: list[str] = []
        self.edges: dict[str, list[Site]] = {}

    def _site(self, node: ast.stmt) -> Site:
        scope = self.scopes[-1] if self.scopes else "module level"
        return Site(self.path, node.lineno, scope, self.lines[node.lineno - 1].strip())

    def _add(self, target: str, node: ast.stmt) -> None:
        if target != self.module:
            self.edges.setdefault(target, []).append(self._site(node))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(f"in {node.name}()")
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self.scopes.append("under TYPE_CHECKING")
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == self.root and alias.name in self.modules:
                self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != self.root:
            return
        found = set()
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in self.modules:
                found.add(sub)  # from . import backends: the submodule
            elif target in self.modules:
                found.add(target)  # from .model import Sequential: the module that defines it
        for module in sorted(found):
            self._add(module, node)


def import_graph(root: Path) -> dict[str, dict[str, list[Site]]]:
    """``{module: {imported portnn module: [sites]}}`` for the package at ``root``."""
    modules = modules_of(root)
    graph = {}
    for module, path in modules.items():
        source = path.read_text(encoding="utf-8")
        visitor = _Imports(module, path.name == "__init__.py", modules, str(path.relative_to(root.parent)), source.splitlines())
        visitor.visit(ast.parse(source, filename=str(path)))
        graph[module] = visitor.edges
    return graph


def cycles(graph: dict[str, dict[str, list[Site]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def cycle_path(graph: dict[str, dict[str, list[Site]]], component: list[str]) -> list[str]:
    """A shortest loop through the component's first module, as ``[a, b, ..., a]``."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                chain = [v]  # v, the module before it, ..., start
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{component} is not a cycle")


def describe_cycles(graph: dict[str, dict[str, list[Site]]], components: list[list[str]]) -> str:
    """Each cycle: its modules, one loop through them, and every import statement inside it (the ones to cut)."""
    out = []
    for component in components:
        loop = cycle_path(graph, component)
        out.append(f"import cycle among {len(component)} modules: {', '.join(component)}")
        out.append(f"  a loop: {' -> '.join(loop)}")
        out.append("  the imports inside the cycle:")
        members = set(component)
        for v in component:
            for w in sorted(set(graph[v]) & members):
                out += [f"    {v} -> {w}   {site}" for site in graph[v][w]]
    return "\n".join(out)


def room(module: str) -> str:
    """``portnn.layers.dense`` -> ``layers``; ``portnn._array`` -> ``_array``; ``portnn`` -> ``portnn``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, list[Site]]]:
    return import_graph(PACKAGE)


# -- the checker itself, on a package made for it -------------------------------------
def test_the_graph_sees_every_kind_of_import_and_names_the_loop(tmp_path: Path) -> None:
    pkg = tmp_path / "toypkg"
    files = {
        "__init__.py": "from . import low\nfrom .high import run\n",
        "low.py": "def f():\n    from .high import run  # closes a loop, inside a function\n",
        "high.py": "from . import low\nfrom .sub import leaf\n\ndef run():\n    pass\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toypkg.other import X\n",
        "other.py": "import toypkg.typed\nimport os\nimport numpy\n",
        "sub/__init__.py": "from .. import __version__, __doc__\n",
        "sub/leaf.py": "from ..low import f\nfrom . import nothing_here\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    g = import_graph(pkg)
    edges = {(v, w) for v, targets in g.items() for w in targets}
    assert edges == {
        ("toypkg", "toypkg.low"),
        ("toypkg", "toypkg.high"),
        ("toypkg.low", "toypkg.high"),
        ("toypkg.high", "toypkg.low"),
        ("toypkg.high", "toypkg.sub.leaf"),  # from .sub import leaf: the submodule
        ("toypkg.typed", "toypkg.other"),
        ("toypkg.other", "toypkg.typed"),
        ("toypkg.sub", "toypkg"),  # from .. import __version__: a name of the package
        ("toypkg.sub.leaf", "toypkg.low"),
        ("toypkg.sub.leaf", "toypkg.sub"),  # from . import nothing_here: not a module, so the package
    }
    assert g["toypkg.low"]["toypkg.high"][0].scope == "in f()"
    assert g["toypkg.typed"]["toypkg.other"][0].scope == "under TYPE_CHECKING"
    components = cycles(g)
    assert components == [
        ["toypkg", "toypkg.high", "toypkg.low", "toypkg.sub", "toypkg.sub.leaf"],
        ["toypkg.other", "toypkg.typed"],
    ]
    assert cycle_path(g, components[1]) == ["toypkg.other", "toypkg.typed", "toypkg.other"]
    message = describe_cycles(g, components)
    assert "a loop: toypkg.other -> toypkg.typed -> toypkg.other" in message
    assert "toypkg.low -> toypkg.high   toypkg/low.py:2 (in f()): from .high import run" in message
    assert "toypkg/typed.py:3 (under TYPE_CHECKING): from toypkg.other import X" in message
    assert message.count("toypkg/sub/__init__.py:1") == 1  # one line per statement, however many names it imports
    # cut the loops: no cycle is left
    (pkg / "low.py").write_text("def f():\n    pass\n")
    (pkg / "other.py").write_text("import os\n")
    (pkg / "sub/__init__.py").write_text("")
    assert cycles(import_graph(pkg)) == []


# -- portnn ---------------------------------------------------------------------------
def test_no_import_cycles(graph: dict[str, dict[str, list[Site]]]) -> None:
    components = cycles(graph)
    assert not components, "\n" + describe_cycles(graph, components)


def test_the_file_format_and_persistence_are_in_no_cycle(graph: dict[str, dict[str, list[Site]]]) -> None:
    in_cycles = {module for component in cycles(graph) for module in component}
    for module in ("portnn._version", "portnn.fileformat", "portnn.serialization", "portnn.transfer"):
        assert module not in in_cycles, "\n" + describe_cycles(graph, [c for c in cycles(graph) if module in c])
    for module in ("portnn._version", "portnn.fileformat"):
        assert graph[module] == {}, f"{module} imports other parts of portnn: {graph[module]}"
    for module in ("portnn.serialization", "portnn.transfer"):
        assert "portnn.model" not in graph[module], [str(site) for site in graph[module]["portnn.model"]]
        assert "portnn" not in graph[module], [str(site) for site in graph[module]["portnn"]]


def test_lower_rooms_never_import_upper_rooms(graph: dict[str, dict[str, list[Site]]]) -> None:
    assert not UPPER & set(LOWER_MAY_IMPORT), "a room cannot be lower and upper"
    assert all(allowed <= set(LOWER_MAY_IMPORT) for allowed in LOWER_MAY_IMPORT.values()), "lower rooms import lower rooms only"
    rooms = {room(module) for module in graph}
    assert set(LOWER_MAY_IMPORT) <= rooms, f"rooms of the table not found in portnn: {set(LOWER_MAY_IMPORT) - rooms}"
    wrong = []
    for module, targets in sorted(graph.items()):
        here = room(module)
        if here not in LOWER_MAY_IMPORT:
            continue
        for target, sites in sorted(targets.items()):
            if room(target) != here and room(target) not in LOWER_MAY_IMPORT[here]:
                kind = "an upper room" if room(target) in UPPER else "a room not in its row of LOWER_MAY_IMPORT"
                wrong += [f"{module} imports {target} ({kind})   {site}" for site in sites]
    assert not wrong, "\n" + "\n".join(wrong)


def test_the_file_format_runs_without_the_rest_of_portnn(tmp_path: Path) -> None:
    """Loaded from its file as a top-level module, in a fresh interpreter: no relative import, nothing of portnn loaded."""
    script = textwrap.dedent(
        """
        import importlib.util, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("fileformat_alone", sys.argv[1])
        ff = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ff)
        path = sys.argv[2]
        ff.write_file(path, {"w": np.arange(4.0)}, {"epoch": 2}, portnn_version="0.1.0")
        tensors, meta = ff.read_file(path)
        assert meta == {"epoch": 2} and tensors["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
        data = bytearray(open(path, "rb").read())
        data[-1] ^= 1
        open(path, "wb").write(bytes(data))
        try:
            ff.read_file(path)
        except ff.CheckpointError as exc:
            assert "checksum mismatch" in str(exc), exc
        else:
            raise AssertionError("a damaged file was read")
        loaded = sorted(m for m in sys.modules if m == "portnn" or m.startswith("portnn."))
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(PACKAGE / "fileformat.py"), str(tmp_path / "f.safetensors")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
