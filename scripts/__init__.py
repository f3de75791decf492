"""Data producers: the synthetic-world generator and the warehouse loader."""

import railflow  # noqa: F401  (sets polars' allocator up before any module here loads polars)
