"""``cifar-eval``: open any model, pick the labelled images, evaluate, plot and report."""
