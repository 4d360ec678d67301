"""The container entry points (train.py, inference.py).

Installed as ``spotlight_sagemaker._entry_points`` so the SDK side can find and ship them from a
wheel; in the container they run as plain scripts from /opt/ml/code.
"""
