"""The fast training loop for accelerators: :class:`FastTrainer`, a variant of
:class:`~tgd_core.training.trainer.Trainer` with the same losses, LR schedule, seeding, files and
resume (``engine: fast``, or ``auto`` on CUDA; issue #14).

What changes is where the work happens and how often the host waits for the device:

- :class:`DeviceData` makes each epoch's batches on the device: the epoch's sample order (the
  permutation :meth:`~.data.TrainData.epoch_plan` draws, so batches are the standard loop's) and
  every step's crops and flips (:meth:`~.data.TrainData.step_crop_flip`, functions of (seed,
  epoch, step)) are drawn once per epoch on the host and copied to the device in one transfer;
  a step indexes the resident uint8 images (and PI stacks) and crops, flips and scales them there.
- No host↔device synchronisation per step: every step adds its loss terms (Σ term·n), correct
  predictions and a non-finite flag to one float64 accumulator on the device, which the host
  reads every ``sync_every_steps`` steps, at every checkpoint and at the end of the epoch
  (:meth:`FastTrainer.sync`). The trade-off: a non-finite loss is *detected* up to
  ``sync_every_steps - 1`` steps late (those steps are wasted; the error names the step where it
  happened, with that step's loss terms, as the standard loop's does), but it always stops the
  run before any checkpoint is written — every save is preceded by a read — so no checkpoint ever
  holds the diverged weights, and ``last good checkpoint`` names the same file. Stop requests
  (``ctx.should_stop``) and progress are likewise handled at reads.
- bf16 autocast and channels_last as configured (``amp``, ``channels_last``), fused SGD on CUDA
  (``torch.optim.SGD(fused=True)``; the same update as the standard loop's, up to rounding),
  cuDNN autotuning, and the forward pass with its losses compiled (``compile``; default on CUDA):
  full batches run the compiled step (static shapes), an epoch's last partial batch runs the same
  step eagerly, so it never triggers a recompilation. ``compile_mode: reduce-overhead`` records
  the compiled step (forward and backward) as CUDA graphs and replays them, one launch for all
  of a step's kernels, for networks too small to keep the GPU busy between launches (each step
  marks the start of a new replay, and the gradients are released before it). Should compiling
  (or running) the compiled step fail — a compiler stack that differs from the one tested — the
  run warns once, goes on eagerly with the same numbers, and says so in ``result.json``
  (``compiled_step``, ``compile_error``), rather than losing a device session to it.
- Teacher targets, when nothing changes between epochs (no augmentation), come from the
  :class:`~.targets.TargetCache` as in the standard loop; it is filled once, before the first
  step, from the first epoch's batches, then read by index on the device without the cache's
  per-step check of what is filled. Where the cache keeps the teachers' per-sample outputs
  (batches reshuffled every epoch: SP's and TGD's similarity maps), the step gathers the batch's
  rows and makes the maps inside the compiled step, fused and replayed with it. With
  augmentation the teachers run live, inside the compiled step. On-the-fly PIs are computed by
  the topology engine on the host from the augmented views (:meth:`Trainer.batches`,
  prefetched in a thread); only then do batches come from the host.

On a CPU device the fast loop computes what the standard loop computes (same batches, same
augmentation, the same SGD when not fused): ``tests/test_fast_path.py`` checks it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import torch

from tgd_core.core.distributed import SINGLE, DistContext
from tgd_core.training.data import TrainBatch, TrainData
from tgd_core.training.loop_state import StepResult
from tgd_core.training.run_files import call_context
from tgd_core.training.stopping import Stopped
from tgd_core.training.trainer import Trainer, learning_rate

log = logging.getLogger(__name__)


def uses_fast_engine(engine: str, device: torch.device) -> bool:
    """Whether a run with ``engine`` on ``device`` trains with :class:`FastTrainer`."""
    return engine == "fast" or (engine == "auto" and device.type == "cuda")


class DeviceData:
    """The training batches of a :class:`~.data.TrainData` whose splits are on the device,
    made on the device: per epoch one host→device copy of the sample order and of every step's
    crops and flips; per step only device operations."""

    def __init__(self, data: TrainData) -> None:
        self.data, self.device = data, data.device
        self.batch_size = data.cfg.batch_size

    def global_size(self, batch: int) -> int:
        """Samples in batch ``batch`` (the last one may be partial)."""
        return min(self.batch_size, len(self.data.train) - batch * self.batch_size)

    def epoch_crops(self, epoch: int, batches: list[int]) -> tuple[torch.Tensor, ...] | None:
        """Every step's crop rows, columns and flips, concatenated in step order, on the device
        (one copy); None without augmentation."""
        drawn = [self.data.step_crop_flip(epoch, step, self.global_size(b))
                 for step, b in enumerate(batches)]
        if drawn[0] is None:
            return None
        return tuple(torch.cat(parts).to(self.device) for parts in zip(*drawn, strict=True))

    def train_batches(self, epoch: int, start_step: int = 0, shard: DistContext = SINGLE
                      ) -> Iterator[TrainBatch]:
        """The batches of ``epoch`` from ``start_step`` (this rank's shard of each), as
        :meth:`~.data.TrainData.train_batches` makes them, without host↔device syncs."""
        data, bs = self.data, self.batch_size
        order, batches = data.epoch_plan(epoch)
        order = order.to(self.device)
        crops = self.epoch_crops(epoch, batches)
        offsets = [0]
        for b in batches:
            offsets.append(offsets[-1] + self.global_size(b))
        for step in range(start_step, len(batches)):
            batch, size = batches[step], self.global_size(batches[step])
            part = shard.shard(size)
            idx = order[batch * bs:batch * bs + size][part]
            crop = None
            if crops is not None:
                crop = tuple(c[offsets[step]:offsets[step + 1]][part] for c in crops)
            views = TrainData.views(data.train, idx, crop)
            yield TrainBatch(step, batch, idx, data._inputs(data.train, idx, views),
                             data.train.labels[idx], size)


class FastTrainer(Trainer):
    """The training loop with device-resident batches and deferred syncs (see module doc)."""

    def setup(self, resume: bool) -> None:
        """The standard setup, then: cuDNN autotuning, the device batches, the cache filled,
        the (compiled) step and the device-side accumulator."""
        super().setup(resume)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.device_data = None if self.data.on_the_fly else DeviceData(self.data)
        self.cache_full = False
        compile_step = (self.cfg.compile if self.cfg.compile is not None
                        else self.device.type == "cuda")
        self.compiled_loss = (torch.compile(self.step_loss, dynamic=False,
                                            mode=self.cfg.compile_mode) if compile_step
                              else None)
        self.graphed = compile_step and self.cfg.compile_mode in ("reduce-overhead",
                                                                  "max-autotune")
        self.compile_error: str | None = None
        self.fill_target_cache()
        self.reset_totals()

    def optimizer_options(self) -> dict:
        """Fused SGD on CUDA (one kernel for the whole update)."""
        return {"fused": True} if self.device.type == "cuda" else {}

    def fill_target_cache(self) -> None:
        """Fill the teacher-target cache from the first epoch's batches (what the standard
        loop's first epoch fills it with), so that steps read it without checking."""
        if self.cache is None or self.device_data is None:
            return
        with torch.no_grad(), self.amp:
            for b in self.device_data.train_batches(0, 0, self.dist):
                self.cache.targets(self.distiller, self.step_inputs(b), b.idx, b.batch)
        self.cache_full = bool(self.cache.filled.all())

    def reset_totals(self) -> None:
        """Zero the device-side totals of the steps since the last read."""
        self.totals: torch.Tensor | None = None  # Σ term·n..., correct, non-finite (float64)
        self.first_bad: torch.Tensor | None = None  # step, loss terms of the first bad step
        self.pending_seen, self.pending_last = 0, -1

    # -- the loop ---------------------------------------------------------------------------

    def batches(self, epoch: int) -> Iterator[TrainBatch]:
        """Device-made batches; host-made (prefetched) ones with on-the-fly PIs."""
        if self.device_data is None:
            return super().batches(epoch)
        return self.device_data.train_batches(epoch, self.state.step, self.dist)

    def train_epoch(self, epoch: int) -> float:
        """The remaining steps of ``epoch``, the totals read every ``sync_every_steps`` steps
        and at the last; returns its training seconds (all stretches)."""
        self.distiller.train()
        self.segment_start = time.perf_counter()
        bar = self.progress_bar(epoch)
        try:
            batches = self.batches(epoch)
            with contextlib.closing(batches):
                for b in batches:
                    self.train_step(b, epoch)
                    if self.read_due(b.step):
                        self.sync(epoch, bar)
        finally:
            bar.close()
        return self.state.epoch_elapsed + time.perf_counter() - self.segment_start

    def read_due(self, step: int) -> bool:
        """Whether the totals are read after ``step``: every ``sync_every_steps``, before a
        mid-epoch checkpoint, and at the epoch's last step."""
        done, every = step + 1, self.cfg.checkpoint_every_steps
        return (done == self.steps or done % self.cfg.sync_every_steps == 0
                or bool(every and done % every == 0))

    def step_inputs(self, b: TrainBatch) -> dict[str, torch.Tensor]:
        """The batch's inputs in the configured memory format."""
        if not self.cfg.channels_last:
            return b.inputs
        return {k: v.contiguous(memory_format=torch.channels_last) for k, v in b.inputs.items()}

    def step_targets(self, inputs: dict[str, torch.Tensor], b: TrainBatch
                     ) -> tuple[dict[str, torch.Tensor] | None, bool]:
        """Cached teacher targets of the batch (None: the teachers run in the step), and
        whether they are still the teachers' per-sample outputs, of which :meth:`step_loss`
        makes the batch's targets (similarity maps) inside the compiled step."""
        cache = self.cache
        if cache is None:
            return None, False
        if not self.cache_full:
            with self.amp:
                return cache.targets(self.distiller, inputs, b.idx, b.batch), False
        if cache.derive is not None:
            return cache.gather(b.idx), True
        return cache.lookup(b.idx, b.batch), False

    def step_loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                  targets: dict[str, torch.Tensor] | None, share: float, from_rows: bool = False
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(logits, loss terms, training loss) of a batch: the standard loop's forward (the
        part torch.compile compiles), the targets first made of the teachers' cached outputs
        where ``from_rows`` (in the compiled graph: fused, and replayed with it)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
            if from_rows:
                targets = self.cache.derive(targets)
            logits, losses = self.model(inputs, labels, targets)
            loss = sum(v if k in self.distiller.batch_level_terms else v * share
                       for k, v in losses.items())
        return logits, losses, loss

    def batch_loss(self, full: bool, *args) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                    torch.Tensor]:
        """:meth:`step_loss`, compiled for a full batch. Where compiling or running the compiled
        step raises, the run stops compiling (:meth:`stop_compiling`) and computes the step
        eagerly: a genuine error of the step raises there again."""
        if full and self.compiled_loss is not None:
            try:
                if self.graphed:  # the previous step's graph outputs are no longer read
                    torch.compiler.cudagraph_mark_step_begin()
                return self.compiled_loss(*args)
            except Exception as error:  # noqa: BLE001 — dynamo, inductor, triton: eager instead
                self.stop_compiling(error)
        return self.step_loss(*args)

    def stop_compiling(self, error: Exception) -> None:
        """Train on eagerly: one warning, and the error kept for ``result.json``."""
        self.compiled_loss = None
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        self.compile_error = f"{type(error).__name__}: {first_line}"
        log.warning("%s: the compiled step failed (%s); training on without torch.compile",
                    self.out, self.compile_error)

    def result_extras(self) -> dict:
        """The standard loop's, then whether the step ran compiled at the end, and why not
        where compiling failed."""
        failed = {"compile_error": self.compile_error} if self.compile_error else {}
        return {**super().result_extras(), "compiled_step": self.compiled_loss is not None,
                **failed}

    def train_step(self, b: TrainBatch, epoch: int) -> None:
        """One SGD step on batch ``b``; its totals are added on the device (read by
        :meth:`sync`). A non-finite loss skips nothing here: the read stops the run."""
        lr = learning_rate(self.cfg, epoch + b.step / self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, labels = self.step_inputs(b), b.labels
        targets, from_rows = self.step_targets(inputs, b)
        share = len(labels) * self.dist.world / b.global_size
        full = b.global_size == self.cfg.batch_size
        self.optimizer.zero_grad(set_to_none=True)  # before a graph replay reuses its memory
        logits, losses, loss = self.batch_loss(full, inputs, labels, targets, share, from_rows)
        self.accumulate(b, logits.detach(), losses, loss.detach())
        loss.backward()
        self.optimizer.step()

    def accumulate(self, b: TrainBatch, logits: torch.Tensor,
                   losses: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        """Add the step's Σ term·n, correct count and non-finite flag to the device totals;
        remember the first non-finite step and its loss terms (device ops only)."""
        self.terms = self.terms or list(losses)
        n = len(b.labels)
        values = torch.stack([losses[k].detach().double() for k in self.terms])
        bad = ~torch.isfinite(loss)
        step_totals = torch.cat([values * n, (logits.argmax(1) == b.labels).sum().double()[None],
                                 bad.double()[None]])
        self.totals = step_totals if self.totals is None else self.totals + step_totals
        here = torch.cat([torch.full((1,), b.step, dtype=torch.float64, device=values.device),
                          values])  # torch.full: no host->device copy (which would sync)
        if self.first_bad is None:
            self.first_bad = torch.where(bad, here, torch.full_like(here, -1.0))
        else:
            self.first_bad = torch.where(bad & (self.first_bad[0] < 0), here, self.first_bad)
        self.pending_seen += b.global_size
        self.pending_last = b.step

    def sync(self, epoch: int, bar) -> None:
        """Read the totals since the last read (one transfer, summed over ranks): stop a
        diverged run, add them to the state, report progress, save ``latest.pt`` every
        ``checkpoint_every_steps`` or on a stop request (then raise ``Stopped``)."""
        k = len(self.terms)
        stop = float(bool(call_context(self.ctx, "should_stop")))
        device_part = torch.cat([self.totals, self.first_bad])
        totals = self.dist.sum(torch.cat([device_part.cpu(), torch.tensor([stop],
                                          dtype=torch.float64)])).tolist()
        if totals[k + 1]:
            step = int(device_part[k + 2])
            values = dict(zip(self.terms, device_part[k + 3:].tolist(), strict=True))
            raise self.diverged(f"epoch {epoch + 1}, step {step + 1}",
                                f"the loss became non-finite ({values})")
        result = StepResult(sums=dict(zip(self.terms, totals[:k], strict=True)),
                            correct=int(totals[k]), seen=self.pending_seen, non_finite=False,
                            stop=bool(totals[-1]))
        first = self.state.step
        self.state.add_step(result, self.pending_last)
        self.reset_totals()
        bar.update(self.state.step - first)
        self.report_progress(epoch)
        every, state = self.cfg.checkpoint_every_steps, self.state
        if result.stop or (every and state.step % every == 0 and state.step < self.steps):
            state.epoch_elapsed = state.epoch_elapsed + time.perf_counter() - self.segment_start
            self.segment_start = time.perf_counter()
            self.save_checkpoint(self.latest_path)
            if result.stop:
                raise Stopped(f"stopped at epoch {epoch + 1}, step {state.step}")

    def report_progress(self, epoch: int) -> None:
        """The run's progress and ETA to the context (rank 0)."""
        state = self.state
        done = epoch * self.steps + state.step
        elapsed = state.elapsed + state.epoch_elapsed + time.perf_counter() - self.segment_start
        if self.main:
            call_context(self.ctx, "progress", done / self.total_steps, epoch=epoch + 1,
                         eta=(self.total_steps - done) * elapsed / max(done, 1))
