"""The serving container's side: the request/response codec and the model-server launcher
(``spotlight-sagemaker-serve``, also used by local mode)."""
