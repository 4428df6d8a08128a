"""Training Integer Discrete Flows: data sets, the (data-parallel, resumable) training run and evaluation.

:func:`train_idf` fits an :class:`~flowkernels.models.idf.IDF` to one of :data:`IDF_DATASETS` in the shared loop of
:func:`~flowkernels.models.training.fit` (sharded over processes with ``torch.distributed``, resumable from
``<checkpoint>.resume.pt``), optionally followed by quantization-aware training that yields the integer model;
:meth:`IDF.evaluate_bpd <flowkernels.models.idf.IDF.evaluate_bpd>` scores it. The architecture lives in
:mod:`flowkernels.models.idf`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._optional import require
from ..data import DIGITS_LEVELS, PHOTO_LEVELS, load_dataset
from .idf import IDF
from .training import TrainHistory, fit, seeded, sum_over_processes

__all__ = ["IDFHistory", "IDF_DATASETS", "resume_path", "train_idf"]

# ---------------------------------------------------------------------------------------------------
# Training


#: Dataset name -> (loader kwargs, data_levels, default architecture).
IDF_DATASETS: dict[str, tuple[dict, int, dict]] = {
    "digits": ({}, DIGITS_LEVELS, {"num_scales": 3, "steps_per_scale": 2, "hidden": 64, "blocks": 1}),
    "photos-gray": ({}, PHOTO_LEVELS, {"num_scales": 3, "steps_per_scale": 4, "hidden": 64, "blocks": 1}),
    "photos-rgb": ({}, PHOTO_LEVELS, {"num_scales": 3, "steps_per_scale": 4, "hidden": 64, "blocks": 1}),
    "photos-dev-gray": ({}, PHOTO_LEVELS, {"num_scales": 3, "steps_per_scale": 4, "hidden": 64, "blocks": 1}),
    "photos-dev-rgb": ({}, PHOTO_LEVELS, {"num_scales": 3, "steps_per_scale": 4, "hidden": 64, "blocks": 1}),
}


@dataclass
class IDFHistory(TrainHistory):
    """What :func:`train_idf` measured: a :class:`~flowkernels.models.training.TrainHistory` (training bits/dim
    per epoch, ``(epoch, test bits/dim)`` pairs with epoch 0 before training, the optimisation's wall time),
    plus the number of processes and, with quantization-aware training, the test bits/dim of the float model
    before it and of the integer model after it."""

    world_size: int = 1
    float_test_bpd: float | None = None
    integer_test_bpd: float | None = None


class _Loss(nn.Module):
    """Mean bits/dim as a module, so that DistributedDataParallel's forward hooks see the loss computation."""

    def __init__(self, model: IDF) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.bits_per_dim(x).mean()


def _distributed_from_env() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def train_idf(
    dataset: str = "digits",
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    distributed: bool | None = None,
    checkpoint: str | Path | None = None,
    patch_size: int = 32,
    num_scales: int | None = None,
    steps_per_scale: int | None = None,
    hidden: int | None = None,
    blocks: int | None = None,
    num_mixtures: int = 5,
    net: str = "resnet",
    permutation: str = "random",
    eval_every: int | None = None,
    warmup_steps: int = 100,
    max_grad_norm: float = 100.0,
    max_train: int | None = None,
    init: str | Path | None = None,
    qat_epochs: int = 0,
    qat_lr: float | None = None,
    resume: bool = False,
) -> tuple[IDF, IDFHistory]:
    """Fit an :class:`IDF` to ``dataset`` (a name of :data:`IDF_DATASETS`) by maximum likelihood.

    Adam on the exact bits/dim of the training split, with a linear warm-up over ``warmup_steps`` steps,
    a cosine decay to zero and gradient-norm clipping. Photo datasets use ``patch_size`` x ``patch_size``
    patches (:func:`flowkernels.data.load_photo_patches`); ``max_train`` keeps only that many training
    images (a seeded choice) for quick runs. Architecture arguments left at None take the dataset's
    defaults of :data:`IDF_DATASETS`. The test bits/dim is measured before training, every
    ``eval_every`` epochs (default: 5 times in all) and at the end; with ``checkpoint`` the model is saved
    there (see :meth:`IDF.save`) at every evaluation.

    ``distributed`` (default: whether the ``WORLD_SIZE`` environment variable is above 1, as under
    ``torchrun``) trains with DistributedDataParallel: the process group is initialised from the
    environment (gloo on CPU, NCCL on CUDA, where each rank takes ``cuda:LOCAL_RANK``) unless it already
    is, every rank takes ``batch[rank::world_size]`` of each global batch of ``batch_size`` images (a final
    batch with fewer images than ranks is skipped), gradients are averaged, only rank 0 shows progress
    and writes the checkpoint, and the group is destroyed at the end if this function created it.

    Deterministic for a given ``seed`` (and number of processes) on a given machine: the model is built
    under ``torch.manual_seed(seed)`` in a forked RNG state, and batch order comes from a seeded generator
    that all ranks share. Returns the trained model (in eval mode) and an :class:`IDFHistory`.

    Integer models (files that decode on any machine, :mod:`.idf_integer`): ``init`` starts from a float
    checkpoint instead of a fresh model (its architecture wins over the architecture arguments);
    ``qat_epochs > 0`` then, after the ``epochs`` of float training, calibrates the activation ranges on
    up to 512 training images, fine-tunes for ``qat_epochs`` with fake quantization (learning rate
    ``qat_lr``, default ``lr / 10``) and returns the integer model. ``history.float_test_bpd`` and
    ``history.integer_test_bpd`` record the cost; the checkpoint holds the integer model.

    Resuming: with ``checkpoint``, the float phase also writes ``<checkpoint>.resume.pt`` after every
    epoch (model, Adam and schedule state, the batch-order generator, the history so far; see
    :func:`resume_path`). ``resume=True`` continues from that file when it exists (and starts afresh
    when it does not), giving the same weights as a run that was never interrupted; the file must come
    from the same data set, seed and settings (ValueError otherwise). A finished run removes it.
    """
    if dataset not in IDF_DATASETS:
        raise ValueError(f"train_idf: dataset must be one of {sorted(IDF_DATASETS)}, got {dataset!r}")
    if epochs < 0 or batch_size < 1 or qat_epochs < 0:
        raise ValueError(
            "train_idf: need epochs >= 0, qat_epochs >= 0 and batch_size >= 1, "
            f"got {epochs}, {qat_epochs}, {batch_size}"
        )
    distributed = _distributed_from_env() if distributed is None else distributed
    device = torch.device(device)
    rank, world_size, created_group = 0, 1, False
    if distributed:
        import torch.distributed as dist

        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            created_group = True
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if batch_size < world_size:
            raise ValueError(f"train_idf: batch_size {batch_size} is smaller than the {world_size} processes")
    try:
        return _train(
            dataset,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            progress=progress and rank == 0,
            rank=rank,
            world_size=world_size,
            checkpoint=checkpoint,
            patch_size=patch_size,
            arch={
                "num_scales": num_scales,
                "steps_per_scale": steps_per_scale,
                "hidden": hidden,
                "blocks": blocks,
                "num_mixtures": num_mixtures,
                "net": net,
                "permutation": permutation,
            },
            eval_every=eval_every,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            max_train=max_train,
            init=init,
            qat_epochs=qat_epochs,
            qat_lr=lr / 10 if qat_lr is None else qat_lr,
            resume=resume,
        )
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    dataset: str,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    progress: bool,
    rank: int,
    world_size: int,
    checkpoint: str | Path | None,
    patch_size: int,
    arch: dict,
    eval_every: int | None,
    warmup_steps: int,
    max_grad_norm: float,
    max_train: int | None,
    init: str | Path | None,
    qat_epochs: int,
    qat_lr: float,
    resume: bool,
) -> tuple[IDF, IDFHistory]:
    loader_kwargs, data_levels, defaults = IDF_DATASETS[dataset]
    if dataset != "digits":
        loader_kwargs = {**loader_kwargs, "patch_size": patch_size}
    train = load_dataset(dataset, "train", **loader_kwargs)
    test = load_dataset(dataset, "test", **loader_kwargs)
    generator = torch.Generator().manual_seed(seed)
    if max_train is not None and max_train < train.shape[0]:
        train = train[torch.randperm(train.shape[0], generator=generator)[:max_train].sort().values]
    arch = {key: defaults[key] if value is None else value for key, value in arch.items()}
    _, channels, height, width = train.shape
    if init is not None:
        model = IDF.from_checkpoint(init).to(device).train()
        if model.integer or model.patch_shape != (channels, height, width):
            raise ValueError(
                f"train_idf: init {init} must be a float IDF of patch shape {(channels, height, width)}, got "
                f"{model.config.get('arithmetic', 'float')} {model.patch_shape}"
            )
    else:
        model = seeded(seed, lambda: IDF(channels, height, width, data_levels=data_levels, **arch)).to(device)
    train, test = train.to(device=device, dtype=model.dtype), test.to(device=device, dtype=model.dtype)
    distributed = world_size > 1

    history = IDFHistory(
        {
            "dataset": dataset,
            "epochs": epochs,
            "qat_epochs": qat_epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "world_size": world_size,
            "train_images": train.shape[0],
            **({"init": str(init)} if init is not None else {}),
            **model.config,
        },
        world_size=world_size,
    )
    state_file = resume_path(checkpoint) if checkpoint is not None else None
    resumed = _load_resume_state(state_file, history.config) if resume and state_file is not None else None
    if resumed is None:
        history.test_bpd.append((0, model.evaluate_bpd(test, rank=rank, world_size=world_size)))
    else:
        model.load_state_dict(resumed["model"])
        generator.set_state(resumed["generator"])
        history.train_bpd = list(resumed["train_bpd"])
        history.test_bpd = [(int(epoch), float(bpd)) for epoch, bpd in resumed["test_bpd"]]
    n = train.shape[0]
    batches_per_epoch = n // batch_size + (1 if n % batch_size >= world_size else 0)
    tqdm = require("tqdm", "tqdm", "train_idf's progress bar").tqdm
    bar = tqdm(
        total=(epochs + qat_epochs) * batches_per_epoch, desc=f"idf[{dataset}]", disable=not progress, leave=False
    )
    saved: list[IDF] = [model]  # what the checkpoint holds: the model being trained, or its integer form

    def save(epoch: int) -> None:
        if checkpoint is not None and rank == 0:
            saved[0].save(
                checkpoint,
                train={
                    "dataset": dataset,
                    "epoch": epoch,
                    "test_bpd": history.final_test_bpd,
                    "seed": seed,
                    "world_size": world_size,
                    **({"float_test_bpd": history.float_test_bpd} if history.float_test_bpd is not None else {}),
                },
            )

    def save_resume_state(epoch: int, optimizer, scheduler, train_time_s: float) -> None:
        if state_file is not None and rank == 0 and not model.quantization_aware:
            _save_resume_state(
                state_file,
                config=history.config,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                generator=generator,
                epoch=epoch,
                history=history,
                train_time_s=train_time_s,
            )

    def run_phase(phase_epochs: int, phase_lr: float, first_epoch: int, name: str, state: dict | None = None) -> None:
        """Train for ``phase_epochs`` (from ``state``, a resume file's content, when given) in the shared loop of
        :func:`~flowkernels.models.training.fit`, sharded over the processes; saves a checkpoint after every
        evaluation and a resume file after every epoch of the float phase."""
        if phase_epochs == 0:
            return
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device] if device.type == "cuda" else None
            loss_module = DistributedDataParallel(_Loss(model), device_ids=ids)
        else:
            loss_module = _Loss(model)
        fit(
            model,
            train,
            loss_module,
            lambda: model.evaluate_bpd(test, rank=rank, world_size=world_size),
            history,
            epochs=phase_epochs,
            batch_size=batch_size,
            lr=phase_lr,
            generator=generator,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            eval_every=eval_every,
            desc=name,
            progress=progress,
            rank=rank,
            world_size=world_size,
            all_reduce=sum_over_processes(device, world_size),
            first_epoch=first_epoch,
            state=state,
            after_evaluation=lambda epoch: None if model.quantization_aware else save(epoch),
            after_epoch=save_resume_state,
            bar=bar,
        )

    run_phase(epochs, lr, 0, f"idf[{dataset}]", resumed)
    if qat_epochs > 0:
        history.float_test_bpd = history.final_test_bpd
        calibration = train[torch.randperm(n, generator=generator)[: min(n, 512)].to(device)]
        model.eval()
        model.calibrate(calibration)
        run_phase(qat_epochs, qat_lr, epochs, f"idf[{dataset}] quantization-aware")
        model.eval()
        saved[0] = model.to_integer()
        history.integer_test_bpd = saved[0].evaluate_bpd(test, rank=rank, world_size=world_size)
        history.test_bpd.append((epochs + qat_epochs, history.integer_test_bpd))
        if progress:
            change = 100 * (history.integer_test_bpd / history.float_test_bpd - 1)
            bar.write(
                f"idf[{dataset}] integer model: test {history.integer_test_bpd:.4f} bits/dim "
                f"(float {history.float_test_bpd:.4f}, {change:+.2f}%)"
            )
        save(epochs + qat_epochs)
    bar.close()
    if epochs == 0 and qat_epochs == 0:
        save(0)
    if state_file is not None and rank == 0:
        state_file.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    return saved[0].eval(), history


def resume_path(checkpoint: str | Path) -> Path:
    """Where :func:`train_idf` keeps the state that ``resume=True`` continues from: ``<checkpoint>.resume.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".resume.pt")


def _save_resume_state(
    path: Path,
    *,
    config: dict,
    model: IDF,
    optimizer,
    scheduler,
    generator,
    epoch: int,
    history: IDFHistory,
    train_time_s: float,
) -> None:
    state = {
        "config": dict(config),
        "model": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "epoch": epoch,
        "train_bpd": list(history.train_bpd),
        "test_bpd": [list(pair) for pair in history.test_bpd],
        "train_time_s": train_time_s,
    }
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, partial)
    os.replace(partial, path)  # a run killed while saving leaves the previous state intact


def _load_resume_state(path: Path, config: dict) -> dict | None:
    """The content of the resume file ``path``, or None when there is none; ValueError when it belongs to
    another run (other data, seed or settings) or does not load."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a torch file: say which file, do not guess
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"train_idf: cannot resume from {path}: not a state file that loads ({first_line})") from None
    if not isinstance(state, dict) or state.get("config") != dict(config):
        saved = state.get("config") if isinstance(state, dict) else None
        differ = sorted(k for k in set(config) | set(saved or {}) if (saved or {}).get(k) != config.get(k))
        raise ValueError(
            f"train_idf: {path} is the state of another run (differs in {', '.join(differ) or 'format'}); "
            "delete it or train with the same settings"
        )
    return state
