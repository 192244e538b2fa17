"""analysis stage of cloud3d."""
