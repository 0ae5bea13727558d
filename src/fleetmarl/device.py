"""Turn the DEVICE config key into a torch device, failing clearly when CUDA is asked for but absent."""

from __future__ import annotations

import torch

from fleetmarl.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present so the same config runs on a laptop and a GPU box."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("DEVICE is 'cuda' but no CUDA GPU is available; use --set DEVICE=cpu or DEVICE=auto")
    return torch.device(name)
