"""nnU-Net trainer for the test zoo: nnU-Net's own training, cut to a few iterations.

Why: the zoo (`amoskit.devtools.nnunet_zoo`) needs real nnU-Net results folders (plans.json,
dataset.json, checkpoint_final.pth, checkpoint_best.pth, validation) in minutes on a CPU, not a
good model. Only the schedule changes: network, loss, augmentation and inference stay nnU-Net's,
so our engine must rebuild the network from plans.json alone, as it must for any real model.

The builder copies this file to the top level of `nnunetv2/training/nnUNetTrainer/`, where
nnU-Net's trainer lookup finds it before it descends into subpackages (`primus` needs timm).
"""
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

VALIDATE_ENV = "ZOO_VALIDATE"  # "1": run nnU-Net's final validation (find_best_configuration, cascade)


class nnUNetTrainer_zoo(nnUNetTrainer):
    """2 epochs x 3 iterations (1 validation iteration); final validation only on request."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        """Skip the slow sliding-window validation unless ZOO_VALIDATE=1 asks for it."""
        if os.environ.get(VALIDATE_ENV) != "1":
            self.print_to_log_file(f"zoo: final validation skipped ({VALIDATE_ENV}=1 runs it)")
            return
        super().perform_actual_validation(save_probabilities)
