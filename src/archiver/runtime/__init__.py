"""Decoding without torch: the decoder as an ONNX graph run by ONNX Runtime (CPU, CUDA or NPU providers)."""
