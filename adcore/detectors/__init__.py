"""Detectors: one folder per model, each a plain ``nn.Module`` plus a thin wrapper."""
