"""lthlib: a reference reproduction of Frankle & Carbin's Lottery Ticket Hypothesis (ICLR 2019).

Public API (see the README and the book for worked examples)::

    create_network, get_dataloaders, load_tensors, evaluate, train,
    prune_network, copy_mask, remaining_fraction, run, run_experiment, make_experiment,
    find_ticket (IMP on your own model and data), export_ticket, load_ticket,
    export_sparse, load_sparse
"""
from .version import __version__

from .config import (ExperimentConfig, DataConfig, ModelConfig, PruneConfig, TrainConfig,
                     make_experiment, paper_prune, paper_train, profile_deviations)
from .data import get_dataloaders, get_datasets, load_tensors, resolve_data_root
from .device import default_device
from .models import create_network
from .prune import (apply_masks, copy_mask, get_masks, prune_network, random_masks,
                    remaining_fraction)
from .train import early_stop_summary, evaluate, train
from .store import RunStore
from .experiments import run, run_experiment
from .find_ticket import TicketResult, find_ticket
from .export import export_sparse, export_ticket, load_sparse, load_ticket

__all__ = [
    "ExperimentConfig", "DataConfig", "ModelConfig", "PruneConfig", "TrainConfig",
    "make_experiment", "paper_prune", "paper_train", "profile_deviations",
    "get_dataloaders", "get_datasets", "load_tensors", "resolve_data_root", "default_device",
    "create_network", "apply_masks", "copy_mask", "get_masks", "prune_network",
    "random_masks", "remaining_fraction", "early_stop_summary", "evaluate", "train",
    "RunStore", "run", "run_experiment", "__version__", "TicketResult", "find_ticket",
    "export_ticket", "load_ticket", "export_sparse", "load_sparse",
]
