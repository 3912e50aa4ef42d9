"""The models: the ViT encoder (vit.py), the MAE pretraining model with its targets and loss (pretrain.py), the
classifier (classifier.py), and the one map from a run spec to a model (factory.py)."""
