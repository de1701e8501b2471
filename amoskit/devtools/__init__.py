"""Developer-only helpers: inputs for the GPU-device check (scripts/gpu_check.sh), not user verbs."""
