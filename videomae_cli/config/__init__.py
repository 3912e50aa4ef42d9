"""Run specs and their resolution: the bottom layer, importable without torch."""
