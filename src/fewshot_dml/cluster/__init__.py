"""python -m fewshot_dml.cluster: the train stages on a Ray cluster through a shared DVC remote."""
