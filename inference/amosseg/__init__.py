"""amosseg: the segmentation engine inside the submission image (public functions only)."""
from .network import build_network, UnsupportedModel

__all__ = ["build_network", "UnsupportedModel"]
