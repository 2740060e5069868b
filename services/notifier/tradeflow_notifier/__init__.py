"""The notifier service: orders, fills, risk events and alerts delivered to people and systems.

It consumes exec.orders.v1, exec.fills.v1, risk.events.v1 and ops.alerts.v1, renders each event
for each channel its routes name (Telegram, Discord, Slack, email, signed webhooks), stores one
delivery per (event, channel) before sending, and sends with retries, rate limits and grouping
of identical alerts (docs/adr/0016). Once a day it sends a report per account.
"""
