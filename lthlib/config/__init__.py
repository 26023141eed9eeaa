"""Configuration, the one place to import it from: the paper's settings (:mod:`.paper`), the
profiles that change them (:mod:`.profiles`), and an experiment's config with its hash
(:mod:`.experiment`).
"""
from lthlib.config.paper import (ARCHS, DATASETS, OPTIMIZERS, SCOPES, METHODS, EXPERIMENTS,
                                 PROFILES, PRECISIONS, PROFILE_ORDER, RESULTS_VERSION,
                                 check_choice, check_int, ModelConfig, DataConfig, TrainConfig,
                                 PruneConfig, PAPER_TRAIN, PAPER_PRUNE, RESNET_LR_SETTINGS,
                                 DATASET_SHAPES, paper_model, paper_train, paper_prune)
from lthlib.config.profiles import (Profile, PROFILE_PRESETS, get_profile, apply_profile,
                                    profile_deviations, profile_precision)
from lthlib.config.experiment import (ExperimentConfig, HASH_NEUTRAL_DEFAULTS, REWIND_SCHEDULES,
                                      experiment_from_dict, ONESHOT_TARGETS, make_experiment)
