from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        from workflows.checks import check_base_url, check_database_roles
        from workflows.dbroles import grant_after_migrate

        checks.register(check_database_roles, checks.Tags.database, deploy=True)
        checks.register(check_base_url, checks.Tags.security, deploy=True)

        # Once per migrate, after every app's migrations (sent with this app as sender).
        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="hitl-grants")
