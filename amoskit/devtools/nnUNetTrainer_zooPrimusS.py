"""nnU-Net's own nnUNet_Primus_S_Trainer, cut to the zoo's few iterations: the network (Primus-S) and
inference stay nnU-Net's, only the schedule is the zoo's.

Why: Primus trainers are recognised by name (`make build` runs nnU-Net's predictor with timm and the
torchvision of the image's torch); a check needs a real folder of that name in minutes.
`amoskit.devtools.nnunet_primus` trains with this class and then names the folder and the
checkpoints' trainer_name nnUNet_Primus_S_Trainer, whose network this is. Copied to the top of
nnunetv2/training/nnUNetTrainer/ beside nnUNetTrainer_zoo (which it extends).
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer_zoo import nnUNetTrainer_zoo
from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import nnUNet_Primus_S_Trainer


class nnUNetTrainer_zooPrimusS(nnUNetTrainer_zoo, nnUNet_Primus_S_Trainer):
    """The zoo's schedule (nnUNetTrainer_zoo.__init__), nnUNet_Primus_S_Trainer's network and optimiser."""
