"""TGD: Topological Guidance-based Knowledge Distillation.

The engine: persistence diagrams and images of images (``tgd_core.topology``), data, Wide-ResNet
teachers and students, distillation methods, training, evaluation, background jobs and a CLI.
"""

__version__ = "0.1.0"
