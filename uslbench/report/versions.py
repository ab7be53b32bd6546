"""Never pool runs made on different data or with different encoder weights.

The same spec and seed run on two versions of a data set (files changed in between) are two
records with the same table coordinates; averaged together they look like two seeds. Each record
carries the identity of its data (`keys.dataset`, a digest of the data set's content identity) and
of its encoder (`resolved.encoder`: name, config and weights digest). When one data set name holds
records of several data identities, each identity becomes its own table section, labelled with a
short digest (`digits @3f2a91`); likewise for several encoder identities among the records that
depend on features (a feature selector or a feature probe). Records that do not read features
(random selection with an image learner, say) belong to every encoder version of their data, so
they are shown in each of those sections. A warning names the versions, their run counts and
newest finish times. Records without identities (an older schema) cannot be told apart: they stay
with the only version there is, or form an `@unknown` section beside several.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..harness.record_file import record_trait
from ..utils import content_key

if TYPE_CHECKING:
    import pandas as pd

DIGEST_LENGTH = 6
UNKNOWN = "unknown"


def data_identity(record: dict) -> str | None:
    """The data set's content key of a record (None for records that lack it)."""
    keys = record.get("keys")
    value = keys.get("dataset") if isinstance(keys, dict) else None
    return str(value) if value else None


def encoder_identity(record: dict) -> str | None:
    """A digest of the encoder identities a record's numbers depend on, or None when neither the
    selector nor the learner reads features (or the record does not say)."""
    resolved = record.get("resolved") if isinstance(record.get("resolved"), dict) else {}
    selection_encoder = resolved.get("selection_encoder")
    reads_features = any(record_trait(record, kind, "uses_features", "uses_features") for kind in ("selector", "learner"))
    if not reads_features and selection_encoder is None:
        return None
    encoder = resolved.get("encoder")
    if not isinstance(encoder, dict) and selection_encoder is None:
        return None
    return content_key({"encoder": encoder, "selection_encoder": selection_encoder})


def _versions(part: "pd.DataFrame", column: str) -> list[tuple[Any, str, int, str | None]]:
    """(identity, label, runs, newest finish time) per version, oldest version first (records
    without an identity last, as @unknown)."""
    found = []
    for ident, group in part.groupby(part[column].fillna(UNKNOWN), sort=True):
        newest = group["finished"].dropna().max() if group["finished"].notna().any() else None
        label = f"@{UNKNOWN}" if ident == UNKNOWN else f"@{str(ident)[:DIGEST_LENGTH]}"
        found.append((ident, label, len(group), newest))
    return sorted(found, key=lambda v: (v[0] == UNKNOWN, v[3] or "", v[0]))


def _describe(versions: list[tuple[Any, str, int, str | None]]) -> str:
    return "; ".join(f"{label}: {runs} run(s)" + (f", newest finished {newest}" if newest else "")
                     for _, label, runs, newest in versions)


def separate_versions(df: "pd.DataFrame", warn: Callable[[str], None]) -> "pd.DataFrame":
    """Relabel the `dataset` and `encoder` columns so that rows of different data or encoder
    identities never share a table cell (see the module docstring)."""
    import pandas as pd

    if df.empty:
        return df
    df = df.copy()
    # 1. data versions, per data set name
    for name in sorted(df["dataset"].unique()):
        rows = df["dataset"] == name
        if df.loc[rows, "data_id"].dropna().nunique() < 2:
            continue
        versions = _versions(df[rows], "data_id")
        labels = {ident: label for ident, label, _, _ in versions}
        warn(f"{name}: runs on {len(versions)} versions of the data set ({_describe(versions)}); "
             "each version is its own section, never pooled with another")
        df.loc[rows, "dataset"] = [f"{name} {labels[i]}" for i in df.loc[rows, "data_id"].fillna(UNKNOWN)]
    # 2. encoder versions, per (data set section, encoder name), among rows that read features
    parts = []
    for (dataset, encoder), part in df.groupby(["dataset", "encoder"], sort=True):
        dependent = part["encoder_id"].notna()
        if part.loc[dependent, "encoder_id"].nunique() < 2:
            parts.append(part)
            continue
        versions = _versions(part[dependent], "encoder_id")
        warn(f"{dataset}: runs with {len(versions)} versions of encoder {encoder} (weights or config; "
             f"{_describe(versions)}); each version is its own section, never pooled; runs that do not read "
             "features are shown in each")
        for ident, label, _, _ in versions:
            section = pd.concat([part[part["encoder_id"] == ident], part[~dependent]])
            parts.append(section.assign(encoder=f"{encoder} {label}"))
    return pd.concat(parts, ignore_index=True)[df.columns]
