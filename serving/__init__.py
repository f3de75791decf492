"""The booking-intent scoring API (FastAPI + uvicorn); see serving/app.py and the README."""
