"""The explain and analyze stages: attributions and the embedding space."""
