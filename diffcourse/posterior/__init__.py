"""The posterior p(x|y): guidance, projections, solvers, classical baselines."""
