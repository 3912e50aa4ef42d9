"""`videomae prepare-data`: turn a video collection into checked VideoMAE manifests.

A source (class-per-folder tree, flat folder, VideoMAE annotation file, Kinetics csv, Something-Something V2 json, or
the built-in synthetic videos) is read into a list of (video, label, split) items. Every video is probed in parallel
(`probe.probe_video`: PyAV's checks, then a first- and last-frame decode with the training decoder, the spec's
`decoder`), bad ones are reported and left out, optionally transcoded to a smaller short side, split (stratified,
seeded) where the source has no split, and written to the spec's `out` folder (design.md: data formats):

- `train.csv`, `val.csv` (and `test.csv` where the source has a test split): `PATH LABEL` lines, space separated, no
  header. PATH is absolute, so the manifests work from any working directory and need no data root.
- `train_pretrain.csv`: the training videos as VideoMAE V2 pretraining lines, `PATH 0 -1`.
- `classes.json`: `{"labelled": bool, "num_classes": K, "classes": {"0": name, ...}}`. Unlabelled sources (a flat
  folder, a V2 pretraining list) write label 0 everywhere and `"labelled": false`.
- `report.json`: source, format, counts per split and class, duration/fps/resolution/codec summary, and `problems`
  (`[{"path", "reason"}]`, the videos left out), and `settings` (the spec, with `decoder` resolved to the backend
  that was checked).
- `.probe_cache.json`: probe results keyed by (absolute path, size, mtime, decoder), so a re-run probes only changed
  files, and a run with another decoder checks every file again.

The spec is config/prepare.py's `PrepareSpec`. What lives where:

- `pipeline.py`: `prepare_data(spec, reporter)`, the entry point, and its result; it reports progress through a
  `Reporter` and never prints (the CLI shows the summary with ui/tables.py: prepare_summary).
- `source.py`: what a source is read into (`Source`, `SourceItem`, `Problem`).
- `readers.py`: which format SRC is, and the folder, annotation, Kinetics and SSv2 readers (`read_source`,
  `walk_videos`).
- `synthetic.py`: the built-in synthetic videos rendered to files and listed like a real source.
- `jobs.py`: parallel per-file work: probing (with its cache) and transcoding.
- `splits.py`: the train/val split where the source has none (stratified, seeded).
- `outputs.py`: the output folder's file names, and writing the manifests and classes.json.
- `report.py`: the content of report.json.
"""
