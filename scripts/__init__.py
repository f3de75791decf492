"""Data producers: the synthetic-world generator and the warehouse loader."""
