"""Synthetic data: CT phantoms with AMOS labels, sample cases, and the demo model's training and evaluation."""
