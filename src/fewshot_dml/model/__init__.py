"""The encoder side: the classifier, model references, device and precision, batching."""
