"""amosseg: the segmentation engine inside the submission image.

Importing the package imports nothing else: the torch-free parts (e.g. the model-folder
description) are read by the host tools too, whose environment need not have torch.
"""
