"""pillow."""
