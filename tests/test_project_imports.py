"""Every name that the benchmarks, scripts, notebooks and the README import from the project exists: a rename in
`workbench` or `widgets` that forgets one of them fails here, not in a user's hands."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from tests.workbench.test_layering import imports_of

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("workbench", "widgets")


def _sources() -> list[tuple[str, str]]:
    out = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
           for folder in ("benchmarks", "scripts") for p in sorted((ROOT / folder).glob("*.py"))]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out.append((str(nb.relative_to(ROOT)), "\n".join(line for line in code.splitlines()
                                                         if not line.lstrip().startswith(("%", "!")))))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    out.append(("README.md", "\n".join(re.findall(r"```python\n(.*?)```", readme, re.S))))
    return out


def project_imports(source: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from workbench... import name`` / ``from widgets... import name`` in ``source``,
    inside functions too (`tests.workbench.test_layering.imports_of`)."""
    return [(module, name) for module, names in imports_of(source) if module.split(".")[0] in PROJECT
            for name in names]


@pytest.mark.parametrize("where,source", _sources(), ids=lambda x: x if isinstance(x, str) and len(x) < 60 else "")
def test_every_imported_project_name_exists(where, source):
    missing = []
    for module, name in project_imports(source):
        mod = importlib.import_module(module)
        if name != "*" and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{where} imports names that do not exist: {missing}"


def test_the_checker_sees_imports_inside_functions():
    src = "def f():\n    from workbench.kvcache.torch_replay import no_such_name\n"
    assert project_imports(src) == [("workbench.kvcache.torch_replay", "no_such_name")]
