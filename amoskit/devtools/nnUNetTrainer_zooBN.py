"""nnU-Net's own nnUNetTrainerBN (batch norm in place of the plans' instance norm), cut to the zoo's
few iterations: the network and inference stay nnUNetTrainerBN's, only the schedule is the zoo's.

Why: nnU-Net's trainers that build their own network are recognised by name (`make build` then
runs nnU-Net's predictor with nnU-Net's module, no TRAINER_CODE); a test needs a real folder of
that name in minutes. `amoskit.devtools.nnunet_own_trainer` trains with this class and then names
the folder and the checkpoints' trainer_name nnUNetTrainerBN, whose network this is. Copied to the
top of nnunetv2/training/nnUNetTrainer/ beside nnUNetTrainer_zoo (which it extends).
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer_zoo import nnUNetTrainer_zoo
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerBN import nnUNetTrainerBN


class nnUNetTrainer_zooBN(nnUNetTrainer_zoo, nnUNetTrainerBN):
    """The zoo's schedule (nnUNetTrainer_zoo.__init__), nnUNetTrainerBN's build_network_architecture."""
