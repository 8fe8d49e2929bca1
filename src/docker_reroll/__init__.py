"""docker-reroll: zero-downtime rolling deploys of a Docker Compose service."""

__version__ = "0.1.0"
