"""The REST API (django-ninja), mounted at /api/v1/: see hitl/api/v1.py."""
