"""Machine learning sidecar: propensity, RFM segmentation and churn models."""
