"""The training container's adapter: ``entry_points/train.py`` calls :func:`job.main`."""
