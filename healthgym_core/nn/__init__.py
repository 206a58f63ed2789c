"""The Health Gym v1 networks: recurrent kernels, generator and critic."""
