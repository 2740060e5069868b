"""Clients of the services' public REST APIs, for the other services and the operator tools.

Services never import each other (ADR 0001); what one needs from another goes through that
service's topics or its documented REST API, and the client for such an API lives here, once.
"""
