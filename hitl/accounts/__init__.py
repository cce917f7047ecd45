"""Accounts: who a user is to hitl.

Roles come from Django's groups (a workflow's reviewer and escalation groups) and a
workflow's admins. This app holds the API tokens through which a business system acts as a
user: scoped, optionally limited to some workflows, and never beyond that user's roles.
"""
