"""``cifar-bench RUN_A RUN_B ...``: a menu of runs measured on one machine (accuracy per view, FLOPs, speed)."""
