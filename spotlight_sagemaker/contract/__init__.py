"""The contract the client and the containers share: hyperparameters and metric-line formats.

Imported on the user's machine (the estimator validates hyperparameters and declares metric
regexes) and in the training container (which parses the same hyperparameters and prints the
lines); it imports neither ``sagemaker`` nor ``boto3``.
"""
