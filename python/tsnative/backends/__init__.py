"""Model formats the Python API runs beside the C++ core's TorchScript: ONNX (ONNX Runtime)."""
