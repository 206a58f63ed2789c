"""Health Gym v1 (WGAN-GP) core: data, networks, one training epoch, evaluation. Knows nothing of Ray."""

__version__ = "0.1.0"
