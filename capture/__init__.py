"""capture stage of cloud3d."""
