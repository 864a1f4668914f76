"""opensim-pinn: label-free, physics-informed muscle force estimation for OpenSim models."""

__version__ = "0.1.0"
