"""The AI seam: model building, inference-time scaling strategies, confidence, local model."""
