"""Conversion of trained Keras models to int8/float TFLite and ONNX, with a parity report."""
