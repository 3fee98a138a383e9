"""The rule of the house: ``workbench`` (compute) never imports UI libraries; ``widgets`` holds no algorithms."""

import ast
from pathlib import Path

import workbench

UI_MODULES = {"panel", "bokeh", "ipywidgets", "param", "widgets"}
ALLOWED = {("cli.py", "panel"), ("cli.py", "widgets.dashboard")}


def test_workbench_never_imports_ui_libraries():
    root = Path(workbench.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [(str(path.relative_to(root)), n) for n in names if n.split(".")[0] in UI_MODULES]
    # The `serve` command starts the dashboard, importing it lazily inside the command.
    offenders = [o for o in offenders if o not in ALLOWED]
    assert not offenders, offenders
