"""nnUNetTrainer_zoo for OLD nnU-Net v2 (2.2.x): nnU-Net's own training, cut to a few iterations.

Why: `amoskit.devtools.nnunet_old_zoo` trains a model with nnunetv2 2.2.1, whose plans.json has no
`architecture` key, to test that our engine maps such plans as nnU-Net does. `nnUNetTrainer_zoo.py`
is written for the current nnU-Net and does not fit 2.2.1:

- 2.2.1's trainer takes `unpack_dataset` before `device` (positional `device` would land in it);
- 2.2.1 calls `dataloader._finish()` in `on_train_end`, which batchgenerators' SingleThreadedAugmenter
  (nnUNet_n_proc_DA=0: augmentation in the trainer's process) lacks: a no-op is given to it;
- 2.2.1's PolyLRScheduler passes `verbose` to torch's LRScheduler, an argument torch 2.13 no longer
  takes: the same schedule (same SGD, same formula) without it. Only the training's learning rate
  uses it; what the engine reads (plans, checkpoint, network) is untouched.

The builder copies this file to the top level of `nnunetv2/training/nnUNetTrainer/` in the old
virtualenv only. Network, loss, augmentation and inference stay nnU-Net 2.2.1's.
"""
import os

import torch

from torch.optim.lr_scheduler import LRScheduler

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

VALIDATE_ENV = "ZOO_VALIDATE"  # "1": run nnU-Net's final validation


class _PolyLR(PolyLRScheduler):
    """2.2.1's PolyLRScheduler (its step() unchanged), built without torch's removed `verbose`."""

    def __init__(self, optimizer, initial_lr: float, max_steps: int, exponent: float = 0.9, current_step=None):
        self.optimizer = optimizer
        self.initial_lr = initial_lr
        self.max_steps = max_steps
        self.exponent = exponent
        self.ctr = 0
        LRScheduler.__init__(self, optimizer, current_step if current_step is not None else -1)


class nnUNetTrainer_zoo_old(nnUNetTrainer):
    """2 epochs x 3 iterations (1 validation iteration); final validation only on request."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True)
        return optimizer, _PolyLR(optimizer, self.initial_lr, self.num_epochs)

    def get_dataloaders(self):
        loaders = super().get_dataloaders()
        for loader in loaders:
            if not hasattr(loader, "_finish"):  # SingleThreadedAugmenter (nnUNet_n_proc_DA=0)
                loader._finish = lambda: None
        return loaders

    def perform_actual_validation(self, save_probabilities: bool = False):
        """Skip the slow sliding-window validation unless ZOO_VALIDATE=1 asks for it."""
        if os.environ.get(VALIDATE_ENV) != "1":
            self.print_to_log_file(f"zoo: final validation skipped ({VALIDATE_ENV}=1 runs it)")
            return
        super().perform_actual_validation(save_probabilities)
