"""Training: the shared loop and its state, distributed wrapping, optimisers, and the pretrain and fine-tune tasks."""
