"""`pretrain`: train an encoder's weights on a data set, stored where `run` finds them."""
from __future__ import annotations

from pathlib import Path

import click

from .. import DEFAULT_SEED
from ..devices import resolve_device
from ..errors import UserError
from ..utils import writable_root
from .options import RESULTS_ROOT, data_root_option, device_option, results_root_option


def pretrain(encoder: str, dataset_name: str, data_root: str | None = None, download: bool = False,
             results_root: str = RESULTS_ROOT, output: str | None = None, device: str = "cpu",
             resume: bool = False, force: bool = False, echo=print, **option_values):
    """Library entry of the `pretrain` command (tests call it directly). Returns PretrainResult."""
    # lazy: the catalogue and the training code import torch; `pretrain --help` stays light
    from ..catalog import ENCODERS
    from ..datasets import load_dataset
    from ..encoders.pretrain import PretrainOptions, pretrain_simclr
    from ..encoders.torch_base import default_weights_path

    if encoder != "simclr":
        ENCODERS.get(encoder)  # unknown names get the usual close-match message
        raise UserError(f"pretrain supports --encoder simclr only; {encoder!r} weights come from a checkpoint "
                        "file (--encoder-weights PATH).")
    options = PretrainOptions(**{k: v for k, v in option_values.items() if v is not None})
    options.check()
    root = writable_root(results_root)
    dataset = load_dataset(dataset_name, data_root=data_root, download=download)
    encoder_obj = ENCODERS.create("simclr", dataset=dataset_name)
    preprocess = encoder_obj.preprocess(dataset)
    path = Path(output) if output else default_weights_path(root, dataset, "simclr")
    if path.exists() and not (force or resume):
        raise UserError(f"Weights already exist at {path}; `run` uses them. Add --force to train new ones "
                        "(overwrites), or --resume to continue an interrupted training.")
    echo(f"pretraining simclr on {dataset.summary()} -> {path}")
    result = pretrain_simclr(dataset, path, preprocess.mean, preprocess.std, options, device=device,
                             resume=resume, echo=echo)
    echo(f"done: {result.epochs_done} epochs, final loss {result.losses[-1]:.4f}, {result.seconds:.1f}s; "
         f"weights: {result.weights_path}")
    return result


@click.command("pretrain")
@click.option("--encoder", default="simclr", show_default=True, help="encoder to train (simclr)")
@click.option("--dataset", "dataset_name", required=True, help="data set whose train split is used (no labels)")
@data_root_option()
@click.option("--download", is_flag=True, help="download the data set where its library can")
@click.option("--epochs", type=int, default=None, help="epochs (default 500)")
@click.option("--batch-size", type=int, default=None, help="images per batch (default 512)")
@click.option("--lr", type=float, default=None, help="learning rate per 512 images (default 0.4)")
@click.option("--temperature", type=float, default=None, help="NT-Xent temperature (default 0.1)")
@click.option("--amp/--no-amp", default=None, help="autocast on GPU: bf16, or fp16 with loss scaling on GPUs without bf16 (default on)")
@click.option("--num-workers", type=int, default=None, help="data-loading workers (default: automatic)")
@click.option("--seed", type=int, default=None, help=f"seed of initialisation, shuffling and augmentation (default {DEFAULT_SEED})")
@click.option("--resume", is_flag=True, help="continue from the checkpoint left by an interrupted run")
@click.option("--force", is_flag=True, help="train again even if weights exist (overwrites them)")
@click.option("--output", default=None, help="weights file (default <results-root>/weights/<dataset>/simclr.pt)")
@results_root_option()
@device_option()
def pretrain_command(encoder, dataset_name, data_root, download, epochs, batch_size, lr, temperature, amp,
                     num_workers, seed, resume, force, output, results_root, device) -> None:
    """Train SimCLR weights on a data set's train split; `run` then finds them.

    \b
    Example:
      python cli.py pretrain --encoder simclr --dataset cifar10 --data-root data --epochs 200
      python cli.py run --selector usl --learner linear --dataset cifar10 --data-root data --budget 40
    """
    pretrain(encoder, dataset_name, data_root=data_root, download=download, results_root=results_root,
             output=output, device=resolve_device(device), resume=resume, force=force,
             echo=lambda m: click.echo(m, err=True), epochs=epochs, batch_size=batch_size, lr=lr,
             temperature=temperature, amp=amp, num_workers=num_workers, seed=seed)
