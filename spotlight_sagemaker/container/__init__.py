"""Code that runs inside the SageMaker containers (training and serving); it never imports
``sagemaker`` or ``boto3``."""
