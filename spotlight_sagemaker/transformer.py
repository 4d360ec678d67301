"""``SpotlightTransformer``: the SDK Transformer with defaults for Spotlight requests.

Requests are JSON lines (``{"user_id": "685", "top_n": "5"}``), one record per line, so
``transform()`` defaults to ``content_type="application/jsonlines"`` and ``split_type="Line"``.
A local file or folder is uploaded to the session's default bucket first (read in place in
local mode).
"""

from __future__ import annotations

from typing import Any

from sagemaker.transformer import Transformer

from . import defaults
from .uploads import resolve_path


class SpotlightTransformer(Transformer):
    """A ``sagemaker.transformer.Transformer`` whose ``transform()`` fits Spotlight requests."""

    @classmethod
    def wrap(cls, transformer: Transformer) -> SpotlightTransformer:
        """The same transformer (same model, settings and session) as a SpotlightTransformer."""
        if isinstance(transformer, cls):
            return transformer
        out = cls.__new__(cls)
        out.__dict__.update(transformer.__dict__)
        return out

    def transform(
        self,
        data: Any,
        data_type: str = "S3Prefix",
        content_type: str | None = defaults.TRANSFORM_CONTENT_TYPE,
        compression_type: str | None = None,
        split_type: str | None = defaults.TRANSFORM_SPLIT_TYPE,
        job_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a transform job on an ``s3://`` prefix or a local file/folder of requests.

        Args:
            data: ``s3://`` prefix (or manifest with ``data_type="ManifestFile"``), or a local
                file/folder (uploaded to ``s3://<default bucket>/<job name>/input``).
            data_type: ``"S3Prefix"`` or ``"ManifestFile"``.
            content_type: request content type (default ``application/jsonlines``).
            compression_type: ``"Gzip"`` or None.
            split_type: record delimiter (default ``"Line"``).
            job_name: the transform job's name (default: generated).
            **kwargs: other ``Transformer.transform`` arguments (``wait``, ``logs``, ...).

        Raises:
            FileNotFoundError: a local path that does not exist.
        """
        if isinstance(data, str) and not data.lower().startswith("s3://"):
            if job_name is None:
                job_name = self._transform_job_name()
            data = resolve_path(self.sagemaker_session, data, f"{job_name}/input", "data")
        return super().transform(
            data,
            data_type=data_type,
            content_type=content_type,
            compression_type=compression_type,
            split_type=split_type,
            job_name=job_name,
            **kwargs,
        )

    def _transform_job_name(self) -> str:
        from sagemaker.utils import name_from_base

        return name_from_base(self.base_transform_job_name or defaults.BASE_JOB_NAME)
