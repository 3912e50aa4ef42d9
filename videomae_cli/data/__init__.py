"""Videos to clips: decoding, frame sampling, transforms, loaders, manifests, which videos a command reads (sources),
and preparing a dataset (prepare/)."""
