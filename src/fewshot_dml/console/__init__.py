"""The ``fewshot-dml`` console command (:mod:`fewshot_dml.console.main`)."""
