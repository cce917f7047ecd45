from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "hitl.accounts"
    label = "accounts"
