from django.apps import AppConfig


class MultitenantHostConfig(AppConfig):
    name = "tests.hostapps.multitenant"
    label = "mtaccounts"
    default_auto_field = "django.db.models.BigAutoField"
