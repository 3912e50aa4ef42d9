"""Checkpoints to and from other codebases: HF transformers, the official VideoMAE V1/V2 and MAE-ST releases, ONNX."""
