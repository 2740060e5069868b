"""One sender per channel kind: a rendered delivery in, a :class:`SendResult` out."""
