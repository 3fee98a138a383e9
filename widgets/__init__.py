"""Presentation: Panel/Bokeh views over results computed by :mod:`workbench`. No algorithms here."""

from widgets.offline import install as _install_offline_stylesheets

# every view shown in a notebook keeps its stylesheets local after updates too (see widgets/offline.py)
_install_offline_stylesheets()
