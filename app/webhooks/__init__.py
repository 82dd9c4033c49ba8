"""Webhooks: a tenant's endpoints, the events they subscribe to, and the signed deliveries
(Standard Webhooks) that tell them, retried for about a day and never lost.

Events come from the audit log's own call (audit.service.record): each audited change that
names a webhook event writes one message row per subscribed endpoint in the same
transaction (events.py). The worker sends them (delivery.py, tasks.py) to targets checked
against the network rules twice, at registration and after resolving at send time
(targets.py)."""
