"""Observability for live deployments: log search and storage, metrics, plots."""
