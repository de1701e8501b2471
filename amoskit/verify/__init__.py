"""Judging a submission: checks of the image's content, of the outputs, the verdict report and preview pictures."""
