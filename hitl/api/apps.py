from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "hitl.api"
    label = "api"
    verbose_name = "REST API"
