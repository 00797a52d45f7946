"""Training data: CIFAR-10 or any ImageFolder tree, decoded once, cached, split, as uint8 arrays."""
