"""RailFlow core: settings, warehouse access, dbt runner and the pipeline."""

__version__ = "0.1.0"
