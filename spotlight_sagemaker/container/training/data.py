"""``train.py``'s data: the training channel, and validation from its own channel or a hold-out.

Three sets (:class:`TrainingData`): ``train``, every row of the training channel, which the served
model is trained on and which counts as seen when it serves; ``fit``, the rows the validated
model trains on (the training channel itself when a ``validation`` channel is given, else the
channel less a hold-out of ``validation_fraction``); and ``validation``, on ``fit``'s vocabulary.
The validated model's vocabulary is ``fit``'s, so an id seen only in validation rows never gets an
untrained embedding there. Validation rows whose user or item is not in ``fit`` cannot be scored:
they are dropped, counted and logged. Rows of a validation channel are never trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...contract.hyperparameters import UserError
from ...core import Interactions, random_train_test_split

logger = logging.getLogger("spotlight_sagemaker.container.training.job")

TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"


@dataclass
class TrainingData:
    """Every training-channel row, the rows the validated model fits, validation rows, counts."""

    train: Interactions
    fit: Interactions | None
    validation: Interactions | None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def holdout(self) -> bool:
        """Whether ``fit`` is a part of ``train`` (then the served model is refit on ``train``)."""
        return self.fit is not None and self.fit is not self.train


def _refuse_float_ids(data: Interactions, source: Path) -> None:
    """Ids that all read like ``685.0`` come from an integer column that pandas wrote as floats;
    trained as they are, every request for ``685`` would be an unknown id served the popularity
    fallback. Refused with the fix, rather than renamed behind the user's back."""
    for column, id_map in (("user_id", data.user_map), ("item_id", data.item_map)):
        ids = id_map.to_list()
        if ids and all(i.endswith(".0") and i[:-2].lstrip("-").isdigit() for i in ids):
            raise UserError(
                f"{source}: every {column} reads like a float ({ids[0]!r}): an integer "
                "column written as floats (pandas does this when it holds a NaN); "
                "requests for the integer ids would not find them. Write the ids as "
                f"integers, e.g. df['{column}'].astype('int64').to_csv(...)"
            )


def load_training_data(channels: dict[str, Path], options: dict[str, Any]) -> TrainingData:
    """Read the channels and build the training and validation sets.

    Raises:
        UserError: there is no training channel.
        DataError: a channel's files are missing, empty or malformed (names file and line).
    """
    if TRAINING_CHANNEL not in channels:
        given = ", ".join(sorted(channels)) or "none"
        raise UserError(
            f"the job has no '{TRAINING_CHANNEL}' channel (channels: {given}); pass the data "
            f"as fit('s3://...') or fit({{'{TRAINING_CHANNEL}': 's3://...'}})"
        )
    policy = options["duplicates"]
    full = Interactions.from_csv(channels[TRAINING_CHANNEL], duplicates=policy)
    _refuse_float_ids(full, channels[TRAINING_CHANNEL])
    counts: dict[str, Any] = {"training_channel_rows": len(full)}
    logger.info(
        "training channel: %d interactions, %d users, %d items",
        len(full),
        full.num_users,
        full.num_items,
    )
    if VALIDATION_CHANNEL in channels:
        if options["validation_fraction"] > 0:
            logger.info("validation channel present: validation_fraction is not used")
        held = Interactions.from_csv(channels[VALIDATION_CHANNEL], duplicates=policy)
        counts["validation_source"] = "channel"
        fit = full
    elif options["validation_fraction"] > 0:
        fraction = options["validation_fraction"]
        part, held = random_train_test_split(full, fraction, options["validation_seed"])
        if len(part) == 0 or len(held) == 0:
            raise UserError(
                f"validation_fraction={fraction} of {len(full)} rows leaves an empty "
                "training or validation part; give more data or set validation_fraction=0"
            )
        fit = _reindex(part)
        counts["validation_source"] = f"holdout {fraction}"
    else:
        counts.update(
            validation_source="none",
            training_rows=len(full),
            training_users=full.num_users,
            training_items=full.num_items,
        )
        logger.info("no validation channel and validation_fraction=0: no validation metrics")
        return TrainingData(full, None, None, counts)
    validation, dropped = _onto_vocabulary(held, fit)
    counts.update(
        training_rows=len(full),
        training_users=full.num_users,
        training_items=full.num_items,
        fit_rows=len(fit),
        fit_users=fit.num_users,
        fit_items=fit.num_items,
        validation_rows_read=len(held),
        validation_rows=len(validation),
        **dropped,
    )
    logger.info(
        "validated model: trained on %d interactions (%d users, %d items), validated on %d of "
        "%d rows (dropped %d rows: %d unknown users, %d unknown items)",
        len(fit),
        fit.num_users,
        fit.num_items,
        len(validation),
        len(held),
        dropped["validation_rows_dropped"],
        dropped["validation_unknown_users"],
        dropped["validation_unknown_items"],
    )
    if len(validation) == 0:
        logger.warning(
            "no validation row has a user and an item known from training: no validation metrics"
        )
        return TrainingData(full, None, None, counts)
    return TrainingData(full, fit, validation, counts)


def _reindex(part: Interactions) -> Interactions:
    """``part`` with vocabularies of only the ids it contains."""
    return Interactions.from_arrays(
        part.user_map.ids[part.user_ids],
        part.item_map.ids[part.item_ids],
        part.weights,
        part.timestamps,
        source="training part",
    )


def _onto_vocabulary(
    held: Interactions, train: Interactions
) -> tuple[Interactions, dict[str, int]]:
    """``held`` re-indexed on ``train``'s vocabularies, rows with unknown ids dropped."""
    user_to = train.user_map.lookup(held.user_map.ids)
    item_to = train.item_map.lookup(held.item_map.ids)
    users, items = user_to[held.user_ids], item_to[held.item_ids]
    keep = (users >= 0) & (items >= 0)
    unknown_users = np.unique(held.user_ids[users < 0])
    unknown_items = np.unique(held.item_ids[items < 0])
    out = Interactions(
        users[keep],
        items[keep],
        train.user_map,
        train.item_map,
        None if held.weights is None else held.weights[keep],
        None if held.timestamps is None else held.timestamps[keep],
    )
    key = out.user_ids * max(train.num_items, 1) + out.item_ids
    in_train = np.isin(key, train.user_ids * max(train.num_items, 1) + train.item_ids)
    return out, {
        "validation_rows_dropped": int((~keep).sum()),
        "validation_unknown_users": len(unknown_users),
        "validation_unknown_items": len(unknown_items),
        "validation_rows_also_in_training": int(in_train.sum()),
    }
