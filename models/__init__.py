"""Model zoo and training recipes (installed as `sdk.models`; needs PyTorch)."""
