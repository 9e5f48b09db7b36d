"""obstore."""
