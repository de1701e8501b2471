"""What a user runs through make (build, run, package, verify_load, validate): one module per verb, each `python -m amoskit.verbs.NAME`."""
