"""Typed, validated training configuration (one config for ``tgd train`` and ``tgd distill``).

Defaults follow the TGD reference recipe (``TGD_METHOD.md`` §5): 200 epochs, batch 128, SGD
momentum 0.9, weight decay 1e-4, LR 0.1 × 0.2 at epochs 40/80/120/160, no augmentation, seed 1234.
Every run saves its config beside its results, so a run is reproducible from its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tgd_core.core.validation import validated

# Upper bounds of a run: far above any real protocol (the paper's is 200 epochs, batch 128,
# 50,000 images), low enough that a typo or a hostile form cannot queue a run without end.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 8_192
MAX_IMAGES = 10_000_000
MAX_SEED = 2**32 - 1  # numpy's seed range

# How live teachers run (tgd_core.nets.teacher_inference): the exact network, BatchNorm folded
# into the convolutions, or int8 post-training quantised (CPU).
TeacherInference = Literal["exact", "folded", "int8"]

# torch.compile's modes for the fast loop's step (``max-autotune`` also uses CUDA graphs).
CompileMode = Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"]

# What a field says about a run (declared with each field, read by ``fields_of_kind``):
# "placement" — where or how fast it runs, never what is learned (a run may resume elsewhere);
# "bookkeeping" — how it evaluates, checkpoints or caches along the way (a finished run's
# checkpoint is the same model whatever these were). Every other field is "learned".
PLACEMENT = {"kind": "placement"}
BOOKKEEPING = {"kind": "bookkeeping"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # what to train
    method: str = "scratch"
    method_params: dict[str, Any] = Field(default_factory=dict)
    student: str = "wrn16_1"
    student_input: Literal["raw", "pi"] = "raw"
    teachers: dict[str, str] = Field(default_factory=dict, description="role -> checkpoint")
    init_student: str | None = None

    # data
    dataset: Literal["cifar10", "cinic10", "imagefolder"] = "cifar10"
    data_dir: str | None = Field(None, json_schema_extra=PLACEMENT)
    train_subset: int | None = Field(None, ge=1, le=MAX_IMAGES)
    test_split: str = "test"
    test_subset: int | None = Field(None, ge=1, le=MAX_IMAGES)
    pi: dict[str, Any] = Field(default_factory=lambda: {"mode": "paper"})
    augment: bool = False
    pi_on_the_fly: bool = Field(False, description="PIs of each (augmented) training view")
    fixed_batches: bool = Field(False, description="draw the batches' composition once")
    teacher_cache: bool = Field(True, description="cache teacher targets (no augmentation)",
                                json_schema_extra=BOOKKEEPING)
    teacher_cache_gib: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="the teacher cache's most GiB (None: 4 on "
        "the CPU, no cap on CUDA); on CUDA also at most half the free device memory",
        json_schema_extra=BOOKKEEPING)
    teacher_inference: TeacherInference = Field(
        "exact", description="how the teachers run: exact float32, 'folded' (BatchNorm folded "
        "into the convolutions, exact up to rounding) or 'int8' (post-training quantised, CPU)")

    # optimisation
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)
    lr: float = Field(0.1, gt=0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    nesterov: bool = False
    schedule: Literal["step", "cosine", "onecycle"] = "step"
    milestones: list[int] = Field(default_factory=lambda: [40, 80, 120, 160])
    gamma: float = Field(0.2, gt=0)
    warmup_epochs: float = Field(0.0, ge=0)

    # run
    seed: int = Field(1234, ge=0, le=MAX_SEED)
    device: str = Field("auto", json_schema_extra=PLACEMENT)
    amp: bool = False
    channels_last: bool = False
    engine: Literal["auto", "standard", "fast"] = Field(
        "auto", description="training loop: standard (host-side batches, one sync a step), "
        "fast (device-resident batches, syncs every sync_every_steps; "
        "tgd_core.training.fast), auto: fast on CUDA, standard elsewhere",
        json_schema_extra=PLACEMENT)
    compile: bool | None = Field(None, description="fast engine: torch.compile the step "
                                 "(None: on CUDA)", json_schema_extra=PLACEMENT)
    compile_mode: CompileMode = Field(
        "default", description="fast engine: torch.compile's mode; 'reduce-overhead' replays "
        "the step as CUDA graphs (one launch for all its kernels; CUDA only, elsewhere the "
        "default)", json_schema_extra=PLACEMENT)
    sync_every_steps: int = Field(50, ge=1, le=100_000, description="fast engine: steps "
                                  "between reads of the device-side totals (divergence, "
                                  "progress, stop requests)", json_schema_extra=PLACEMENT)
    threads: int | None = Field(None, ge=1, json_schema_extra=PLACEMENT)
    sync_batchnorm: bool = Field(True, description="under torchrun: BatchNorm statistics of "
                                 "the global batch (else of each rank's shard)",
                                 json_schema_extra=BOOKKEEPING)
    eval_every: int = Field(1, ge=1, json_schema_extra=BOOKKEEPING)
    checkpoint_every_steps: int = Field(0, ge=0, description="0: at epoch ends only",
                                        json_schema_extra=BOOKKEEPING)
    out_dir: str = Field("runs/run", json_schema_extra=PLACEMENT)

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if sorted(v) != v or any(m < 1 for m in v):
            raise ValueError("milestones must be increasing positive epochs")
        return v

    @field_validator("pi")
    @classmethod
    def _representation(cls, v: dict[str, Any]) -> dict[str, Any]:
        """The PI representation must parse for every run (a raw-image run's ``pi`` is still
        saved and compared), so a bad one fails here, naming the field."""
        from tgd_core.topology.representation import representation_from_dict

        representation_from_dict(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        from tgd_core.distill import METHODS
        from tgd_core.nets.models import MODELS

        if self.method not in METHODS:
            raise ValueError(f"method: unknown {self.method!r}; choose from {sorted(METHODS)}")
        if self.student not in MODELS:
            raise ValueError(f"student: unknown model {self.student!r}; choose from "
                             f"{sorted(MODELS)}")
        from tgd_core.data.datasets import dataset_splits

        if self.test_split not in dataset_splits(self.dataset):
            raise ValueError(f"test_split: {self.test_split!r} is not a split of "
                             f"{self.dataset} {dataset_splits(self.dataset)}")
        method = METHODS[self.method]
        missing = set(method.teacher_roles) - set(self.teachers)
        if missing:
            raise ValueError(f"teachers: method {self.method!r} needs {sorted(missing)}")
        method.Params(**self.method_params)  # validates the method's own parameters
        return self

    @classmethod
    def fields_of_kind(cls, *kinds: str) -> frozenset[str]:
        """Names of the fields declared as one of ``kinds`` ("placement", "bookkeeping";
        "learned" for the undeclared rest)."""
        def kind(info) -> str:
            return (info.json_schema_extra or {}).get("kind", "learned")

        return frozenset(n for n, info in cls.model_fields.items() if kind(info) in kinds)

    def differences(self, saved: dict[str, Any], *, ignore: tuple[str, ...] = ("placement",)
                    ) -> list[str]:
        """Fields whose value in ``saved`` (a run's config.json) differs from this config,
        fields of the kinds in ``ignore`` aside."""
        skip = self.fields_of_kind(*ignore)
        now = self.model_dump()
        return sorted(k for k in now if k not in skip and saved.get(k) != now[k])

    @classmethod
    def build(cls, **values: Any) -> TrainConfig:
        """Validate ``values``; errors become one TGDError naming the fields."""
        return validated(cls, values, "invalid training config", show_input=False)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """The config saved in the JSON file ``path`` (e.g. a run's config.json), with
        ``overrides`` on top; TGDError naming the file or the fields otherwise."""
        from tgd_core.commands import read_json_object

        return cls.build(**{**read_json_object(path), **overrides})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")
