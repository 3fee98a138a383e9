"""Presentation: Panel/Bokeh views over results computed by :mod:`workbench`. No algorithms here."""
