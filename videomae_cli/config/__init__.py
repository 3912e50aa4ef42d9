"""The bottom layer, importable without torch: the run specs (schema.py, prepare.py, visualize.py), their layered
resolution with provenance (resolve.py), the token grid (grid.py), the named sizes (sizes.py) and the mask-fit check
(mask_fit.py)."""
