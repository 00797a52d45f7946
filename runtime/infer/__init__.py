"""``cifar-infer``: the command line, its one library function and report, and ``--doctor``."""
