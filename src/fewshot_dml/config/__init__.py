"""What params.yaml may say: strict loading into frozen dataclasses."""
