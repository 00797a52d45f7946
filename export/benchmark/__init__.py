"""``cifar-bench``: every format and provider of a run, timed and scored in one table."""
