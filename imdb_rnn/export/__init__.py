"""Export a run for torch-free serving: onnx.py writes and checks the directory (torch),
runtime.py labels text with it (onnxruntime, no torch)."""
