"""`Layout`: the facts about a schema's one-hot row that the networks need."""

from __future__ import annotations

from dataclasses import dataclass

from healthgym_core.data.schema import Schema


@dataclass(frozen=True)
class Layout:
    """Reals first (one column each), then one one-hot block per binary/categorical variable."""

    n_real: int
    blocks: tuple[tuple[int, int], ...]  # [start, end) of each one-hot block
    embedding_sizes: tuple[int, ...]  # the critic's embedding width per block
    width: int  # F: the whole row

    @classmethod
    def of(cls, schema: Schema) -> Layout:
        return cls(
            n_real=schema.n_real,
            blocks=tuple(schema.blocks()),
            embedding_sizes=tuple(v.embedding_size for v in schema.categoricals),
            width=schema.width,
        )

    @property
    def embedding_width(self) -> int:
        """E: reals plus every block's embedding."""
        return self.n_real + sum(self.embedding_sizes)
