"""``cifar-serve``: the Open Inference Protocol server over the runtime, and the Triton model repositories it reads."""
