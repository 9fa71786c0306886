"""Notifications to operators: an outbox written with each incident change, and a
sender that delivers it by mail and webhooks (see docs/notifications.md)."""
