"""`panel serve widgets/dashboard.py` puts widgets/ on sys.path, so no module in it may shadow an installed one
(a `widgets/tokenizers/` package once hid Hugging Face `tokenizers` from transformers)."""

import importlib.util
from pathlib import Path

import widgets


def test_no_widgets_module_shadows_an_installed_package():
    folder = Path(widgets.__file__).parent
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    shadowed = sorted(n for n in names if importlib.util.find_spec(n) is not None)
    assert not shadowed, f"widgets/ modules shadow installed packages under `panel serve`: {shadowed}"
