from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "hitl.review"
    label = "review"
    verbose_name = "Review desk"
