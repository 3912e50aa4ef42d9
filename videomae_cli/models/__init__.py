"""The models: token grid and sizes (torch-free), the ViT encoder, the MAE pretraining model and the classifier."""
