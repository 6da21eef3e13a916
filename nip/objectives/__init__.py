"""TorchRL loss modules extended for agents as columns of an agent dimension."""
