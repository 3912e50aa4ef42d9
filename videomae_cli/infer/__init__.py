"""Inference: evaluation, prediction, embeddings and frozen-feature probes on trained models."""
