"""The compression defaults, torch-free so the CLI can show them without importing torch.
Why these values: docs/model-pipeline.md ("Defaults and their measurements")."""

ROUND_TO = 32  # kept widths of a pruned model are multiples of this (faster INT8 kernels at equal FLOPs)
EPOCHS = 2  # gradient distillation epochs after the layer refit (DistillConfig.epochs, `optimize --epochs`)
