"""Adapters that speak other systems' wire APIs on shoal's controller and agents."""
