"""Each format's Python side: writing TorchScript archives (torchscript.py) and AOTInductor
packages (aoti.py), which the C++ core runs, and ONNX (onnx.py), which ONNX Runtime runs behind
the same Module and which this package also writes."""
