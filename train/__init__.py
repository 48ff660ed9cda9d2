"""segzero_train: Seg-Zero rewards, ground truth from masks, data loaders, synthetic data,
evaluation metrics and GRPO/SFT training. Submodules import their heavy dependencies lazily."""
