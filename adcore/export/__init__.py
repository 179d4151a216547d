"""Exports of fitted detectors that score exactly what the torch detector scores (ONNX)."""
