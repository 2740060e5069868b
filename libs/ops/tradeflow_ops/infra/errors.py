"""The one error type of local infrastructure management; its text is meant for the operator."""


class InfraError(RuntimeError):
    """A local broker or database could not be started, reached or stopped.

    ``started`` names what the failing `up` call had already started (still running, and
    recorded, so `down` stops it); a caller that cleans up after itself stops those.
    """

    started: tuple[str, ...] = ()
