"""Streamlit app for product managers (reads the warehouse and model artifacts only)."""
