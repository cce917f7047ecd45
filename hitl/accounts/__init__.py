"""Accounts: who a user is to hitl.

Today roles come from Django's groups (a workflow's reviewer and escalation groups) and a
workflow's admins; this app is where API tokens for business systems will live.
"""
