"""Networks: WRN-28-k, ResNet-18 (CIFAR stem), ResNet-50, a small CNN for 8x8 / 28x28 inputs."""
