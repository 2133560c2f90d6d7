"""Loading, converting and building BiMediX2-family models."""
