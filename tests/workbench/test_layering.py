"""The rule of the house: ``workbench`` (compute) never imports UI libraries; ``widgets`` holds no algorithms."""

import ast
from pathlib import Path

import workbench

UI_MODULES = {"panel", "bokeh", "ipywidgets", "param", "widgets"}
ALLOWED = {("cli.py", "panel"), ("cli.py", "widgets.dashboard")}


def test_workbench_never_imports_ui_libraries():
    root = Path(workbench.__file__).parent
    offenders = [(str(path.relative_to(root)), module) for path in root.rglob("*.py")
                 for module, _ in imports_of(path.read_text(encoding="utf-8")) if module.split(".")[0] in UI_MODULES]
    # The `serve` command starts the dashboard, importing it lazily inside the command.
    offenders = [o for o in offenders if o not in ALLOWED]
    assert not offenders, offenders


# -- the import graph -------------------------------------------------------------------------------------------
ROOT = Path(workbench.__file__).parent.parent
PACKAGES = ("workbench", "widgets")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "data/samples" in path.as_posix():   # shipped sample source code, not the project's
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports_of(source: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every absolute import of Python ``source``, at its top or inside a function (both
    run), but not under ``if TYPE_CHECKING:`` (never run); ``import a.b`` gives ``("a.b", [])``."""
    tree = ast.parse(source)
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports: ``from a import b`` is an edge to ``a.b`` when that is a module,
    else to ``a``."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for module, names in imports_of(path.read_text(encoding="utf-8")):
            for n in names or [None]:
                sub = f"{module}.{n}" if n else None
                if sub in modules:
                    targets.add(sub)
                elif module in modules:
                    targets.add(module)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_project_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 100 and "workbench.routing.torch_routers" in graph["workbench.routing.routers"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_widgets_hold_no_numerical_kernels():
    """Widgets render what `workbench` computes: no Numba kernels, no SciPy numerics of their own."""
    offenders = []
    for path in (ROOT / "widgets").rglob("*.py"):
        offenders += [(path.name, m) for m, _ in imports_of(path.read_text(encoding="utf-8")) if m.split(".")[0] in ("numba", "scipy")]
    assert not offenders, offenders


# -- one name, one meaning ----------------------------------------------------------------------------------------
#: Names several modules define on purpose, with one meaning: each module's own warm-up (compile its kernels).
SHARED_NAMES = {"warm_up"}


def public_definitions() -> dict[str, list[str]]:
    """Public top-level functions and classes of ``workbench`` -> the modules defining them. Kernel modules
    (``*kernels.py``) and the torch backends (``torch_*.py``) are left out: their functions are the executors of the
    public ones, of the same names and meanings; so are the CLI modules' command handlers."""
    out: dict[str, list[str]] = {}
    for name, path in _modules().items():
        if not name.startswith("workbench.") or path.name.endswith("kernels.py") or path.name.startswith(
                ("torch_", "cli")):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                out.setdefault(node.name, []).append(name)
    return out


def test_no_two_public_functions_share_a_name():
    defs = public_definitions()
    assert len(defs) > 300
    twice = {k: v for k, v in defs.items() if len(v) > 1 and k not in SHARED_NAMES}
    assert not twice, twice
