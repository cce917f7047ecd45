from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "hitl.demo"
    label = "demo"
    verbose_name = "Demo data"
