"""Exporting a checkpoint as a self-contained inference model (ONNX or TorchScript), and running it.

The exported graph is ``logits = network((x − mean) / std)``: it reads float32 N×C×H×W inputs
in [0, 1] — images (uint8 / 255) for raw networks, PI stacks (uint8 / 255) for PI networks — and
applies the checkpoint's own normalisation inside; the batch axis is dynamic. Beside ``FILE`` a
sidecar ``FILE.json`` records the input (kind, shape, range, the PI representation of a PI
network), the normalisation, the class names when known, the source checkpoint, the library
versions and the validation: the exported model against PyTorch eager on 64 CIFAR-10 test images
(64 seeded random images when the data directory is missing), max |Δ logit| ≤ ``atol``.

ONNX goes through ``torch.onnx.export``'s default exporter (``torch.export`` + onnxscript, one
file with the weights inside); TorchScript through ``torch.jit.trace`` (deprecated by PyTorch but
still loadable with ``torch.jit.load``). :class:`ExportedClassifier` runs either file (ONNX with
onnxruntime) from images, as a deployment would. onnx, onnxscript and onnxruntime are optional:
``pip install "tgd[export]"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import check_replaceable, temp_path
from tgd_core.data.datasets import CIFAR10_CLASSES, load_cifar10
from tgd_core.data.images import as_image_batch
from tgd_core.data.normalization import Normalization, to_unit_batch
from tgd_core.evaluation.metrics import model_input_transform, predict_logits, torch_threads
from tgd_core.nets.checkpoints import Checkpoint, library_versions, load_checkpoint
from tgd_core.topology.representation import representation_from_dict

FORMATS = ("onnx", "torchscript")
DEFAULT_ATOL = 1e-4
VALIDATION_IMAGES = 64
INPUT_NAME, OUTPUT_NAME = "images", "logits"
#: the Python modules each format needs beyond torch, to export and validate
_NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torchscript": ()}


def require_export_packages(fmt: str, modules: tuple[str, ...] | None = None) -> None:
    """TGDError naming the packages to install when ``fmt``'s optional ones are missing."""
    missing = []
    for name in _NEEDS[fmt] if modules is None else modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise TGDError(f"{fmt} export needs {', '.join(missing)}, which is not installed: "
                       f'pip install "tgd[export]" (or pip install {" ".join(_NEEDS[fmt])})')


class NormalizedNetwork(nn.Module):
    """``network(normalization.apply(x))``: the graph that is exported (inputs in [0, 1])."""

    def __init__(self, network: nn.Module, normalization: Normalization) -> None:
        super().__init__()
        self.network = network
        self.normalization = normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalization.apply(x))


def sidecar_path(path: str | Path) -> Path:
    """``FILE.json`` beside the exported ``FILE``."""
    return Path(f"{path}.json")


def class_names(ckpt: Checkpoint) -> list[str] | None:
    """CIFAR-10's classes for CIFAR-10/CINIC-10 networks (and the authors' 10-class files)."""
    dataset = ckpt.config.get("dataset", "cifar10" if ckpt.source == "official" else None)
    if dataset in ("cifar10", "cinic10") and ckpt.num_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return None


def validation_images(data_dir: str | Path | None = None, n: int = VALIDATION_IMAGES,
                      seed: int = 0) -> tuple[np.ndarray, str]:
    """The first ``n`` CIFAR-10 test images, or ``n`` seeded random uint8 32×32 RGB images when
    the data directory is missing; with a description of which."""
    try:
        return load_cifar10("test", data_dir, limit=n)[0], f"{n} CIFAR-10 test images"
    except TGDError:
        images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        return images, f"{n} random images (seed {seed}; CIFAR-10 not found)"


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """Silence torch.jit's deprecation and tracer warnings (the traced graph has no control
    flow; the normalisation constants are meant to be baked in)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


class ExportedClassifier:
    """An exported model and its sidecar: ``predict(images) -> logits`` as a deployment runs it.

    ``images``: N×H×W×C (or one H×W×C) uint8, or float in [0, 1]. A PI network's PIs are
    computed from the images with the representation the sidecar records. ONNX files run on
    onnxruntime (CPU), TorchScript files on ``torch.jit.load``; ``num_threads`` None keeps the
    runtime's default.
    """

    def __init__(self, path: str | Path, *, num_threads: int | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if metadata is None:
            side = sidecar_path(self.path)
            try:
                metadata = json.loads(side.read_text())
            except FileNotFoundError:
                raise TGDError(f"{side}: missing sidecar of {self.path} (written by tgd export)"
                               ) from None
            except (OSError, ValueError) as exc:
                raise TGDError(f"{side}: unreadable sidecar ({exc})") from None
        self.metadata = metadata
        self.format: str = metadata["format"]
        self.input_kind: str = metadata["input"]["kind"]
        self.classes: list[str] | None = metadata.get("classes")
        self.num_threads = num_threads
        self._transform = model_input_transform(
            self.input_kind, {"pi": metadata["input"].get("pi_representation")})
        if not self.path.is_file():
            raise TGDError(f"{self.path}: no such exported model")
        if self.format == "onnx":
            require_export_packages("onnx", ("onnxruntime",))
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = num_threads or 0
            self._session = ort.InferenceSession(str(self.path), options,
                                                 providers=["CPUExecutionProvider"])
            self._input_name = self._session.get_inputs()[0].name
        elif self.format == "torchscript":
            with _quiet_torchscript():
                self._module = torch.jit.load(str(self.path), map_location="cpu").eval()
        else:
            raise TGDError(f"{self.path}: unknown exported format {self.format!r}")

    def model_input(self, images: Any) -> np.ndarray:
        """Images → the exported graph's float32 N×C×H×W input in [0, 1]."""
        channels = self.metadata["input"]["shape"][1]
        batch = as_image_batch(images, channels=3 if self.input_kind == "pi" or channels == 3
                               else None)
        if self._transform is not None:
            batch = self._transform(batch)
        return to_unit_batch(batch)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The exported graph on float32 N×C×H×W inputs in [0, 1]: N×classes logits."""
        if self.format == "onnx":
            return self._session.run(None, {self._input_name: x})[0]
        with torch_threads(self.num_threads), torch.inference_mode():
            return self._module(torch.from_numpy(x)).numpy()

    def predict(self, images: Any) -> np.ndarray:
        """N×classes float32 logits of ``images``."""
        return self.run(self.model_input(images))


@dataclass(frozen=True)
class Validation:
    """Exported model against PyTorch eager on the same images."""

    images: str
    max_abs_diff: float
    argmax_agreement: int
    n: int
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    format: str
    validation: Validation

    def summary(self) -> str:
        """The one-line report: format, file size, max |Δ logit| and argmax agreement."""
        v = self.validation
        size = self.path.stat().st_size / 2**10
        return (f"exported {self.path} ({self.format}, {size:,.0f} KiB): max |Δ logit| "
                f"{v.max_abs_diff:.2e} vs PyTorch (tolerance {v.atol:g}), argmax agrees "
                f"{v.argmax_agreement}/{v.n}, on {v.images}; sidecar {self.sidecar}")


def _package_versions(fmt: str) -> dict[str, str]:
    versions = library_versions()
    for name in _NEEDS[fmt]:
        versions[name] = importlib.metadata.version(name)
    return versions


def _metadata(ckpt: Checkpoint, fmt: str, file_name: str, input_shape: tuple[int, ...]
              ) -> dict[str, Any]:
    """The sidecar (without its ``validation``, added once measured)."""
    source = ckpt.path
    meta: dict[str, Any] = {
        "format": fmt, "file": file_name,
        "input": {
            "name": INPUT_NAME, "kind": ckpt.input_kind, "layout": "NCHW", "dtype": "float32",
            "shape": [None, *input_shape[1:]], "range": [0.0, 1.0],
            "meaning": ("RGB images, uint8 / 255" if ckpt.input_kind == "raw" else
                        "persistence-image stack of the image, uint8 PIs / 255"),
        },
        "output": {"name": OUTPUT_NAME, "shape": [None, ckpt.num_classes],
                   "meaning": "logits (softmax gives class probabilities)"},
        "normalization": {**ckpt.normalization.to_dict(), "applied": "inside the model"},
        "classes": class_names(ckpt),
        "source_checkpoint": {
            "path": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "model": ckpt.model, "source": ckpt.source, "epoch": ckpt.epoch,
            "git_commit": ckpt.git_commit,
        },
        "versions": _package_versions(fmt),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if ckpt.input_kind == "pi":
        meta["input"]["pi_representation"] = representation_from_dict(
            ckpt.config.get("pi") or {"mode": "paper"}).to_dict()
    return meta


def _write(module: NormalizedNetwork, example: torch.Tensor, fmt: str, path: Path) -> None:
    if fmt == "onnx":
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_shapes={"x": {0: batch}},
                              external_data=False, verbose=False)
    else:
        with _quiet_torchscript(), torch.no_grad():
            # check_trace=False: the validation below compares the trace with eager anyway
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))


def _temp_beside(out: Path) -> Path:
    """An empty temporary file in ``out``'s folder (created if needed); TGDError if unwritable."""
    check_replaceable(out)
    tmp = temp_path(out)
    existing = next(p for p in out.parents if p.exists())
    if not existing.is_dir():
        raise TGDError(f"{out}: cannot write there ({existing} is a file, not a folder)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"")
    except OSError as exc:
        raise TGDError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return tmp


def _validate(exported: np.ndarray, eager: torch.Tensor, described: str,
              atol: float) -> Validation:
    """The exported model's logits against PyTorch eager's on the same images."""
    got = torch.from_numpy(exported)
    return Validation(images=described, max_abs_diff=float((got - eager).abs().max()),
                      argmax_agreement=int((got.argmax(1) == eager.argmax(1)).sum()),
                      n=len(eager), atol=float(atol))


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx", *,
                      atol: float = DEFAULT_ATOL, data_dir: str | Path | None = None,
                      num_threads: int | None = None) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (``fmt``: onnx or torchscript) with its sidecar, after
    checking the exported model against PyTorch eager (TGDError when max |Δ logit| > atol; then
    nothing is written). Files appear atomically, the model last."""
    if fmt not in FORMATS:
        raise TGDError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not atol >= 0:
        raise TGDError(f"tolerance must be >= 0, got {atol}")
    require_export_packages(fmt)
    ckpt = load_checkpoint(checkpoint)
    out = Path(out)
    images, described = validation_images(data_dir)
    transform = model_input_transform(ckpt.input_kind, ckpt.config)
    example = torch.from_numpy(
        to_unit_batch(transform(images[:2]) if transform is not None else images[:2]))
    network = ckpt.build()
    meta = _metadata(ckpt, fmt, out.name, tuple(example.shape))

    tmp, tmp_side = _temp_beside(out), None
    try:
        _write(NormalizedNetwork(network, ckpt.normalization).eval(), example, fmt, tmp)
        exported = ExportedClassifier(tmp, num_threads=num_threads, metadata=meta)
        want = predict_logits(network, images, ckpt.normalization, transform=transform,
                              num_threads=num_threads)
        validation = _validate(exported.predict(images), want, described, atol)
        if not validation.passed:
            raise TGDError(f"{out}: not written: the exported {fmt} model differs from PyTorch "
                           f"by max |Δ logit| {validation.max_abs_diff:.2e} > tolerance "
                           f"{atol:g} on {described} (raise it with --atol if that is expected)")
        meta["validation"] = validation.to_dict()
        tmp_side = _temp_beside(sidecar_path(out))
        tmp_side.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp_side, sidecar_path(out))
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp_side):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return ExportResult(out, sidecar_path(out), fmt, validation)
