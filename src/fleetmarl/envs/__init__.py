"""The sampling-fleet environment (design §2)."""
