"""Saving and loading checkpoints (one home): ours, and the TGD authors' released files.

Our format is a plain dict that ``torch.load(..., weights_only=True)`` can read::

    {"format": "tgd-checkpoint", "version": 1, "model": "wrn16_1", "in_channels": 3,
     "num_classes": 10, "input_kind": "raw" | "pi", "normalization": {"mean": [...], "std": [...]},
     "state_dict": {...}, "optimizer": ..., "scheduler": ..., "epoch": ..., "metrics": {...},
     "config": {...}, "versions": {"torch": ..., "python": ..., "tgd": ...}, "git_commit": ...}

The authors' files (github.com/jeunsom/TGD, ``models/*.pth.tar``) hold ``model_state_dict``,
``optimizer_state_dict`` and ``epoch``; the architecture is inferred from the tensor shapes and
the normalisation is the reference code's (``TGD_METHOD.md`` §3). Any file that is not one of the
two raises :class:`TGDError` with a one-line message naming the file (and never quoting its
content): every field's type is checked once, against :data:`OURS_FIELDS` or
:data:`OFFICIAL_FIELDS` (:func:`check_fields`), the declared architecture numbers against the
tensors' shapes before any model is built, the normalisation for finite values. Neither saving
nor loading accepts NaN or infinite weights (:class:`NonFiniteError`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import pickle
import platform
import re
import subprocess
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import torch

import tgd_core
from tgd_core.core import paths
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, memoised_by_stat
from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW, Normalization
from tgd_core.nets.models import MODELS, WideResNet, build_model, model_name

FORMAT = "tgd-checkpoint"
VERSION = 1
INPUT_KINDS = ("raw", "pi")
TRAINING_ONLY = ("optimizer", "scheduler", "training_state")  # what resuming needs, nothing else
_OFFICIAL_KEYS = {"model_state_dict"}
_DEFAULT_NORMALIZATION = {3: ("raw", CIFAR10_RAW), 6: ("pi", CIFAR10_PI)}
MAX_CLASSES = 100_000  # architecture numbers a checkpoint may declare (bounds memory)
MAX_IN_CHANNELS = 1_024


@dataclass
class Checkpoint:
    """A loaded checkpoint: everything needed to rebuild the network and trust its inputs."""

    model: str
    in_channels: int
    num_classes: int
    input_kind: str
    normalization: Normalization
    state_dict: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    training_state: dict[str, Any] | None = None  # the training loop's position (resume)
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    source: str = "tgd"  # "tgd" (our format) or "official" (the authors' files)
    path: Path | None = None

    def build(self, device: torch.device | str = "cpu") -> WideResNet:
        """The network with these weights loaded (``strict=True``), in eval mode."""
        net = build_model(self.model, in_channels=self.in_channels, num_classes=self.num_classes)
        net.load_state_dict(self.state_dict, strict=True)
        return net.to(device).eval()

    def require(self, role: str, **expected: Any) -> None:
        """A one-line TGDError naming the checkpoint (``role``: what it is to the run) when an
        attribute differs from ``expected``'s (e.g. ``num_classes=10``): :func:`require_fit`."""
        require_fit(f"{role} {self.path}", {k: getattr(self, k) for k in expected}, expected)


def require_fit(what: str, found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """TGDError ``"<what> does not fit this run: num_classes 3, expected 10"`` when a value of
    ``found`` differs from ``expected``'s (``what`` names the checkpoint and its role)."""
    diffs = [f"{k} {found[k]}, expected {v}" for k, v in expected.items() if found[k] != v]
    if diffs:
        raise TGDError(f"{what} does not fit this run: {'; '.join(diffs)}")


def library_versions() -> dict[str, str]:
    return {"torch": str(torch.__version__), "python": platform.python_version(),
            "tgd": str(tgd_core.__version__)}


def current_git_commit(root: Path = paths.PROJECT_ROOT) -> str | None:
    """HEAD of the project's git checkout (with ``-dirty`` when it has changes), or None."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _state(obj: Any) -> Any:
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


class NonFiniteError(TGDError):
    """A checkpoint refused (or found) with NaN or infinite tensors; ``bad``: their names."""

    def __init__(self, message: str, bad: list[str], total: int) -> None:
        super().__init__(message)
        self.bad, self.total = bad, total

    @property
    def detail(self) -> str:
        """``"N of M tensors hold NaN or inf (first names)"``."""
        return describe_non_finite(self.bad, self.total)


def named_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, with a dotted name."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from named_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from named_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def _extremes(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per tensor, values that are NaN or inf exactly when the tensor holds one, stacked on
    its device. Accelerators: one fused multi-tensor max-|x| (``_foreach_norm`` with ord=inf:
    unlike the 2-norm it cannot overflow). CPU, where a launch costs nothing but that kernel is
    scalar code: each tensor's ``aminmax`` (vectorised; NaN propagates), 5-8x faster."""
    if tensors[0].device.type == "cpu":
        return torch.stack([torch.stack(torch.aminmax(t)) for t in tensors])
    return torch.stack(torch._foreach_norm(tensors, float("inf")))


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> tuple[list[str], int]:
    """(names of the floating-point tensors holding a NaN or an infinity, number checked).

    Per (device, dtype): one stacked reduction (:func:`_extremes`), one ``isfinite`` and one
    host transfer — never a host sync per tensor.
    """
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[str, torch.Tensor]]] = {}
    names = []  # in the order given
    for name, t in tensors:
        if t.is_floating_point() and t.numel():
            groups.setdefault((t.device, t.dtype), []).append((name, t.detach()))
            names.append(name)
    bad = set()
    for items in groups.values():
        extremes = _extremes([t for _, t in items])
        finite = torch.isfinite(extremes).reshape(len(items), -1).all(1).cpu().tolist()
        bad.update(name for (name, _), ok in zip(items, finite, strict=True) if not ok)
    return [name for name in names if name in bad], len(names)


def describe_non_finite(bad: list[str], total: int) -> str:
    shown = ", ".join(bad[:3]) + (", …" if len(bad) > 3 else "")
    return f"{len(bad)} of {total} tensors hold NaN or inf ({shown})"


def save_checkpoint(path: str | Path, model: WideResNet, *, input_kind: str,
                    normalization: Normalization, optimizer: Any = None, scheduler: Any = None,
                    training_state: Mapping[str, Any] | None = None, epoch: int | None = None,
                    metrics: Mapping[str, Any] | None = None,
                    config: Mapping[str, Any] | None = None,
                    git_commit: str | None = None) -> Path:
    """Write ``model`` (and optional optimizer/scheduler objects or state dicts) atomically.

    Refused with :class:`NonFiniteError` when any floating-point tensor (weights, BatchNorm
    buffers, optimizer, scheduler or training state) holds NaN or inf: a checkpoint on disk is
    always a finite one. The bytes must read back with ``weights_only=True`` (so metrics and
    config must be plain numbers, strings, lists, dicts or tensors) and go to disk with
    :func:`~tgd_core.core.fileio.atomic_write` (fault point ``checkpoint-<file name>``): a crash
    never leaves a half-written checkpoint. ``git_commit`` defaults to the checkout's HEAD.
    """
    if input_kind not in INPUT_KINDS:
        raise TGDError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    if normalization.channels != model.in_channels:
        raise TGDError(f"normalisation has {normalization.channels} channels, "
                       f"the model takes {model.in_channels}")
    path = Path(path)
    _normalization(path, normalization.to_dict())  # finite: what a load accepts
    payload: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "model": model_name(model.depth, model.width),
        "in_channels": model.in_channels, "num_classes": model.num_classes,
        "input_kind": input_kind, "normalization": normalization.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _state(optimizer), "scheduler": _state(scheduler),
        "training_state": dict(training_state) if training_state is not None else None,
        "epoch": epoch,
        "metrics": dict(metrics or {}), "config": dict(config or {}),
        "versions": library_versions(),
        "git_commit": git_commit if git_commit is not None else current_git_commit(),
    }
    buffer = _checked_bytes(payload, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()),
                        fault=f"checkpoint-{path.name}")


def _checked_bytes(payload: dict[str, Any], path: Path) -> io.BytesIO:
    """``payload`` serialised, once it is finite (:class:`NonFiniteError`) and reads back under
    ``weights_only=True`` (:class:`TGDError` naming the field that does not)."""
    bad, total = non_finite_tensors(named_tensors(
        {k: payload[k] for k in ("state_dict", *TRAINING_ONLY)}))
    if bad:
        raise NonFiniteError(f"{path}: not saved: {describe_non_finite(bad, total)}",
                             bad, total)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    try:
        _load(buffer, path)
    except TGDError as exc:
        raise TGDError(f"{path}: not saved: fields must be plain numbers, strings, lists, "
                       f"dicts or tensors ({str(exc).split(': ', 1)[1]})") from None
    return buffer


def stripped_bytes(src: str | Path) -> bytes:
    """Our checkpoint at ``src`` without :data:`TRAINING_ONLY` (what a shipped model or an
    archived teacher needs: weights, architecture, normalisation, epoch, metrics, config, and
    the versions and commit it was trained with), serialised: the same bytes for the same
    checkpoint. About half the file for an SGD-with-momentum run."""
    path = Path(src)
    raw = _read(path)
    if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
        raise TGDError(f"{path}: not a '{FORMAT}' file: nothing to strip")
    _from_ours(path, raw)  # validated as any checkpoint we load
    payload = {**raw, **dict.fromkeys(TRAINING_ONLY)}
    return _checked_bytes(payload, path).getvalue()


def strip_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write :func:`stripped_bytes` of ``src`` to ``dst`` (atomically)."""
    data = stripped_bytes(src)
    return atomic_write(Path(dst), lambda f: f.write(data), fault=f"checkpoint-{Path(dst).name}")


@memoised_by_stat
def weights_sha256(path: str) -> str | None:
    """The SHA-256 of the network a checkpoint holds — architecture, input kind,
    normalisation, and the state dict's names, dtypes, shapes and values in name order —,
    what a run that starts from it depends on: equal for a checkpoint and its stripped copy
    (:func:`stripped_bytes`), whatever else the file holds. None where ``path`` holds no
    readable checkpoint."""
    try:
        ckpt = load_checkpoint(path)
    except TGDError:
        return None
    digest = hashlib.sha256(json.dumps(
        [ckpt.model, ckpt.in_channels, ckpt.num_classes, ckpt.input_kind,
         ckpt.normalization.to_dict()]).encode())
    for name in sorted(ckpt.state_dict):
        tensor = ckpt.state_dict[name].detach().cpu().contiguous()
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _one_line(exc: BaseException, limit: int = 120) -> str:
    """``Type: first sentence`` of an exception's message, on one line, with quoted fragments
    (which may be bytes of the file) replaced by '…'."""
    text = re.sub(r"\s+", " ", str(exc)).strip().split(". ")[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTO = b"\x80"  # legacy torch.save / plain pickle
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]{1,100})")


def _load(source: Path | IO[bytes], path: Path) -> Any:
    """``torch.load(source, weights_only=True)`` with one-line errors naming ``path``; no
    message quotes the file's content."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" not in text.lower():
            raise TGDError(f"{path}: not a PyTorch checkpoint (not a valid pickle)") from None
        found = _GLOBAL.search(text)
        detail = (f"the class {found.group(1)}" if found
                  else "objects other than tensors and containers")
        raise TGDError(f"{path}: holds {detail}, which safe loading (weights_only=True) refuses; "
                       "not a TGD checkpoint") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... for damaged archives
        raise TGDError(f"{path}: damaged or truncated checkpoint ({_one_line(exc)})") from None


def _read(path: Path) -> Any:
    if not path.exists():
        raise TGDError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise TGDError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise TGDError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise TGDError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    return _load(path, path)


# -- the payload's structure: one schema, one validator, for every load path ---------------


@dataclass(frozen=True)
class Kind:
    """What a payload field may hold: an instance of ``types`` (a bool is no number), described
    as ``name``; ``items``: the kind of a mapping's values or a list's items; ``fields``: a
    mapping's own fields, checked in turn; ``required``: the field must be present."""

    types: tuple[type, ...]
    name: str
    items: Kind | None = None
    fields: Mapping[str, Kind] | None = None
    required: bool = False

    def admits(self, value: Any) -> bool:
        return isinstance(value, self.types) and (bool in self.types
                                                  or not isinstance(value, bool))


def _optional(kind: Kind) -> Kind:
    return replace(kind, types=(*kind.types, type(None)), name=f"{kind.name} or None")


def _required(kind: Kind) -> Kind:
    return replace(kind, required=True)


INT, NUMBER = Kind((int,), "an integer"), Kind((int, float), "a number")
STR, MAPPING = Kind((str,), "a string"), Kind((Mapping,), "a mapping")
NUMBERS = Kind((list, tuple), "a list of numbers", items=NUMBER)
TENSORS = Kind((Mapping,), "a mapping of tensors", items=Kind((torch.Tensor,), "a tensor"))
_NORMALIZATION = {"mean": _required(NUMBERS), "std": _required(NUMBERS)}
_LOOP = {  # a LoopState's payload (tgd_core.training.loop_state); absent keys keep defaults
    "epoch": INT, "step": INT, "sums": replace(MAPPING, name="a mapping of numbers",
                                               items=NUMBER),
    "correct": INT, "seen": INT, "elapsed": NUMBER, "epoch_elapsed": NUMBER,
    "best_accuracy": NUMBER, "best_epoch": _optional(INT), "best": _optional(MAPPING),
    "last": _optional(MAPPING)}
_TRAINING_STATE = {"loop": replace(MAPPING, fields=_LOOP), "method": TENSORS}
OURS_FIELDS = {
    "version": _required(INT), "model": _required(STR), "in_channels": _required(INT),
    "num_classes": _required(INT), "input_kind": _required(STR),
    "normalization": _required(replace(MAPPING, fields=_NORMALIZATION)),
    "state_dict": _required(MAPPING), "optimizer": _optional(MAPPING),
    "scheduler": _optional(MAPPING),
    "training_state": _optional(replace(MAPPING, fields=_TRAINING_STATE)),
    "epoch": _optional(INT), "metrics": _optional(MAPPING),
    "config": _optional(replace(MAPPING, fields={"pi": _optional(MAPPING)})),
    "versions": _optional(MAPPING), "git_commit": _optional(STR)}
OFFICIAL_FIELDS = {"model_state_dict": _required(MAPPING),
                   "optimizer_state_dict": _optional(MAPPING), "epoch": _optional(INT)}


def check_fields(path: Path, payload: Mapping[str, Any], fields: Mapping[str, Kind],
                 prefix: str = "") -> None:
    """Every required field of ``fields`` is in ``payload`` and every field there is of its
    kind, recursively: else a one-line TGDError naming ``path`` and the field (e.g. "field
    'metrics' must be a mapping, not list"), never quoting the value."""
    for name, kind in fields.items():
        if name in payload:
            _check_value(path, f"{prefix}{name}", payload[name], kind)
        elif kind.required:
            raise TGDError(f"{path}: checkpoint lacks the field '{prefix}{name}'")


def _check_value(path: Path, where: str, value: Any, kind: Kind) -> None:
    """``value`` (field ``where``) is of ``kind``: its type, its items' kinds, its fields."""
    if not kind.admits(value):
        raise TGDError(f"{path}: field '{where}' must be {kind.name}, not {type(value).__name__}")
    if value is None:
        return
    if kind.items is not None:
        items = value.values() if isinstance(value, Mapping) else value
        bad = [type(v).__name__ for v in items if not kind.items.admits(v)]
        if bad:
            raise TGDError(f"{path}: field '{where}' must be {kind.name}; it holds {bad[0]}")
    if kind.fields:
        check_fields(path, value, kind.fields, f"{where}.")


def _normalization(path: Path, data: Mapping[str, Any]) -> Normalization:
    """The normalisation of (fields-checked) ``data``: finite means and finite positive stds,
    one per channel (a NaN or infinite one makes every input NaN, every prediction one class)."""
    mean, std = data["mean"], data["std"]
    if not all(math.isfinite(v) for v in (*mean, *std)) or not all(s > 0 for s in std):
        raise TGDError(f"{path}: normalisation mean and std must be finite, std positive")
    try:
        return Normalization.from_dict(data)
    except TGDError as exc:
        raise TGDError(f"{path}: {exc}") from None


@functools.lru_cache(maxsize=32)
def _expected_shapes(model: str, in_channels: int, num_classes: int) -> dict[str, tuple]:
    """Key -> shape of the state dict of the architecture, from a model built once on the CPU
    (~20 ms for a WRN16-3; the meta device would cost ~1.5 s on first use, importing torch's
    decompositions, which the app pays at start-up). The model's random init runs on a forked
    RNG: loading a checkpoint never moves the global random state (a run's seeding would
    otherwise depend on whether this cache was already filled in the process)."""
    with torch.random.fork_rng(devices=[]):
        sd = build_model(model, in_channels, num_classes).state_dict()
    return {k: tuple(v.shape) for k, v in sd.items()}


def _check_declared(path: Path, sd: Mapping[str, Any], in_channels: int,
                    num_classes: int) -> None:
    """The declared architecture numbers are in bounds and are those of the state dict's
    tensors (conv1's input channels, fc's rows): checked before any model is built, so a
    header cannot make the loader allocate what the file does not hold."""
    for name, value, bound, key, dim in [("in_channels", in_channels, MAX_IN_CHANNELS,
                                          "conv1.weight", 1),
                                         ("num_classes", num_classes, MAX_CLASSES,
                                          "fc.weight", 0)]:
        if not 1 <= value <= bound:
            raise TGDError(f"{path}: {name} {value} is not in 1..{bound}")
        tensor = sd.get(key)
        found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None
        if found is None or len(found) <= dim or found[dim] != value:
            raise TGDError(f"{path}: {name} {value} does not match {key} of shape {found}")


def shape_mismatch(expected: Mapping[str, tuple], sd: Mapping[Any, Any]) -> str | None:
    """The first difference between ``sd`` and the key -> shape map ``expected`` (missing or
    unexpected keys, then the first tensor of another shape), or None when they match."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(str(k)[:80] for k in sd if k not in expected)
    if missing or unexpected:
        return (f"{len(missing)} missing keys e.g. {missing[:2]}, {len(unexpected)} unexpected "
                f"e.g. {unexpected[:2]}")
    for key, shape in expected.items():
        found = tuple(sd[key].shape) if isinstance(sd[key], torch.Tensor) else None
        if found != tuple(shape):
            return f"{key} has shape {found}, expected {tuple(shape)}"
    return None


def check_shapes(path: Path, what: str, reference: Mapping[str, torch.Tensor],
                 state: Mapping[Any, Any]) -> None:
    """``state`` (e.g. a method's saved state) has the keys and tensor shapes of the module
    state ``reference``: else a one-line TGDError naming ``path`` and the first mismatch."""
    problem = shape_mismatch({k: tuple(v.shape) for k, v in reference.items()}, state)
    if problem:
        raise TGDError(f"{path}: {what} does not fit this run: {problem}")


def _check_state_dict(path: Path, sd: Any, model: str, in_channels: int,
                      num_classes: int) -> dict[str, torch.Tensor]:
    """The state dict must match the declared architecture key for key and shape for shape."""
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise TGDError(f"{path}: state dict is not a mapping of tensors")
    _check_declared(path, sd, in_channels, num_classes)
    problem = shape_mismatch(_expected_shapes(model, in_channels, num_classes), sd)
    if problem:
        raise TGDError(f"{path}: state dict does not fit {model}: {problem}")
    odd = next((k for k, v in sd.items() if v.is_complex() or not (
        v.is_floating_point() or k.endswith("num_batches_tracked"))), None)
    if odd is not None:  # loading would cast it: a complex weight loses its imaginary part
        raise TGDError(f"{path}: {odd} holds {str(sd[odd].dtype).removeprefix('torch.')} "
                       "values; a network's weights are real floating-point numbers")
    bad, total = non_finite_tensors(sd.items())
    if bad:
        raise NonFiniteError(f"{path}: unusable weights: {describe_non_finite(bad, total)} "
                             "(the run that wrote it diverged)", bad, total)
    return dict(sd)


def infer_architecture(sd: Mapping[str, Any]) -> tuple[str, int, int]:
    """(registry name, in_channels, num_classes) of a WRN state dict, from its tensor shapes."""
    try:
        in_channels = int(sd["conv1.weight"].shape[1])
        width, rem = divmod(int(sd["block1.nblockLayer.0.conv1.weight"].shape[0]), 16)
        num_classes = int(sd["fc.weight"].shape[0])
    except (KeyError, AttributeError, IndexError, TypeError) as exc:
        raise TGDError(f"not a Wide-ResNet state dict (missing or odd {exc})") from None
    blocks = {int(m.group(1)) for k in sd
              if (m := re.match(r"block1\.nblockLayer\.(\d+)\.", str(k)))}
    if rem or not blocks:
        raise TGDError("not a Wide-ResNet state dict (group widths are not multiples of 16)")
    return model_name(6 * len(blocks) + 4, width), in_channels, num_classes


def _from_official(path: Path, raw: Mapping[str, Any]) -> Checkpoint:
    check_fields(path, raw, OFFICIAL_FIELDS)
    sd = raw["model_state_dict"]
    try:
        name, in_channels, num_classes = infer_architecture(sd)
    except TGDError as exc:
        raise TGDError(f"{path}: {exc}") from None
    if in_channels not in _DEFAULT_NORMALIZATION:
        raise TGDError(f"{path}: authors' checkpoint with {in_channels} input channels; "
                       "only 3 (raw images) or 6 (persistence images) are known")
    input_kind, normalization = _DEFAULT_NORMALIZATION[in_channels]
    return Checkpoint(
        model=name, in_channels=in_channels, num_classes=num_classes, input_kind=input_kind,
        normalization=normalization,
        state_dict=_check_state_dict(path, sd, name, in_channels, num_classes),
        optimizer=raw.get("optimizer_state_dict"), epoch=raw.get("epoch"),
        source="official", path=path,
    )


def _from_ours(path: Path, raw: Mapping[str, Any]) -> Checkpoint:
    """Our format, once :data:`OURS_FIELDS` (the version first) and the values are checked."""
    check_fields(path, raw, {"version": OURS_FIELDS["version"]})
    if not 1 <= raw["version"] <= VERSION:
        raise TGDError(f"{path}: checkpoint format version {raw['version']} is not supported "
                       f"(this TGD reads versions 1..{VERSION})")
    check_fields(path, raw, OURS_FIELDS)
    name, in_channels, num_classes = raw["model"], raw["in_channels"], raw["num_classes"]
    input_kind, normalization = raw["input_kind"], _normalization(path, raw["normalization"])
    if input_kind not in INPUT_KINDS:
        raise TGDError(f"{path}: input_kind {input_kind[:40]!r} is not one of {INPUT_KINDS}")
    if name not in MODELS:
        raise TGDError(f"{path}: unknown model {name[:40]!r}; known: {sorted(MODELS)}")
    if normalization.channels != in_channels:
        raise TGDError(f"{path}: normalisation has {normalization.channels} channels, "
                       f"the model takes {in_channels}")
    return Checkpoint(
        model=name, in_channels=in_channels, num_classes=num_classes,
        input_kind=input_kind, normalization=normalization,
        state_dict=_check_state_dict(path, raw["state_dict"], name, in_channels, num_classes),
        optimizer=raw.get("optimizer"), scheduler=raw.get("scheduler"),
        training_state=raw.get("training_state"), epoch=raw.get("epoch"),
        metrics=dict(raw.get("metrics") or {}), config=dict(raw.get("config") or {}),
        versions=dict(raw.get("versions") or {}), git_commit=raw.get("git_commit"),
        source="tgd", path=path,
    )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read our checkpoint or an authors' file safely (``weights_only=True``); TGDError if not."""
    path = Path(path)
    raw = _read(path)
    if not isinstance(raw, Mapping):
        raise TGDError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict")
    if raw.get("format") == FORMAT:
        return _from_ours(path, raw)
    if _OFFICIAL_KEYS <= set(raw):
        return _from_official(path, raw)
    keys = sorted(map(str, raw))
    shown = ", ".join(keys[:6]) + (", …" if len(keys) > 6 else "")
    raise TGDError(f"{path}: unrecognised checkpoint (keys: {shown or 'none'}); expected a "
                   f"'{FORMAT}' file or the TGD authors' model_state_dict/optimizer_state_dict")


def load_optimizer_state(path: Path, optimizer: torch.optim.Optimizer,
                         state: Mapping[str, Any] | None) -> None:
    """``optimizer.load_state_dict(state)`` (``state``: a checkpoint's, at ``path``), or a
    one-line TGDError naming ``path`` when there is none (a stripped checkpoint) or it is
    the state of other parameters (another number, or buffers of other shapes)."""
    if state is None:
        raise TGDError(f"{path}: holds no optimizer state to resume from (a stripped copy?)")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise TGDError(f"{path}: optimizer state does not fit this run ({_one_line(exc)})"
                       ) from None
    for param, buffers in optimizer.state.items():
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                raise TGDError(f"{path}: optimizer state does not fit this run ({name} of "
                               f"shape {tuple(value.shape)} for a parameter of shape "
                               f"{tuple(param.shape)})")
