"""lthlib: a reference reproduction of Frankle & Carbin's Lottery Ticket Hypothesis (ICLR 2019).

Public API (see the README and the book for worked examples)::

    create_network, count_weights, get_dataloaders, load_tensors, evaluate, train,
    prune_network, copy_mask, plain_state, remaining_fraction, run, run_experiment, make_experiment,
    find_ticket (IMP on your own model and data), export_ticket, load_ticket,
    export_sparse, load_sparse
"""
from lthlib.util.version import __version__

from lthlib.config.experiment import ExperimentConfig, make_experiment
from lthlib.config.paper import (DataConfig, ModelConfig, PruneConfig, TrainConfig, paper_prune,
                                 paper_train)
from lthlib.config.profiles import profile_deviations
from lthlib.data.datasets import get_dataloaders, get_datasets, load_tensors
from lthlib.data.files import resolve_data_root
from lthlib.util.device import default_device
from lthlib.nets.paper_networks import count_weights, create_network
from lthlib.pruning.prune import (apply_masks, copy_mask, get_masks, plain_state, prune_network,
                                  random_masks, remaining_fraction)
from lthlib.store.history import early_stop_summary
from lthlib.training.one_network import evaluate, train
from lthlib.store.run_store import RunStore
from lthlib.experiments.procedures import run, run_experiment
from lthlib.experiments.find_ticket import TicketResult, find_ticket
from lthlib.experiments.export import export_sparse, export_ticket, load_sparse, load_ticket

__all__ = [
    "ExperimentConfig", "DataConfig", "ModelConfig", "PruneConfig", "TrainConfig",
    "make_experiment", "paper_prune", "paper_train", "profile_deviations",
    "get_dataloaders", "get_datasets", "load_tensors", "resolve_data_root", "default_device",
    "create_network", "count_weights", "apply_masks", "copy_mask", "get_masks",
    "plain_state", "prune_network",
    "random_masks", "remaining_fraction", "early_stop_summary", "evaluate", "train",
    "RunStore", "run", "run_experiment", "__version__", "TicketResult", "find_ticket",
    "export_ticket", "load_ticket", "export_sparse", "load_sparse",
]
