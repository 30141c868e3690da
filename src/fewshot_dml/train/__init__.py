"""The train stage: a group of runs, the loop, the objective and Metrix, the SetFit arm, health checks."""
