"""The fetch and sample stages: the local SentEval copy, official downloads, your own data, the
normalised table, and the few-shot splits.

Entry points: :func:`fewshot_dml.data.fetch.fetch_dataset`, :func:`fewshot_dml.data.sampling.sample_group`.
"""
