"""`videomae visualize-mask`: compute.py turns a clip, a mask and (optionally) a pretrain model into the picture's
rows as arrays; render.py draws them as a PNG grid, a GIF or an MP4. The settings are config/visualize.py's
VisualizeSpec, checked without torch."""
