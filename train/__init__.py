"""fer-edge workstation training pipeline (TensorFlow/Keras)."""
