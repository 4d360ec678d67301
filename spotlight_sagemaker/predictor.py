"""``SpotlightPredictor``: top-N recommendations from a Spotlight endpoint as plain rows.

Requests go out as JSON lines (``application/jsonlines``, one record per query) and answers
come back as CSV (``text/csv``): ``query_id,item_id,score`` per recommended item, best first,
queries in request order -- the container's default formats
(``spotlight_sagemaker.container.serving.codec``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from sagemaker.deserializers import CSVDeserializer
from sagemaker.predictor import Predictor
from sagemaker.serializers import JSONLinesSerializer

from .contract import content_types

REQUEST_CONTENT_TYPE = content_types.JSONLINES
RESPONSE_ACCEPT = content_types.CSV


class Recommended(NamedTuple):
    """One recommended item for a user (``score`` is None for a candidate of :meth:`rank`
    that the model does not know: such rows come last)."""

    user_id: str
    item_id: str
    score: float | None


class Similar(NamedTuple):
    """One item similar to a query item."""

    item_id: str
    similar_item_id: str
    score: float


class SpotlightSerializer(JSONLinesSerializer):
    """JSON lines: a dict is one record, an iterable of dicts one record each, str as is."""

    def __init__(self, content_type: str = REQUEST_CONTENT_TYPE):
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> str:
        """Serialize one record (dict), many records, or an already-encoded string."""
        if isinstance(data, Mapping):
            return json.dumps(dict(data))
        return super().serialize(data)


class SpotlightPredictor(Predictor):
    """Talks to a Spotlight endpoint (``SpotlightModel.deploy()`` returns one).

    Example:
        >>> predictor.recommend("685", top_n=5)
        [Recommended(user_id='685', item_id='313', score=4.21), ...]
        >>> predictor.recommend(["685", "302"], top_n=5, as_frame=True)   # pandas DataFrame
        >>> predictor.similar_items("50", top_n=10)
        >>> predictor.rank("685", ["50", "172", "1"])                      # these, ranked
        >>> predictor.recommend("685", top_n=5, exclude_items=["313"])
        >>> predictor.recommend_from_history(["50", "172", "181"], top_n=5)  # a new visitor
    """

    def __init__(
        self,
        endpoint_name: str,
        sagemaker_session: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        **kwargs: Any,
    ):
        """Attach to an endpoint; serializer/deserializer default to the container's formats.

        They are what :meth:`predict` uses. :meth:`recommend` and :meth:`similar_items` always
        send JSON lines and ask for CSV, which they parse themselves, whatever is set here.
        """
        super().__init__(
            endpoint_name,
            sagemaker_session=sagemaker_session,
            serializer=serializer or SpotlightSerializer(),
            deserializer=deserializer or CSVDeserializer(accept=RESPONSE_ACCEPT),
            **kwargs,
        )

    def recommend(
        self,
        user_ids: str | int | Iterable[str | int],
        top_n: int = 10,
        exclude_seen: bool | None = None,
        as_frame: bool = False,
        *,
        exclude_items: Iterable[str | int] | None = None,
        include_items: Iterable[str | int] | None = None,
    ) -> Any:
        """Top-N items for one user or many (one request; rows in the order of ``user_ids``).

        Args:
            user_ids: one raw user id or an iterable of them.
            top_n: items per user.
            exclude_seen: drop the users' training items (the container's default: True).
            as_frame: return a pandas DataFrame (columns user_id, item_id, score).
            exclude_items: never recommend these items (to every user of the call).
            include_items: recommend only among these items.

        Returns:
            A list of :class:`Recommended` rows, best first per user (or a DataFrame).

        Raises:
            ValueError: no user ids, ``top_n`` not a positive integer, or an answer that is
                not CSV.
            TypeError: an id that is neither str nor int.
        """
        extra: dict[str, Any] = {} if exclude_seen is None else {"exclude_seen": bool(exclude_seen)}
        extra.update(_lists(exclude_items=exclude_items, include_items=include_items))
        records = [{"user_id": u, "top_n": top_n, **extra} for u in _ids(user_ids, "user_ids")]
        return self._query(records, top_n, Recommended, as_frame)

    def rank(
        self,
        user_id: str | int,
        items: Iterable[str | int],
        top_n: int | None = None,
        exclude_seen: bool = False,
        as_frame: bool = False,
    ) -> Any:
        """The candidates ``items`` ranked for ``user_id``, best first (all of them unless
        ``top_n``); candidates the model does not know come last with ``score=None``.

        Raises:
            ValueError: no candidates, a candidate given twice, or a bad ``top_n``.
        """
        record: dict[str, Any] = {"user_id": _ids(user_id, "user_id")[0], **_lists(items=items)}
        if exclude_seen:
            record["exclude_seen"] = True
        if top_n is not None:
            record["top_n"] = top_n
        return self._query([record], top_n, Recommended, as_frame)

    def recommend_from_history(
        self,
        history: Iterable[str | int],
        top_n: int = 10,
        as_frame: bool = False,
        *,
        query_id: str | None = None,
        exclude_history: bool = True,
        exclude_items: Iterable[str | int] | None = None,
        include_items: Iterable[str | int] | None = None,
    ) -> Any:
        """Top-N for a visitor the model does not know, from the items they interacted with
        (the container folds a user vector in from them; the history is not recommended
        unless ``exclude_history=False``). Rows carry ``query_id`` (default ``""``); a
        ``query_id`` the model knows as a user is refused by the container (400).
        """
        record: dict[str, Any] = {"top_n": top_n, **_lists(history=history)}
        record.update(_lists(exclude_items=exclude_items, include_items=include_items))
        if query_id is not None:
            record["user_id"] = _ids(query_id, "query_id")[0]
        if not exclude_history:
            record["exclude_seen"] = False
        return self._query([record], top_n, Recommended, as_frame)

    def similar_items(
        self,
        item_ids: str | int | Iterable[str | int],
        top_n: int = 10,
        as_frame: bool = False,
    ) -> Any:
        """Items most similar to each query item (rows in the order of ``item_ids``).

        Returns:
            A list of :class:`Similar` rows (or a DataFrame with the same columns).

        Raises:
            ValueError: no item ids, ``top_n`` not a positive integer, or an answer that is
                not CSV.
            TypeError: an id that is neither str nor int.
        """
        records = [{"item_id": i, "top_n": top_n} for i in _ids(item_ids, "item_ids")]
        return self._query(records, top_n, Similar, as_frame)

    def _query(
        self,
        records: list[dict],
        top_n: int | None,
        row: type[Recommended] | type[Similar],
        as_frame: bool,
    ) -> Any:
        if top_n is not None and (
            isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1
        ):
            raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
        # the request and the answer are this method's own formats, whatever serializer and
        # deserializer the predictor was given for predict()
        args: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "Body": _REQUEST_SERIALIZER.serialize(records),
            "ContentType": REQUEST_CONTENT_TYPE,
            "Accept": RESPONSE_ACCEPT,
        }
        component = self._get_component_name()
        if component:
            args["InferenceComponentName"] = component
        response = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint(**args)
        answered = response.get("ContentType") or RESPONSE_ACCEPT
        if answered.split(";")[0].strip().lower() != RESPONSE_ACCEPT:
            response["Body"].close()
            raise ValueError(
                f"endpoint {self.endpoint_name!r} answered Content-Type {answered!r} to "
                f"Accept {RESPONSE_ACCEPT!r}: it does not serve the Spotlight container's CSV"
            )
        raw = _RESPONSE_DESERIALIZER.deserialize(response["Body"], answered)
        # an empty score: a rank() candidate the model does not know (Recommended only)
        rows = [row(r[0], r[1], float(r[2]) if r[2] else None) for r in raw if r]  # type: ignore[arg-type]
        if as_frame:
            import pandas as pd

            return pd.DataFrame(rows, columns=list(row._fields))
        return rows


_REQUEST_SERIALIZER = SpotlightSerializer()
_RESPONSE_DESERIALIZER = CSVDeserializer(accept=RESPONSE_ACCEPT)


def _lists(**lists: Iterable[str | int] | None) -> dict[str, list[str | int]]:
    """The given list fields as lists of ids (None: left out), checked like ids."""
    out = {}
    for name, values in lists.items():
        if values is None:
            continue
        if isinstance(values, (str, int)):
            raise TypeError(f"{name} must be an iterable of ids, got {values!r}")
        ids = list(values)
        if ids:
            _ids(ids, name)
        elif name != "exclude_items":
            raise ValueError(f"{name} must hold at least one id")
        if len(set(map(str, ids))) != len(ids):
            raise ValueError(f"{name} holds an id more than once")
        out[name] = ids
    return out


def _ids(ids: Any, name: str) -> list[str | int]:
    values = [ids] if isinstance(ids, (str, int)) else list(ids)
    if not values:
        raise ValueError(f"{name} must hold at least one id")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise TypeError(f"{name} must be str or int ids, got {type(v).__name__} {v!r}")
    return values
