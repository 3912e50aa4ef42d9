"""WebDataset tar shards: writing them (writer.py), their index (index.py), and streaming samples from them."""
