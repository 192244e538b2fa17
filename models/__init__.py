"""models stage of cloud3d."""
