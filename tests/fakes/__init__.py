"""In-process fakes of external systems the platform cannot run here (exchanges), for tests only."""
