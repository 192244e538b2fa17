"""baselines stage of cloud3d."""
