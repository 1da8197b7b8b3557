"""The REST API (Django REST Framework). Nothing outside this package imports DRF."""
