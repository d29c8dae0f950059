"""Networks: Wide-ResNets (:mod:`.models`), a network with the input it reads
(:mod:`.network`), checkpoints (:mod:`.checkpoints`), the model zoo (:mod:`.model_zoo`) and
export to ONNX/TorchScript (:mod:`.export`)."""
