"""``cifar-infer``: the command line, its one library function, input expansion and the report."""
